#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation (stable
# rustc: sancov flags only, no sanitizer; overflow checks and debug
# assertions on) and runs each for SECONDS on its seed corpus plus what
# earlier runs found (fuzz/runs/, not committed). Any crash, hang, or 500
# fails the run and leaves the input in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      default: 10 seconds, every target
#
# Reproduce a finding: fuzz/target/<triple>/release/<target> <file>.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-10}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(request signed_request iam_policy blob_file operator_policy)
fi
# Its own target dir: these flags would rebuild the main one from scratch.
export CARGO_TARGET_DIR="$PWD/target"
triple=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the flags off build scripts and proc macros (which do not
# link libFuzzer), as cargo-fuzz does.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# The main lock file pins every shared dependency, so the fuzzed code is the
# tested code; cargo adds only libFuzzer's entries to this copy.
cp ../Cargo.lock Cargo.lock
cargo build --release --target "$triple" --bins
for target in "${targets[@]}"; do
  mkdir -p "runs/$target" "artifacts/$target"
  echo "=== fuzz $target: ${seconds}s"
  status=0
  "target/$triple/release/$target" "runs/$target" "corpus/$target" \
    -max_total_time="$seconds" -max_len=65536 -timeout=60 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"runs/$target.log" 2>&1 ||
    status=$?
  grep -v '^#[0-9]' "runs/$target.log" | tail -n 40
  grep '^#[0-9]' "runs/$target.log" | tail -n 1
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed (exit $status); inputs: $(ls "artifacts/$target")" >&2
    exit 1
  fi
done
rm -rf /tmp/coffer-fuzz-*

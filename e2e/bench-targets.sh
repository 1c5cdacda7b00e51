#!/usr/bin/env bash
# Issue 6's single-node targets, each against the baseline measured in the same
# run: 4 KiB PUT and GET (32 clients) against the minimal HTTP server, 64 MiB PUT
# (4 clients) against the disk's durable write rate, 64 MiB GET against the HTTP
# baseline — once with SQLite metadata and once with a throwaway Postgres (fsync
# on, started as the `postgres` user). Prints a markdown table.
#   cargo build --release -p coffer-server -p coffer-bench
#   COFFER_BIN=target/release/coffer-server COFFER_BENCH=target/release/coffer-bench \
#     bash e2e/bench-targets.sh           # DURATION=15s per workload, REPEAT=1 round
set -euo pipefail
# No load balancer waits on these servers: stop at once (see --shutdown-delay).
export COFFER_SHUTDOWN_DELAY=0
BIN=${COFFER_BIN:-target/release/coffer-server}
BENCH=${COFFER_BENCH:-target/release/coffer-bench}
DURATION=${DURATION:-15s}
# Rounds of every workload (each right after its own baseline); the table shows
# the round with the median efficiency and the range over all rounds.
REPEAT=${REPEAT:-1}
BACKENDS=${BACKENDS:-sqlite postgres}
work=$(mktemp -d /var/tmp/coffer-bench-targets.XXXX)
chmod 755 "$work"
server=""
cleanup() {
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null || true
  stop_throwaway_postgres "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=e2e/throwaway-postgres.sh
. "$(dirname "$0")/throwaway-postgres.sh"

export COFFER_ROOT_ACCESS_KEY=BENCHROOT COFFER_ROOT_SECRET_KEY=bench-secret-bench-secret COFFER_LOG=warn
export AWS_ACCESS_KEY_ID=BENCHROOT AWS_SECRET_ACCESS_KEY=bench-secret-bench-secret AWS_REGION=us-east-1
endpoint=http://127.0.0.1:9470

# Writes left over from the workload before (dirty pages, and on Postgres its
# next checkpoint of the small-object rounds) would land on the disk in the middle
# of the next measurement but not of its baseline: flush them first.
settle() {
  sync
  if [ "$backend" = postgres ]; then
    runuser -u postgres -- psql -h /tmp -p 55470 -q -c CHECKPOINT postgres
  fi
}

bench() {
  "$BENCH" run --json --endpoint "$endpoint" --duration "$DURATION" "$@"
}

for backend in $BACKENDS; do
  data="$work/data-$backend"
  args=(serve --listen 127.0.0.1:9470 --data-dir "$data")
  if [ "$backend" = postgres ]; then
    start_throwaway_postgres "$work/pg" 55470 coffer_bench
    args+=(--database-url postgres://postgres@127.0.0.1:55470/coffer_bench)
  fi
  "$BIN" "${args[@]}" > "$work/$backend.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf "$endpoint/health/ready" >/dev/null && break; sleep 0.1; done
  for round in $(seq "$REPEAT"); do
    again=(); [ "$round" -gt 1 ] && again=(--prefilled)
    echo "$backend small-put $(bench --workload put --size 4KiB --concurrency 32 --bucket "small-$round" --baseline-http)"
    echo "$backend small-get $(bench --workload get --size 4KiB --concurrency 32 --objects 1000 --bucket small-get "${again[@]}" --baseline-http)"
    settle
    echo "$backend large-put $(bench --workload put --size 64MiB --concurrency 4 --bucket large --baseline-disk "$data")"
    echo "$backend large-get $(bench --workload get --size 64MiB --concurrency 4 --objects 8 --bucket large-get "${again[@]}" --baseline-http)"
  done
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
done > "$work/results"

python3 - "$work/results" <<'EOF'
import json, sys
targets = {"small-put": 0.25, "small-get": 0.50, "large-put": 0.80, "large-get": 0.60}
rounds = {}
for line in open(sys.argv[1]):
    backend, name, doc = line.split(" ", 2)
    doc = json.loads(doc)
    op = doc["result"]["operations"][0]
    errors = sum(op["errors"].values())
    if name.startswith("small"):
        base = doc["baseline_http"]["operations"][0]["ops_per_sec"]
        got, unit = op["ops_per_sec"], "ops/s"
        base_text = f"HTTP {base:,.0f} ops/s"
    elif name == "large-put":
        base = doc["baseline_disk"]["write_mib_per_sec"]
        got, unit = op["mib_per_sec"], "MiB/s"
        base_text = f"disk {base:,.0f} MiB/s (fsync per file)"
    else:
        base = doc["baseline_http"]["operations"][0]["mib_per_sec"]
        got, unit = op["mib_per_sec"], "MiB/s"
        base_text = f"HTTP {base:,.0f} MiB/s"
    eff = got / base if base else 0.0
    err = f", {errors} errors" if errors else ""
    text = f"{got:,.0f} {unit} (p50 {op['p50_ms']:.0f} ms{err})"
    rounds.setdefault((backend, name), []).append((eff, text, base_text))
print("| backend | workload | Coffer (median round) | baseline (same round) | efficiency: median (range) | target |")
print("|---|---|---|---|---|---|")
for (backend, name), runs in rounds.items():
    runs.sort(key=lambda r: r[0])
    eff, text, base_text = runs[(len(runs) - 1) // 2]
    spread = f" ({runs[0][0]:.2f}–{runs[-1][0]:.2f}, {len(runs)} rounds)" if len(runs) > 1 else ""
    print(f"| {backend} | {name} | {text} | {base_text} | {eff:.2f}{spread} | ≥ {targets[name]:.2f} |")
EOF

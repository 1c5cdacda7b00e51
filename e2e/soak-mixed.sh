#!/usr/bin/env bash
# Memory over a long mixed run: coffer-bench's warp-like mix (45% GET, 30% HEAD,
# 15% PUT, 10% DELETE; 20 clients; 1 MiB objects by default) for DURATION against a
# release server (SQLite), sampling the server's RSS every 30 s.
#   COFFER_BIN=target/release/coffer-server COFFER_BENCH=target/release/coffer-bench \
#     DURATION=10m bash e2e/soak-mixed.sh
set -euo pipefail
BIN=${COFFER_BIN:-target/release/coffer-server}
BENCH=${COFFER_BENCH:-target/release/coffer-bench}
DURATION=${DURATION:-10m}
SIZE=${SIZE:-1MiB}
work=$(mktemp -d /tmp/coffer-soak.XXXX)
trap 'kill $pid $sampler 2>/dev/null || true; rm -rf "$work"' EXIT
export COFFER_ROOT_ACCESS_KEY=SOAKROOT COFFER_ROOT_SECRET_KEY=soak-secret-soak-secret COFFER_LOG=warn
export AWS_ACCESS_KEY_ID=SOAKROOT AWS_SECRET_ACCESS_KEY=soak-secret-soak-secret AWS_REGION=us-east-1
"$BIN" serve --data-dir "$work/data" --listen 127.0.0.1:9622 > "$work/log" 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:9622/health/ready >/dev/null; do sleep 0.05; done
(
  start=$(date +%s)
  while kill -0 $pid 2>/dev/null; do
    echo "t=$(( $(date +%s) - start ))s $(grep VmRSS /proc/$pid/status | tr -s ' ')"
    sleep 30
  done
) &
sampler=$!
"$BENCH" run --endpoint http://127.0.0.1:9622 --bucket soak --workload mixed --size "$SIZE" \
  --objects 2500 --concurrency 20 --duration "$DURATION" 2>/dev/null | grep -E "^(GET|HEAD|PUT|DELETE|operation)"
echo "end: $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' ' | tr '\n' ' ')"

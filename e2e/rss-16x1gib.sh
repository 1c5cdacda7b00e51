#!/usr/bin/env bash
# Peak RSS of coffer-server during 16 concurrent 1 GiB PUTs followed by 16
# concurrent 1 GiB GETs (coffer-bench; SQLite; one node). Needs ~17 GiB of free
# disk under /tmp and ~2 GiB of RAM for the client.
#   COFFER_BIN=target/release/coffer-server COFFER_BENCH=target/release/coffer-bench \
#     bash e2e/rss-16x1gib.sh
set -euo pipefail
BIN=${COFFER_BIN:-target/release/coffer-server}
BENCH=${COFFER_BENCH:-target/release/coffer-bench}
work=$(mktemp -d /tmp/coffer-rss16.XXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
export COFFER_ROOT_ACCESS_KEY=RSSROOT COFFER_ROOT_SECRET_KEY=rss-secret-rss-secret COFFER_LOG=warn
export AWS_ACCESS_KEY_ID=RSSROOT AWS_SECRET_ACCESS_KEY=rss-secret-rss-secret AWS_REGION=us-east-1
"$BIN" serve --data-dir "$work/data" --listen 127.0.0.1:9611 > "$work/log" 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:9611/health/ready >/dev/null; do sleep 0.05; done
rss() { grep -E "VmHWM|VmRSS" /proc/$pid/status | tr -s ' ' | tr '\n' ' '; echo; }
echo "idle: $(rss)"
# The get workload first PUTs its 16 objects, 16 at a time, then GETs them.
"$BENCH" run --endpoint http://127.0.0.1:9611 --bucket rss --workload get --size 1GiB \
  --objects 16 --concurrency 16 --ops 16 --duration 10m 2>/dev/null | grep -E "^(GET|operation)"
echo "after 16 x 1 GiB PUT + 16 x 1 GiB GET: $(rss)"

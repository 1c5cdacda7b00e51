#!/usr/bin/env bash
# Peak RSS of coffer-server across a 2 GiB single PUT, a 2 GiB multipart PUT
# (aws CLI, 10 parts in flight) and the GETs of both. Needs the aws CLI and ~6 GiB
# of free disk. Usage: COFFER_BIN=target/release/coffer-server bash e2e/rss-2gib.sh
set -euo pipefail
BIN=${COFFER_BIN:-target/release/coffer-server}
work=$(mktemp -d /tmp/coffer-rss.XXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
export COFFER_ROOT_ACCESS_KEY=RSSROOT COFFER_ROOT_SECRET_KEY=rss-secret-rss-secret
"$BIN" serve --data-dir "$work/data" --listen 127.0.0.1:9311 > "$work/log" 2>&1 &
pid=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:9311/health/ready >/dev/null && break; sleep 0.2; done
export AWS_ACCESS_KEY_ID=RSSROOT AWS_SECRET_ACCESS_KEY=rss-secret-rss-secret AWS_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:9311
head -c $((2 * 1024 * 1024 * 1024)) /dev/urandom > "$work/2g.bin"
aws s3 mb s3://rss
rss() { grep -E "VmHWM|VmRSS" /proc/$pid/status | tr -s ' ' | tr '\n' ' '; echo; }
echo "idle: $(rss)"
t0=$(date +%s.%N)
aws s3api put-object --bucket rss --key single --body "$work/2g.bin" > /dev/null
t1=$(date +%s.%N)
echo "after 2 GiB single PUT ($(echo "$t1 - $t0" | bc) s): $(rss)"
aws s3 cp "$work/2g.bin" s3://rss/multi --only-show-errors
t2=$(date +%s.%N)
echo "after 2 GiB multipart PUT ($(echo "$t2 - $t1" | bc) s): $(rss)"
aws s3api get-object --bucket rss --key single "$work/out1" > /dev/null
t3=$(date +%s.%N)
echo "after 2 GiB GET single ($(echo "$t3 - $t2" | bc) s): $(rss)"
cmp "$work/2g.bin" "$work/out1" && echo "single: byte-identical"
rm -f "$work/out1"
aws s3 cp s3://rss/multi "$work/out2" --only-show-errors
t4=$(date +%s.%N)
echo "after 2 GiB GET multipart, ranged parallel ($(echo "$t4 - $t3" | bc) s): $(rss)"
cmp "$work/2g.bin" "$work/out2" && echo "multi: byte-identical"

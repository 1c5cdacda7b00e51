#!/usr/bin/env bash
# Cost of replication on this machine: coffer-bench PUT/GET throughput against a
# 1-node and a 3-node cluster (replicas 3, write quorum 2), all processes on this
# host, metadata in a throwaway Postgres (started as the `postgres` user), so only
# the node count differs between the runs.
#   COFFER_BIN=target/release/coffer-server COFFER_BENCH=target/release/coffer-bench \
#     bash e2e/cluster-bench.sh
set -euo pipefail
# No load balancer waits on these servers: stop at once (see --shutdown-delay).
export COFFER_SHUTDOWN_DELAY=0
BIN=${COFFER_BIN:-target/release/coffer-server}
BENCH=${COFFER_BENCH:-target/release/coffer-bench}
DURATION=${DURATION:-15s}
work=$(mktemp -d /tmp/coffer-cluster-bench.XXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  stop_throwaway_postgres "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=e2e/throwaway-postgres.sh
. "$(dirname "$0")/throwaway-postgres.sh"

start_throwaway_postgres "$work/pg" 55439

export COFFER_ROOT_ACCESS_KEY=BENCHROOT COFFER_ROOT_SECRET_KEY=bench-secret-bench-secret
export COFFER_CLUSTER_SECRET=bench-cluster-secret COFFER_LOG=warn
# One master key for every node (each would otherwise generate its own).
export COFFER_MASTER_KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
export AWS_ACCESS_KEY_ID=BENCHROOT AWS_SECRET_ACCESS_KEY=bench-secret-bench-secret AWS_REGION=us-east-1

run_cluster() {
  local nodes=$1 db="coffer_bench_$1"
  runuser -u postgres -- psql -h /tmp -p 55439 -q -c "CREATE DATABASE $db" postgres
  local url="postgres://postgres@127.0.0.1:55439/$db"
  pids=()
  for i in $(seq 0 $((nodes - 1))); do
    local addr="127.0.0.$((40 + i)):9400"
    "$BIN" serve --listen "$addr" --advertise-url "http://$addr" --node-id "n$i" \
      --data-dir "$work/$db-n$i" --database-url "$url" --replicas 3 > "$work/$db-n$i.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do curl -sf "http://$addr/health/ready" >/dev/null && break; sleep 0.1; done
  done
  local endpoint="http://127.0.0.40:9400"
  echo "## $nodes node(s)"
  "$BENCH" run --endpoint "$endpoint" --workload put --size 4KiB --concurrency 32 --duration "$DURATION" --bucket small --baseline-http
  "$BENCH" run --endpoint "$endpoint" --workload get --size 4KiB --concurrency 32 --duration "$DURATION" --objects 1000 --bucket small-get --baseline-http
  "$BENCH" run --endpoint "$endpoint" --workload put --size 64MiB --concurrency 4 --duration "$DURATION" --bucket large
  "$BENCH" run --endpoint "$endpoint" --workload get --size 64MiB --concurrency 4 --duration "$DURATION" --objects 8 --bucket large-get
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

run_cluster 1
run_cluster 3

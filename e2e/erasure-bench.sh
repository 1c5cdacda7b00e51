#!/usr/bin/env bash
# Erasure coding against replication on this machine: a 6-node cluster (all
# processes on this host, metadata in a throwaway Postgres) once with
# `--replicas 3` and once with `--erasure 4+2`; for each, disk bytes per logical
# byte, 64 MiB PUT and GET throughput, and GET throughput with two nodes killed.
#   COFFER_BIN=target/release/coffer-server COFFER_BENCH=target/release/coffer-bench \
#     bash e2e/erasure-bench.sh
set -euo pipefail
export COFFER_SHUTDOWN_DELAY=0
BIN=${COFFER_BIN:-target/release/coffer-server}
BENCH=${COFFER_BENCH:-target/release/coffer-bench}
DURATION=${DURATION:-15s}
PORT=55441
work=$(mktemp -d /tmp/coffer-erasure-bench.XXXX)
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
start_throwaway_postgres "$work/pg" $PORT

export COFFER_ROOT_ACCESS_KEY=BENCHROOT COFFER_ROOT_SECRET_KEY=bench-secret-bench-secret
export COFFER_CLUSTER_SECRET=bench-cluster-secret COFFER_LOG=warn
export COFFER_MASTER_KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
export AWS_ACCESS_KEY_ID=BENCHROOT AWS_SECRET_ACCESS_KEY=bench-secret-bench-secret AWS_REGION=us-east-1

run_cluster() {
  local name=$1
  shift
  local db="coffer_ec_$name"
  runuser -u postgres -- psql -h /tmp -p $PORT -q -c "CREATE DATABASE $db" postgres
  local url="postgres://postgres@127.0.0.1:$PORT/$db"
  pids=()
  for i in 0 1 2 3 4 5; do
    local addr="127.0.0.$((50 + i)):9400"
    "$BIN" serve --listen "$addr" --advertise-url "http://$addr" --node-id "n$i" \
      --data-dir "$work/$db-n$i" --database-url "$url" --dead-after 5 "$@" > "$work/$db-n$i.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do curl -sf "http://$addr/health/ready" >/dev/null && break; sleep 0.1; done
  done
  sleep 3 # every node sees all six before the first write
  local endpoint="http://127.0.0.50:9400"
  echo "## $name ($*)"
  # 8 × 64 MiB objects, read for $DURATION; their disk footprint is measured after.
  "$BENCH" run --endpoint "$endpoint" --workload get --size 64MiB --concurrency 4 --duration "$DURATION" --objects 8 --bucket large-get
  local logical disk
  logical=$(runuser -u postgres -- psql -h /tmp -p $PORT -At -c "SELECT SUM(size) FROM objects" "$db")
  disk=$(du -sb "$work"/$db-n*/blobs | awk '{s += $1} END {print s}')
  echo "disk: $disk bytes in blob files for $logical logical bytes: $(echo "scale=3; $disk / $logical" | bc) bytes per byte"
  "$BENCH" run --endpoint "$endpoint" --workload put --size 64MiB --concurrency 4 --duration "$DURATION" --bucket large
  echo "### two nodes (n4, n5) killed"
  kill -9 "${pids[4]}" "${pids[5]}"
  "$BENCH" run --endpoint "$endpoint" --workload get --size 64MiB --concurrency 4 --duration "$DURATION" --objects 8 --bucket large-get --prefilled
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

"$BENCH" baseline erasure --scheme 4+2
run_cluster replicated --replicas 3
run_cluster erasure --replicas 3 --erasure 4+2

#!/usr/bin/env bash
# Listing speed on a 1,000,000-object bucket vs a 1,000-object bucket, and
# start-up time with 1,000,000 objects in the store, on SQLite or (BACKEND=postgres)
# a throwaway Postgres started as the `postgres` user. The big bucket is
# bulk-loaded straight into the metadata store (copies of one real object's row
# under new keys) — the fill is not what is measured.
#   COFFER_BIN=target/release/coffer-server COFFER_BENCH=target/release/coffer-bench \
#     [BACKEND=postgres] bash e2e/listing-1m.sh
set -euo pipefail
# No load balancer waits on these servers: stop at once (see --shutdown-delay).
export COFFER_SHUTDOWN_DELAY=0
BIN=${COFFER_BIN:-target/release/coffer-server}
BENCH=${COFFER_BENCH:-target/release/coffer-bench}
N=${OBJECTS:-1000000}
BACKEND=${BACKEND:-sqlite}
work=$(mktemp -d /var/tmp/coffer-list.XXXX)
chmod 755 "$work"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ "$BACKEND" = postgres ] && stop_throwaway_postgres "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=e2e/throwaway-postgres.sh
. "$(dirname "$0")/throwaway-postgres.sh"
db_args=()
psql_big() { runuser -u postgres -- psql -h /tmp -p 55460 -q -v ON_ERROR_STOP=1 "$@" coffer_list; }
if [ "$BACKEND" = postgres ]; then
  start_throwaway_postgres "$work/pg" 55460 coffer_list
  db_args=(--database-url postgres://postgres@127.0.0.1:55460/coffer_list)
fi
export COFFER_ROOT_ACCESS_KEY=LISTROOT COFFER_ROOT_SECRET_KEY=list-secret-list-secret COFFER_LOG=warn
export AWS_ACCESS_KEY_ID=LISTROOT AWS_SECRET_ACCESS_KEY=list-secret-list-secret AWS_REGION=us-east-1
endpoint=http://127.0.0.1:9600

start() {
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN" serve --data-dir "$work/data" --listen 127.0.0.1:9600 "${db_args[@]}" >> "$work/log" 2>&1 &
  pid=$!
  until curl -sf "$endpoint/health/ready" >/dev/null; do sleep 0.01; done
  t1=$(date +%s.%N)
  echo "ready in $(echo "$t1 - $t0" | bc) s"
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }

list() { # bucket, extra flags
  "$BENCH" run --endpoint "$endpoint" --bucket "$1" --workload list --prefilled --objects 1000 \
    --concurrency 4 --duration 10s "${@:2}" 2>/dev/null | grep -E "^LIST"
}

start
"$BENCH" run --endpoint "$endpoint" --bucket small --workload list --objects 1000 --ops 1 --size 4KiB >/dev/null 2>&1
"$BENCH" run --endpoint "$endpoint" --bucket big --workload put --ops 1 --size 4KiB --concurrency 1 >/dev/null 2>&1
stop

echo "bulk-loading $N objects into bucket big ($BACKEND)"
t0=$(date +%s)
if [ "$BACKEND" = postgres ]; then
  psql_big <<SQL
INSERT INTO objects (bucket, key, size, etag, last_modified, headers, checksum, segments)
SELECT o.bucket, convert_to(format('bench/%s/obj-%s', lpad((i % 100)::text, 2, '0'), lpad(i::text, 8, '0')), 'UTF8'),
       o.size, o.etag, o.last_modified, o.headers, o.checksum, o.segments
FROM generate_series(0, $N - 1) AS i, (SELECT * FROM objects WHERE bucket = 'big' LIMIT 1) AS o
ON CONFLICT DO NOTHING;
VACUUM ANALYZE objects;
SQL
  rows=$(psql_big -At -c "SELECT COUNT(*) FROM objects WHERE bucket = 'big'")
else
  sqlite3 "$work/data/meta.db" <<SQL
PRAGMA journal_mode=WAL;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $N - 1)
INSERT OR IGNORE INTO objects (bucket, key, size, etag, last_modified, headers, checksum, segments)
SELECT o.bucket, CAST(printf('bench/%02d/obj-%08d', n.i % 100, n.i) AS BLOB), o.size, o.etag,
       o.last_modified, o.headers, o.checksum, o.segments
FROM n, (SELECT * FROM objects WHERE bucket = 'big' LIMIT 1) AS o;
SQL
  rows=$(sqlite3 "$work/data/meta.db" "SELECT COUNT(*) FROM objects WHERE bucket = 'big'")
fi
echo "loaded in $(( $(date +%s) - t0 )) s: $rows rows"

echo "## start-up with $N objects in the store"
start
echo "## 1,000-key ListObjectsV2 pages (4 clients, 10 s each)"
echo "1,000 objects, no delimiter:     $(list small)"
echo "1,000,000 objects, no delimiter: $(list big)"
echo "1,000 objects, delimiter /:      $(list small --delimiter)"
echo "1,000,000 objects, delimiter /:  $(list big --delimiter)"
stop

#!/usr/bin/env bash
# Metadata failover, the long form of server/tests/failover.rs: ROUNDS runs of a
# Postgres primary with a synchronous standby (local binaries), Coffer on one node
# and on a 3-node storage cluster under a checked PUT/overwrite/copy/multipart/
# DELETE workload, `kill -9` of the primary, the Service-like address moved to the
# standby, promotion; every failure must be a retryable 503 and every
# acknowledged write present and byte-identical.
#
#   ROUNDS=10 e2e/failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-10}"
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  cargo test -p coffer-server --test failover -- --nocapture --test-threads=1 2>&1 \
    | grep -E '^failover|test result|panicked|FAILED'
done

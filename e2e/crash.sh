#!/usr/bin/env bash
# Crash consistency, the long form of server/tests/crash.rs: ROUNDS rounds per
# backend (SQLite and a throwaway Postgres) of six writers PUTting (inline,
# file-backed, encrypted), overwriting, copying, completing multipart uploads and
# deleting in a versioned and an unversioned bucket, `kill -9` of the server at a
# random moment, restart, and a check of every key (no lost acknowledged write,
# no torn bytes, listings equal to GETs, no temp files, no warning logged).
# Then the same workload on a 3-node storage cluster, one node killed per round
# (server/tests/cluster.rs kill_9_of_one_node_at_a_time_...).
#
#   ROUNDS=30 e2e/crash.sh          (PROFILE=release for the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-30}"
profile=()
[[ "${PROFILE:-debug}" == "release" ]] && profile=(--release)
COFFER_CRASH_ROUNDS="$ROUNDS" cargo test "${profile[@]}" -p coffer-server --test crash -- --nocapture --test-threads=1 2>&1 \
  | grep -E '^crash|test result|panicked|FAILED'
COFFER_CRASH_ROUNDS="$ROUNDS" cargo test "${profile[@]}" -p coffer-server --test cluster \
  kill_9_of_one_node_at_a_time -- --nocapture --test-threads=1 2>&1 \
  | grep -E '^crash|^cluster crash|test result|panicked|FAILED'

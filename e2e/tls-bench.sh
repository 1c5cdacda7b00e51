#!/usr/bin/env bash
# Cost of TLS on this machine: coffer-bench 4 KiB PUT/GET rates and 64 MiB
# PUT/GET throughput against one server over plain HTTP and one over HTTPS
# (a private CA made here with openssl, rustls with ring on both sides), in one
# run, each workload measured on both servers back to back so machine noise
# hits both alike. SQLite metadata, one node, everything on this host.
#   COFFER_BIN=target/release/coffer-server COFFER_BENCH=target/release/coffer-bench \
#     bash e2e/tls-bench.sh
set -euo pipefail
BIN=${COFFER_BIN:-target/release/coffer-server}
BENCH=${COFFER_BENCH:-target/release/coffer-bench}
DURATION=${DURATION:-15s}
work=$(mktemp -d /tmp/coffer-tls-bench.XXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The CA and a server certificate for 127.0.0.1 (ECDSA P-256, as the chart's
# cert-manager Certificate asks for).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=Coffer bench CA" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=coffer" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$work/ext.cnf"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/ext.cnf" -out "$work/tls.crt" 2>/dev/null

export COFFER_ROOT_ACCESS_KEY=BENCHROOT COFFER_ROOT_SECRET_KEY=bench-secret-bench-secret COFFER_LOG=warn
export AWS_ACCESS_KEY_ID=BENCHROOT AWS_SECRET_ACCESS_KEY=bench-secret-bench-secret AWS_REGION=us-east-1

"$BIN" serve --listen 127.0.0.1:9410 --data-dir "$work/plain" >"$work/plain.log" 2>&1 &
pids+=($!)
"$BIN" serve --listen 127.0.0.1:9411 --data-dir "$work/tls" \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" >"$work/tls.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9410/health/ready >/dev/null &&
    curl -sf --cacert "$work/ca.crt" https://127.0.0.1:9411/health/ready >/dev/null && break
  sleep 0.1
done

# bench NAME ENDPOINT ARGS...: one coffer-bench run; prints "ops/s MiB/s p99ms".
bench() {
  local name=$1 endpoint=$2
  shift 2
  local extra=()
  [[ $endpoint == https://* ]] && extra=(--ca-bundle "$work/ca.crt")
  "$BENCH" run --endpoint "$endpoint" "${extra[@]}" --duration "$DURATION" --json "$@" >"$work/$name.json"
  python3 - "$work/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["result"]
op = r["operations"][0]
errors = sum(op["errors"].values())
print(f'{op["ops_per_sec"]:.1f} {op["mib_per_sec"]:.1f} {op["p99_ms"]:.1f} {errors}')
PY
}

printf '| workload | plain HTTP | HTTPS | HTTPS vs HTTP |\n|---|---|---|---|\n'
row() {
  local label=$1 unit=$2
  shift 2
  local plain tls
  plain=$(bench "$label-plain" http://127.0.0.1:9410 "$@")
  tls=$(bench "$label-tls" https://127.0.0.1:9411 "$@")
  python3 - "$label" "$unit" "$plain" "$tls" <<'PY'
import sys
label, unit, plain, tls = sys.argv[1:]
p, t = [list(map(float, s.split())) for s in (plain, tls)]
col = 0 if unit == "ops/s" else 1
fmt = lambda v: f"{v[col]:.1f} {unit} (p99 {v[2]:.1f} ms{', %d errors' % v[3] if v[3] else ''})"
cost = (t[col] / p[col] - 1) * 100 if p[col] else 0.0
print(f"| {label} | {fmt(p)} | {fmt(t)} | {cost:+.0f}% |")
PY
}
row "4 KiB PUT, 32 clients" ops/s --workload put --size 4KiB --concurrency 32 --bucket small
row "4 KiB GET, 32 clients" ops/s --workload get --size 4KiB --concurrency 32 --objects 1000 --bucket small-get
row "64 MiB PUT, 4 clients" MiB/s --workload put --size 64MiB --concurrency 4 --bucket large
row "64 MiB GET, 4 clients" MiB/s --workload get --size 64MiB --concurrency 4 --objects 8 --bucket large-get

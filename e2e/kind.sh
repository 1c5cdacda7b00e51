#!/usr/bin/env bash
# End-to-end on a real Kubernetes (kind): build the image, helm install the chart,
# apply a Bucket and two AccessKeys, and prove with the AWS CLI in Jobs that the
# injected Secret works (put + get) and that a key without a grant is refused.
# Then delete everything and check the operator cleaned up. Needs docker, kind,
# kubectl and helm. CI: .github/workflows/kind.yml.
#
#   e2e/kind.sh                 # create a cluster, test, tear it down
#   KEEP_CLUSTER=1 e2e/kind.sh  # leave the cluster for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${CLUSTER:-coffer-e2e}"
IMAGE="${IMAGE:-coffer:e2e}"
RELEASE_NS=coffer
APP_NS=coffer-e2e
MANIFESTS="$ROOT/e2e/manifests"
KUBECTL=(kubectl --context "kind-$CLUSTER")

log() { echo "kind.sh: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

diagnostics() {
  log "diagnostics:"
  "${KUBECTL[@]}" get pods,jobs,buckets,accesskeys,secrets -A -o wide || true
  "${KUBECTL[@]}" -n "$RELEASE_NS" logs deploy/coffer-operator --tail=200 || true
  "${KUBECTL[@]}" -n "$RELEASE_NS" logs statefulset/coffer-server --tail=200 || true
  "${KUBECTL[@]}" -n "$APP_NS" describe buckets,accesskeys || true
  "${KUBECTL[@]}" -n "$APP_NS" logs job/put-get || true
  "${KUBECTL[@]}" -n "$APP_NS" logs job/denied || true
  "${KUBECTL[@]}" get events -A --sort-by=.lastTimestamp | tail -50 || true
}

cleanup() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    diagnostics
  fi
  if [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  exit $status
}
trap cleanup EXIT

log "creating kind cluster $CLUSTER"
kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
kind create cluster --name "$CLUSTER" --wait 180s

log "building $IMAGE"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "helm install"
# The chart's default: three server pods forming one storage cluster (each object
# on all three volumes), on kind's single node.
helm --kube-context "kind-$CLUSTER" install coffer "$ROOT/charts/coffer" \
  --namespace "$RELEASE_NS" --create-namespace \
  --set image.repository="${IMAGE%%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set server.persistence.size=1Gi --set postgresql.persistence.size=1Gi \
  --wait --timeout 6m
"${KUBECTL[@]}" -n "$RELEASE_NS" rollout status deploy/coffer-operator --timeout=120s
"${KUBECTL[@]}" get crd buckets.coffer.dev accesskeys.coffer.dev

log "applying a Bucket and AccessKeys"
"${KUBECTL[@]}" apply -f "$MANIFESTS/namespace.yaml"
"${KUBECTL[@]}" apply -f "$MANIFESTS/bucket.yaml" -f "$MANIFESTS/accesskey.yaml" -f "$MANIFESTS/accesskey-outsider.yaml"
"${KUBECTL[@]}" -n "$APP_NS" wait --for=condition=Ready bucket/photos --timeout=120s
"${KUBECTL[@]}" -n "$APP_NS" wait --for=condition=Ready accesskey/photos-app accesskey/outsider --timeout=120s
"${KUBECTL[@]}" -n "$APP_NS" get coffer

bucket_name="$("${KUBECTL[@]}" -n "$APP_NS" get bucket photos -o jsonpath='{.status.bucketName}')"
[[ "$bucket_name" == "coffer-e2e.photos" ]] || die "unexpected bucket name '$bucket_name'"
for key in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL AWS_REGION BUCKET_NAME BUCKET_HOST BUCKET_PORT; do
  value="$("${KUBECTL[@]}" -n "$APP_NS" get secret photos-app -o "jsonpath={.data.$key}")"
  [[ -n "$value" ]] || die "Secret photos-app lacks $key"
done

# Applying the same manifests again must change nothing (GitOps: no drift), and an
# idle resource is not rewritten by the operator.
version_before="$("${KUBECTL[@]}" -n "$APP_NS" get bucket photos -o jsonpath='{.metadata.resourceVersion}')"
reapplied="$("${KUBECTL[@]}" apply -f "$MANIFESTS/bucket.yaml")"
[[ "$reapplied" == *unchanged* ]] || die "re-apply of bucket.yaml was not 'unchanged': $reapplied"
sleep 10
version_after="$("${KUBECTL[@]}" -n "$APP_NS" get bucket photos -o jsonpath='{.metadata.resourceVersion}')"
[[ "$version_before" == "$version_after" ]] || die "an idle Bucket was rewritten ($version_before -> $version_after)"

log "running the AWS CLI with the injected Secrets"
"${KUBECTL[@]}" apply -f "$MANIFESTS/job-put-get.yaml" -f "$MANIFESTS/job-denied.yaml"
"${KUBECTL[@]}" -n "$APP_NS" wait --for=condition=complete job/put-get --timeout=300s
"${KUBECTL[@]}" -n "$APP_NS" wait --for=condition=complete job/denied --timeout=300s
"${KUBECTL[@]}" -n "$APP_NS" logs job/put-get | grep -q PUT-GET-OK || die "put/get job did not report success"
"${KUBECTL[@]}" -n "$APP_NS" logs job/denied | grep -q DENIED-OK || die "outsider key was not denied"

log "deleting everything"
"${KUBECTL[@]}" -n "$APP_NS" delete job put-get denied --wait=true
"${KUBECTL[@]}" -n "$APP_NS" delete accesskey --all --wait=true --timeout=120s
"${KUBECTL[@]}" -n "$APP_NS" delete bucket --all --wait=true --timeout=120s
if "${KUBECTL[@]}" -n "$APP_NS" get secret photos-app >/dev/null 2>&1; then
  die "Secret photos-app survived its AccessKey"
fi
"${KUBECTL[@]}" delete -f "$MANIFESTS/namespace.yaml" --wait=true --timeout=120s
helm --kube-context "kind-$CLUSTER" uninstall coffer --namespace "$RELEASE_NS" --wait
"${KUBECTL[@]}" get crd buckets.coffer.dev >/dev/null || die "CRDs must be kept on uninstall (helm.sh/resource-policy: keep)"

log "ok"

#!/usr/bin/env bash
# The 2-worker kind demo: a kind cluster with 2 workers, JobSet 0.12.0 and Kueue 0.19.2 from
# their pinned Helm charts, the cooc image loaded, the Bookstore's PostgreSQL created
# (jobset/bookstore-db/: pinned image, PVC, seeded with `cooc gen --postgres`), kueue/ and
# jobset/postgres/ applied, gang admission shown, the training JobSet awaited (it reads one
# snapshot of the database), serve/k8s/ deployed, and recommendations printed through a
# port-forward.
#
#   jobset/kind-demo.sh            run the demo
#   jobset/kind-demo.sh cleanup    delete the cluster
#
# Needs docker, kind (v0.32), kubectl and helm on PATH, and network access to pull the kind
# node image and the charts. Environment: CLUSTER (cooc-demo), IMAGE (cooc:0.1.0).
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-cooc-demo}
IMAGE=${IMAGE:-cooc:0.1.0}
NS=bookstore-ml

if [ "${1:-}" = cleanup ]; then
  kind delete cluster --name "$CLUSTER"
  exit 0
fi
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-demo: $tool is not on PATH" >&2; exit 2; }
done

say() { printf '\n==> %s\n' "$*"; }

say "kind cluster $CLUSTER: 1 control plane, 2 workers"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  cat <<'KIND' | kind create cluster --name "$CLUSTER" --image kindest/node:v1.36.1 --config -
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
KIND
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

say "JobSet 0.12.0 and Kueue 0.19.2 (pinned charts), waiting for their controllers"
helm upgrade --install jobset oci://registry.k8s.io/jobset/charts/jobset --version 0.12.0 \
  -n jobset-system --create-namespace --wait
helm upgrade --install kueue oci://registry.k8s.io/kueue/charts/kueue --version 0.19.2 \
  -n kueue-system --create-namespace --wait --timeout 300s
kubectl -n jobset-system wait deploy --all --for=condition=available --timeout=300s
kubectl -n kueue-system wait deploy --all --for=condition=available --timeout=300s

say "image $IMAGE: built here (static binaries, FROM scratch) and loaded into the nodes"
tests/containers/build-image.sh "$IMAGE" >/dev/null
kind load docker-image "$IMAGE" --name "$CLUSTER"

say "queues (kueue/) and the ranks' shared secret"
kubectl apply -k kueue/
kubectl -n "$NS" get secret cooc-rank-secret >/dev/null 2>&1 ||
  kubectl -n "$NS" create secret generic cooc-rank-secret \
    --from-literal=secret="$(docker run --rm --entrypoint /cooc "$IMAGE" secret)"

say "the Bookstore database (jobset/bookstore-db/): passwords in Secrets, schema and data seeded"
secret() { docker run --rm --entrypoint /cooc "$IMAGE" secret; }
kubectl get namespace bookstore >/dev/null 2>&1 || kubectl create namespace bookstore
if ! kubectl -n bookstore get secret bookstore-db-admin >/dev/null 2>&1; then
  kubectl -n bookstore create secret generic bookstore-db-admin \
    --from-literal=password="$(secret)" --from-literal=cooc-password="$(secret)"
fi
# What the ranks get: the read-only role's URL (no password in it) and password.
kubectl -n "$NS" get secret bookstore-db >/dev/null 2>&1 ||
  kubectl -n "$NS" create secret generic bookstore-db \
    --from-literal=url=postgresql://cooc@bookstore-db.bookstore.svc.cluster.local:5432/bookstore \
    --from-literal=password="$(kubectl -n bookstore get secret bookstore-db-admin \
      -o jsonpath='{.data.cooc-password}' | base64 -d)"
kubectl apply -k jobset/bookstore-db/
kubectl -n bookstore rollout status statefulset/bookstore-db --timeout=300s
kubectl -n bookstore wait job/bookstore-db-seed --for=condition=Complete --timeout=600s
kubectl -n bookstore logs job/bookstore-db-seed --tail=2

say "gang admission: quota 0 first, so the JobSet waits as one pending Workload"
kubectl patch clusterqueue bookstore-ml-cq --type=json \
  -p '[{"op":"replace","path":"/spec/resourceGroups/0/flavors/0/resources/0/nominalQuota","value":"0"}]'
kubectl apply -k jobset/postgres/
sleep 5
kubectl -n "$NS" get workloads
echo "pods while pending (none: the JobSet is suspended):"
kubectl -n "$NS" get pods -l jobset.sigs.k8s.io/jobset-name=recommender-train
kubectl apply -k kueue/   # restores the quota: both ranks are admitted together
kubectl -n "$NS" wait workloads --all --for=condition=Admitted --timeout=120s
kubectl -n "$NS" get workloads
kubectl -n "$NS" get pods -l jobset.sigs.k8s.io/jobset-name=recommender-train -o wide

say "training from the database: waiting for the JobSet to complete"
kubectl -n "$NS" wait jobset/recommender-train --for=condition=Completed --timeout=600s
kubectl -n "$NS" logs -l jobset.sigs.k8s.io/jobset-name=recommender-train --tail=3 --prefix

say "serving (serve/k8s/)"
kubectl apply -k serve/k8s/
kubectl -n "$NS" rollout status deploy/recommender --timeout=180s
kubectl -n "$NS" port-forward svc/recommender 8080:8080 >/dev/null 2>&1 &
pf=$!
trap 'kill $pf 2>/dev/null || true' EXIT
sleep 3
curl -fsS 'http://127.0.0.1:8080/recommend?book_id=1&k=5'
echo
curl -fsS 'http://127.0.0.1:8080/v1/models/recommender'
echo
say "done; remove everything with: jobset/kind-demo.sh cleanup"

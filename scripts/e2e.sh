#!/usr/bin/env bash
# The end-to-end suite: a real control plane (built once into the cache), the
# test kubelet, benchrun installed with Helm, then `cargo test -p benchrun-e2e`.
# Usage: scripts/e2e.sh [cargo test args...]   (make test runs it after the unit tests)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/cluster.sh
ensure_rust
work="$(mktemp -d "${TMPDIR:-/tmp}/benchrun-e2e.XXXXXX")"
on_exit() {
  local rc=$?
  cluster_down
  if [ "$rc" != 0 ]; then
    echo "== the suite failed; the cluster's log: $work/cluster.log" >&2
    tail -n 40 "$work/cluster.log" >&2 || true
  else
    rm -rf "$work"
  fi
}
trap on_exit EXIT
# Runs may name Secrets for their scrapes (the https tests use one).
CLUSTER_HELM_ARGS="${CLUSTER_HELM_ARGS:-} --set telemetry.scrapeCredentials=true"
CLUSTER_KEEP_DIR=1 cluster_up "$work/cluster" release
export BENCHRUN_E2E_KUBECONFIG="$KUBECONFIG"
echo "== cargo test -p benchrun-e2e (end-to-end)"
cargo test --locked -p benchrun-e2e --test e2e -- "$@"
# The namespaced install, after the suite (it changes the operator's RBAC and
# what it watches): skipped when a test filter was given, unless it names it.
if [ $# = 0 ] || [[ " $* " == *namespaced* ]]; then
  echo "== namespaced install: helm upgrade --set watchNamespaces={e2e-watched}"
  kubectl create namespace e2e-watched
  helm upgrade benchrun charts/benchrun --namespace benchrun-system --reuse-values \
    --set 'watchNamespaces={e2e-watched}' --wait --timeout 3m
  kubectl -n benchrun-system rollout status deployment/benchrun --timeout=3m
  cargo test --locked -p benchrun-e2e --test e2e -- --ignored namespaced
fi

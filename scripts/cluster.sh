# Local cluster lifecycle shared by scripts/e2e.sh and scripts/demo.sh. Sourced.
#
#   cluster_up DIR      build the tools and benchrun, start `benchrun-e2e up` in
#                       the background, wait for it, install the chart
#   cluster_down        stop the cluster (removes DIR and every pod address)
#
# Needs: scripts/env.sh sourced, root (pod addresses are added to `lo`).

# shellcheck disable=SC2034  # used by the scripts that source this file
cluster_up() {
  local dir="$1" profile="${2:-debug}"
  if [ "$(id -u)" != 0 ] && ! command -v capsh >/dev/null; then
    echo "the local cluster adds pod addresses to lo and needs root" >&2
    return 1
  fi
  TOOLS_BIN="$(bash e2e/tools/build.sh)"
  export PATH="$TOOLS_BIN:$PATH"
  # The tiny models llama-server serves live beside the tools.
  export BENCHRUN_E2E_TOOLS="$TOOLS_BIN"
  if [ "$profile" = release ]; then
    # benchrun exactly as the gpu-exporter image builds it: the cluster runs
    # the binary an image ships.
    echo "== scripts/image-build.sh glibc; cargo build --release -p benchrun-e2e"
    BENCHRUN_BIN="$(bash scripts/image-build.sh glibc | tail -n 1)"
    cargo build --locked --release -p benchrun-e2e
  else
    echo "== cargo build -p benchrun -p benchrun-e2e"
    cargo build --locked -p benchrun -p benchrun-e2e
    BENCHRUN_BIN="$CARGO_TARGET_DIR/$profile/benchrun"
  fi
  local e2e="$CARGO_TARGET_DIR/$profile/benchrun-e2e"

  CLUSTER_DIR="$dir"
  echo "== starting the local cluster in $dir (logs: $dir/logs)"
  "$e2e" up --dir "$dir" --tools "$TOOLS_BIN" \
    --image "benchrun=$BENCHRUN_BIN" --image "benchrun-gpu-exporter=$BENCHRUN_BIN" \
    --image "llm-d-inference-sim=$TOOLS_BIN/llm-d-inference-sim" \
    --image "llama-server=$TOOLS_BIN/llama-server" \
    ${CLUSTER_KEEP_DIR:+--keep-dir} ${CLUSTER_UP_ARGS:-} >"$dir.log" 2>&1 &
  CLUSTER_PID=$!
  # Wait on the fixture's own signal that the cluster is up (or on its death).
  until [ -f "$dir/ready" ]; do
    if ! kill -0 "$CLUSTER_PID" 2>/dev/null; then
      echo "the local cluster failed to start:" >&2
      tail -n 30 "$dir.log" >&2
      return 1
    fi
    sleep 0.2
  done
  export KUBECONFIG="$dir/kubeconfig"
  echo "== kubectl get nodes"
  kubectl get nodes -L nvidia.com/gpu.product
  echo "== helm install benchrun charts/benchrun"
  # The operator runs as a pod under the chart's ServiceAccount, not as admin.
  helm install benchrun charts/benchrun --namespace benchrun-system --create-namespace \
    --set image.repository=ghcr.io/benchrun/benchrun --set image.tag=dev \
    --set-string 'healthBindAddress=$(POD_IP)' \
    --set-string 'logLevel=info\,benchrun=debug' \
    --set simulators.dcgm.enabled=true \
    --set 'loadgen.allowedImages={registry.invalid/*}' --set loadgen.networkPolicy=true \
    --set simulators.dcgm.updateInterval=20ms --set 'simulators.dcgm.extraArgs={--tick=20ms}' \
    --set 'telemetry.discoveredPorts={9400,18000-18999}' \
    ${CLUSTER_HELM_ARGS:-} --wait --timeout "${CLUSTER_HELM_TIMEOUT:-3m}"
}

cluster_down() {
  [ -n "${CLUSTER_PID:-}" ] || return 0
  if kill -0 "$CLUSTER_PID" 2>/dev/null; then
    kill -TERM "$CLUSTER_PID"
    wait "$CLUSTER_PID" || true
  fi
  CLUSTER_PID=
}

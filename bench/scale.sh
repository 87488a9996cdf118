#!/usr/bin/env bash
# The controller's cost at cluster scale, on the local control plane.
#
# For each configuration NODES:RUNS it brings up the local cluster with NODES
# simulated GPU nodes of 8 GPUs each (the chart's `benchrun sim dcgm`
# DaemonSet serves each node's exporter page, refreshed every 200 ms), deploys
# RUNS one-GPU `benchrun sim inference` servers, and applies RUNS BenchmarkRuns
# at once, one per server, each open loop at 2 requests/s for SCALE_DURATION
# with telemetry every SCALE_INTERVAL. The first run has GPU scope `all`: it
# scrapes every node's exporter, so the controller reads all NODES x 8 GPUs
# every interval; the others are small runs (scope `targetPods`: their own
# server's GPU). It measures, side by side:
#   - the controller's CPU (cores, from /proc) and resident memory (peak, and
#     above its idle level) while the runs are in progress;
#   - the API requests the controller sends (the API server's audit log,
#     which records the controller's service account only), per second and by
#     verb and resource, and its status writes per run per minute;
#   - scrapes per second and the boundary scrapes missed or late (from the
#     runs' results: MeasurementValid, coverage, the longest gap between scrapes);
#   - apply -> Job created, per run (audit log timestamps, microseconds);
#   - where the controller's time goes: a flat `perf` profile (perf.txt).
# Results go to SCALE_OUT (default bench/results/scale-DATE/): one folder per
# configuration and report.md (bench/scale_report.py).
#
# Usage: bench/scale.sh [NODES:RUNS ...]   default: 16:10 125:10 125:100
# Needs what scripts/e2e.sh needs (root, Go, the tools it builds).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/cluster.sh
ensure_rust
duration="${SCALE_DURATION:-60s}"
interval="${SCALE_INTERVAL:-1s}"
out="${SCALE_OUT:-bench/results/scale-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ $# = 0 ]; then
  set -- 16:10 125:10 125:100
fi
trap cluster_down EXIT

# The controller's process, run by the test kubelet as a local process.
controller_pid() {
  local pid
  for pid in $(pgrep -f -- "benchrun controller" || true); do
    if grep -q "release/benchrun" "/proc/$pid/cmdline" 2>/dev/null; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# One line: unix time, CPU ticks (user+system), RSS kB, peak RSS kB.
sample() {
  local pid=$1
  local ticks rss hwm
  ticks=$(awk '{print $14+$15}' "/proc/$pid/stat")
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  echo "$(date +%s.%N) $ticks $rss $hwm"
}

one() {
  local nodes=$1 runs=$2 scope
  local dir="$out/n${nodes}-r${runs}"
  local work
  work="$(mktemp -d "${TMPDIR:-/tmp}/benchrun-scale.XXXXXX")"
  mkdir -p "$dir"
  echo "== scale: $nodes nodes x 8 GPUs, $runs runs, interval $interval"
  cat >"$work/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["system:serviceaccount:benchrun-system:benchrun"]
  - level: Metadata
    verbs: ["create"]
    resources: [{group: "benchrun.dev", resources: ["benchmarkruns"]}]
  - level: None
POLICY
  # The load generators go to the CPU nodes: one per 25 runs, so that no
  # node of the test kubelet runs short of pod addresses.
  local cpu_nodes=$(((runs + 24) / 25))
  CLUSTER_UP_ARGS="--gpu-nodes $nodes --gpus-per-node 8 --cpu-nodes $cpu_nodes \
--apiserver-arg=--audit-policy-file=$work/audit-policy.yaml \
--apiserver-arg=--audit-log-path=$work/audit.log --apiserver-arg=--audit-log-maxsize=2000" \
  # Every run measured at once (no maxActiveMeasurements limit): what the
  # controller costs when nothing waits.
  CLUSTER_HELM_ARGS="--set simulators.dcgm.updateInterval=200ms --set simulators.dcgm.extraArgs={--tick=200ms} --set maxActiveMeasurements=0" \
  CLUSTER_HELM_TIMEOUT=15m \
    cluster_up "$work/cluster" release

  kubectl create namespace scale >/dev/null
  for i in $(seq 1 "$runs"); do
    cat <<YAML
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sim-$i, namespace: scale}
spec:
  replicas: 1
  selector: {matchLabels: {app: sim-$i}}
  template:
    metadata: {labels: {app: sim-$i}}
    spec:
      containers:
        - name: sim
          image: ghcr.io/benchrun/benchrun:dev
          args: [sim, inference, --model, scale/sim, --port, "8000", --ttft, 5ms, --itl, 2ms]
          ports: [{name: http, containerPort: 8000}]
          readinessProbe: {httpGet: {path: /v1/models, port: 8000}, periodSeconds: 1}
          resources: {limits: {nvidia.com/gpu: 1}}
---
apiVersion: v1
kind: Service
metadata: {name: sim-$i, namespace: scale}
spec:
  selector: {app: sim-$i}
  ports: [{name: http, port: 8000}]
YAML
  done >"$work/servers.yaml"
  kubectl apply -f "$work/servers.yaml" >/dev/null
  kubectl -n scale wait --for=condition=Available deployment --all --timeout=15m >/dev/null
  for i in $(seq 1 "$runs"); do
    scope=targetPods
    [ "$i" = 1 ] && scope=all
    cat <<YAML
---
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: run-$i, namespace: scale}
spec:
  target: {serviceRef: {name: sim-$i, portName: http}, model: scale/sim}
  load:
    mode: rate
    requestRate: 2
    duration: $duration
    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 16}}}
  telemetry: {interval: $interval, gpu: {scope: $scope}}
YAML
  done >"$work/runs.yaml"

  local pid
  pid=$(controller_pid) || { echo "no controller process found" >&2; return 1; }
  # Idle: the controller with its watches and nothing to run.
  sleep 10
  sample "$pid" >"$dir/idle.txt"
  : >"$dir/samples.txt"
  (while kill -0 "$pid" 2>/dev/null; do sample "$pid" >>"$dir/samples.txt"; sleep 1; done) &
  local sampler=$!
  date +%s.%N >"$dir/applied-at.txt"
  kubectl apply -f "$work/runs.yaml" >/dev/null
  # Where the controller's time goes (a flat profile: the release build keeps
  # its symbols), over the middle of the runs.
  local profiler=
  if command -v perf >/dev/null; then
    (sleep 15 && perf record -q -F 499 -p "$pid" -o "$dir/perf.data" -- sleep 30 >/dev/null 2>&1) &
    profiler=$!
  fi
  # Until every run has ended (a run's own limit is its load's duration).
  local left
  for _ in $(seq 1 900); do
    left=$(kubectl -n scale get br -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum(1 for r in items if (r.get("status") or {}).get("phase") not in ("Succeeded", "Failed", "Cancelled")))')
    [ "$left" = 0 ] && break
    sleep 2
  done
  date +%s.%N >"$dir/ended-at.txt"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  if [ -n "$profiler" ]; then
    wait "$profiler" 2>/dev/null || true
    perf report -i "$dir/perf.data" --stdio --sort symbol --percent-limit 1.5 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -40 >"$dir/perf.txt" || true
    rm -f "$dir/perf.data"
  fi
  kubectl -n scale get br -o json >"$dir/runs.json"
  mkdir -p "$dir/results"
  for i in $(seq 1 "$runs"); do
    "$BENCHRUN_BIN" kubectl results "run-$i" -n scale -o json >"$dir/results/run-$i.json" ||
      echo "run-$i: no results" >&2
  done
  cp "$work/audit.log" "$dir/audit.log"
  echo "$nodes $runs $interval $duration" >"$dir/config.txt"
  nproc >"$dir/cpus.txt"
  cluster_down
  rm -rf "$work"
}

for config in "$@"; do
  IFS=: read -r nodes runs <<<"$config"
  one "$nodes" "$runs"
done
python3 bench/scale_report.py "$out" | tee "$out/report.md"

#!/usr/bin/env bash
# The main job: a complete benchmark on a local cluster.
# Usage: scripts/demo.sh [--keep]   (or: make demo, make demo KEEP=1)
#
# Builds the control plane (once, into the cache) and benchrun, brings up the
# local cluster, installs the chart with Helm (with the GPU simulator
# DaemonSet), deploys `benchrun sim inference` as a one-GPU inference server,
# applies a BenchmarkRun against its Service, waits for the outcome, and prints
# `kubectl get br`, the worker's measurements and the simulated GPUs; then a
# concurrency sweep that keeps its time series, drawn with `kubectl benchrun
# plot` (into $PLOTS, default a temporary folder; SAVE_RESULTS=DIR also saves
# its results document and time series there).
# ENGINE=llama.cpp (make demo ENGINE=llama.cpp) then benchmarks a real engine
# too: llama.cpp's llama-server on the CPU serving a tiny model with a real
# tokenizer and chat template (e2e/tools/build.sh builds both), a sweep of 1,
# 2 and 4 streams on its 4 slots, prompts sized by its own /tokenize.
# --keep leaves the cluster running and prints how to reach it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/cluster.sh
ensure_rust
keep=0
[ "${1:-}" = "--keep" ] || [ "${KEEP:-0}" = 1 ] && keep=1
work="$(mktemp -d "${TMPDIR:-/tmp}/benchrun-demo.XXXXXX")"
on_exit() {
  if [ "$keep" = 1 ]; then
    echo "== the cluster keeps running (pid $CLUSTER_PID): export KUBECONFIG=$work/cluster/kubeconfig"
    echo "   stop it with: kill $CLUSTER_PID"
  else
    cluster_down
    rm -rf "$work"
  fi
}
trap on_exit EXIT
cluster_up "$work/cluster" release

echo "== deploying benchrun sim inference (continuous batching, vLLM metrics, 1 GPU) in namespace demo"
kubectl create namespace demo
kubectl -n demo apply -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: llm, labels: {app: llm}}
spec:
  replicas: 1
  selector: {matchLabels: {app: llm}}
  template:
    metadata: {labels: {app: llm}}
    spec:
      containers:
        - name: vllm
          image: ghcr.io/benchrun/benchrun:dev
          args: [sim, inference, --model, Qwen/Qwen2.5-7B-Instruct, --port, "8000",
                 --max-batch, "32", --decode-base, 8ms, --decode-per-seq, 200us]
          ports: [{name: http, containerPort: 8000}]
          resources: {limits: {nvidia.com/gpu: 1}}
          readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: llm}
spec:
  selector: {app: llm}
  ports: [{name: http, port: 8000, targetPort: http}]
EOF
kubectl -n demo rollout status deployment/llm --timeout=2m

echo "== applying a BenchmarkRun: 8 streams, 200 requests"
kubectl -n demo apply -f - <<'EOF'
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: qwen-c8}
spec:
  target:
    serviceRef: {name: llm, portName: http}
    model: Qwen/Qwen2.5-7B-Instruct
  load:
    concurrency: 8
    requestCount: 200
    warmupRequestCount: 8
    input:
      synthetic:
        inputTokens: {mean: 256}
        outputTokens: {mean: 64}
  timeout: 5m
EOF
# Waits for run $1 to succeed; prints it and fails otherwise.
succeeded() {
  kubectl -n demo wait "br/$1" --for=jsonpath='{.status.phase}'=Succeeded --timeout=5m || {
    kubectl -n demo get br "$1" -o yaml
    exit 1
  }
}
succeeded qwen-c8
echo "== kubectl get br"
kubectl -n demo get br
echo "== conditions"
kubectl -n demo get br qwen-c8 -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
echo "== kubectl benchrun results qwen-c8 (the results ConfigMap as tables)"
"$BENCHRUN_BIN" kubectl results qwen-c8 -n demo
echo "== the simulators' ground truth for the same GPUs (benchrun sim dcgm, from the chart)"
node="$(kubectl -n demo get pod -l app=llm -o jsonpath='{.items[0].spec.nodeName}')"
dcgm_ip="$(kubectl -n benchrun-system get pod -l app=sim-dcgm --field-selector "spec.nodeName=$node" -o jsonpath='{.items[0].status.podIP}')"
curl -s "http://$dcgm_ip:9400/sim/truth?history=0" | python3 -c '
import json, sys
t = json.load(sys.stdin)
for g in t["gpus"]:
    pod = g.get("pod")
    who = "%s/%s" % (pod["namespace"], pod["name"]) if pod else "idle"
    print("  GPU %d  %-40s %8.1f J since start" % (g["gpu"], who, g["energyMj"] / 1e3))
'

echo "== a sweep with its time series: concurrency 1, 4, 16, 32 (50 requests each), a TTFT objective"
kubectl -n demo apply -f - <<'EOF'
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: qwen-sweep}
spec:
  target:
    serviceRef: {name: llm, portName: http}
    model: Qwen/Qwen2.5-7B-Instruct
  load:
    requestCount: 50
    warmupRequestCount: 4
    sweep: {concurrency: [1, 4, 16, 32]}
    input:
      synthetic:
        inputTokens: {mean: 256}
        outputTokens: {mean: 64}
  slo:
    - {metric: ttftP99Ms, max: 60}
  results: {timeseries: true}
  timeout: 5m
EOF
succeeded qwen-sweep
kubectl -n demo get br qwen-sweep
plots="${PLOTS:-$work/plots}"
echo "== kubectl benchrun plot qwen-sweep --out $plots"
"$BENCHRUN_BIN" kubectl plot qwen-sweep -n demo --out "$plots"
if [ -n "${SAVE_RESULTS:-}" ]; then
  # The recorded run the plot tests read (src/plot/testdata).
  mkdir -p "$SAVE_RESULTS"
  "$BENCHRUN_BIN" kubectl results qwen-sweep -n demo -o json > "$SAVE_RESULTS/summary.json"
  "$BENCHRUN_BIN" kubectl results qwen-sweep -n demo -o timeseries > "$SAVE_RESULTS/timeseries.jsonl"
fi
if [ "${ENGINE:-}" = llama.cpp ]; then
  echo "== deploying llama.cpp's llama-server (4 slots, continuous batching, metrics; a tiny model, real tokenizer)"
  kubectl -n demo apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: llama, labels: {app: llama}}
spec:
  replicas: 1
  selector: {matchLabels: {app: llama}}
  template:
    metadata: {labels: {app: llama}}
    spec:
      containers:
        - name: llama
          image: registry.invalid/llama-server:0c1e570
          args: [-m, "$TOOLS_BIN/tiny-spm.gguf", --alias, tiny-llama, --host, 0.0.0.0, --port, "8090",
                 --parallel, "4", --cont-batching, --metrics, -c, "8192", -t, "1"]
          ports: [{name: http, containerPort: 8090}]
          readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: llama}
spec:
  selector: {app: llama}
  ports: [{name: http, port: 8090, targetPort: http}]
EOF
  kubectl -n demo rollout status deployment/llama --timeout=2m
  echo "== a sweep against llama.cpp: 1, 2, 4 streams, 40 requests each, prompts in its own tokens"
  kubectl -n demo apply -f - <<'EOF'
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: llama-sweep}
spec:
  target:
    serviceRef: {name: llama, portName: http}
    model: tiny-llama
  load:
    requestCount: 40
    sweep: {concurrency: [1, 2, 4]}
    extraInputs: {ignore_eos: true}
    input:
      synthetic:
        tokenizer: server
        inputTokens: {mean: 128}
        outputTokens: {mean: 32}
  telemetry:
    server:
      selector: {matchLabels: {app: llama}}
  timeout: 5m
EOF
  succeeded llama-sweep
  kubectl -n demo get br llama-sweep
  kubectl -n demo get br llama-sweep -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
  "$BENCHRUN_BIN" kubectl results llama-sweep -n demo -o wide
fi
echo "== done"

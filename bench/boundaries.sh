#!/usr/bin/env bash
# Boundary precision: how far each step's telemetry window (its boundary
# scrapes) lies from the load generators' own step window, over a 50-step
# sweep on the local cluster. Prints p50/p99/max of the opening lag (window
# start − the workers' first request) and the closing lag (window end − the
# last worker's step end), in ms; then the requests per second the controller
# sends to the workers of a run (benchrun_worker_requests_total on its
# /metrics) with one worker and nothing moving (one 30 s request in flight),
# and with 64 busy workers; and the machine.
# Usage: bench/boundaries.sh   (root, like make demo; about 8 minutes warm)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/cluster.sh
ensure_rust
work="$(mktemp -d "${TMPDIR:-/tmp}/benchrun-bench.XXXXXX")"
trap 'cluster_down; rm -rf "$work"' EXIT
cluster_up "$work/cluster" release

kubectl create namespace bench
# The simulated inference server of config/simulators, with the local image.
sed 's|ghcr.io/benchrun/benchrun:0.1.0|ghcr.io/benchrun/benchrun:dev|' \
  config/simulators/sim-inference.yaml | kubectl -n bench apply -f -
kubectl -n bench rollout status deployment/llm --timeout=2m
# 50 steps of 40 requests at 4 streams, each after 4 warmup requests (so
# every step's start is noticed by the controller, not given by the start).
steps=$(python3 -c 'print(", ".join(["4"] * 50))')
kubectl -n bench apply -f - <<YAML
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: boundaries}
spec:
  target: {serviceRef: {name: llm}, model: Qwen/Qwen2.5-7B-Instruct}
  load:
    requestCount: 40
    warmupRequestCount: 4
    sweep: {concurrency: [$steps]}
    input: {synthetic: {inputTokens: {mean: 32}, outputTokens: {mean: 16}}}
  telemetry: {interval: 1s}
  timeout: 15m
YAML
kubectl -n bench wait br/boundaries --for=jsonpath='{.status.phase}'=Succeeded --timeout=15m
# The results, put back together (50 steps outgrow one ConfigMap: compressed, split).
"$BENCHRUN_BIN" kubectl results boundaries -n bench -o json >"$work/summary.json"
python3 - "$work/summary.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
opening, closing = [], []
for d in doc["details"]:
    w, c = d.get("window"), d.get("client")
    if not (w and c):
        continue
    opening.append(w["startUnixMs"] - c["startedUnixMs"])
    closing.append(w["endUnixMs"] - c["endedUnixMs"])
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]
for name, xs in (("opening lag", opening), ("closing lag", closing)):
    print(f"{name} over {len(xs)} steps, ms: p50 {pct(xs, 50)}, p99 {pct(xs, 99)}, max {max(xs)}, min {min(xs)}")
PY

# What following a run costs the controller, in requests to its workers.
controller_ip=$(kubectl -n benchrun-system get pod \
  -l app.kubernetes.io/name=benchrun,app.kubernetes.io/component=controller \
  -o jsonpath='{.items[0].status.podIP}')
# /metrics answers a token whose user may read it (the chart's metrics-reader role).
kubectl -n benchrun-system create serviceaccount bench-metrics-reader --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create clusterrolebinding bench-metrics-reader --clusterrole=benchrun-metrics-reader \
  --serviceaccount=benchrun-system:bench-metrics-reader --dry-run=client -o yaml | kubectl apply -f - >/dev/null
metrics_token=$(kubectl -n benchrun-system create token bench-metrics-reader)
worker_requests() {
  curl -fsS -H "Authorization: Bearer $metrics_token" "http://$controller_ip:8081/metrics" |
    awk '$1 == "benchrun_worker_requests_total" {print $2}'
}
# Requests per second over 20 s of run $1's measured phase.
requests_per_s() {
  kubectl -n bench wait "br/$1" --for=jsonpath='{.status.phase}'=Running --timeout=5m >/dev/null
  sleep 5
  local a b
  a=$(worker_requests)
  sleep 20
  b=$(worker_requests)
  python3 -c "print(f'{($b - $a) / 20:.2f}')"
}
# A slow server: 100 ms per token, so one 300-token request runs 30 s.
kubectl -n bench apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: slow}
spec:
  selector: {matchLabels: {app: slow}}
  template:
    metadata: {labels: {app: slow}}
    spec:
      containers:
        - name: sim
          image: ghcr.io/benchrun/benchrun:dev
          args: [sim, inference, --model, slow, --port, "8001", --ttft, 100ms, --itl, 100ms]
          ports: [{name: http, containerPort: 8001}]
          readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: slow}
spec:
  selector: {app: slow}
  ports: [{name: http, port: 8001, targetPort: http}]
YAML
kubectl -n bench rollout status deployment/slow --timeout=2m
kubectl -n bench apply -f - <<'YAML'
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: idle}
spec:
  target: {serviceRef: {name: slow}, model: slow}
  load:
    requestCount: 1
    input: {synthetic: {inputTokens: {mean: 8}, outputTokens: {mean: 300}}}
  timeout: 5m
YAML
idle=$(requests_per_s idle)
kubectl -n bench wait br/idle --for=jsonpath='{.status.phase}'=Succeeded --timeout=5m >/dev/null
kubectl -n bench apply -f - <<'YAML'
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: wide}
spec:
  target: {serviceRef: {name: slow}, model: slow}
  load:
    concurrency: 64
    workers: 64
    duration: 45s
    input: {synthetic: {inputTokens: {mean: 8}, outputTokens: {mean: 10}}}
  timeout: 10m
YAML
wide=$(requests_per_s wide)
kubectl -n bench wait br/wide --for=jsonpath='{.status.phase}'=Succeeded --timeout=10m >/dev/null
echo "controller requests to workers, per second: idle run (1 worker) $idle; 64 busy workers $wide"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"

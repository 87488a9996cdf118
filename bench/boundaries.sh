#!/usr/bin/env bash
# Boundary precision: how far each step's telemetry window (its boundary
# scrapes) lies from the load generators' own step window, over a 50-step
# sweep on the local cluster. Prints p50/p99/max of the opening lag (window
# start − the workers' first request) and the closing lag (window end − the
# last worker's step end), in ms, and the machine.
# Usage: bench/boundaries.sh   (root, like make demo; about 5 minutes warm)
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
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"

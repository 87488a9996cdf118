#!/usr/bin/env bash
# The load generator's CPU cost over HTTPS beside plain HTTP, in one run,
# against one server. Usage: bench/tls.sh [REPEATS]   Prints a Markdown table
# (docs/benchmarks.md).
#
# The server is `benchrun sim inference` (TTFT 20 ms, ITL 5 ms, 64 output tokens
# per request) pinned to CPU 0, serving HTTP on one port and HTTPS (its own TLS,
# a certificate from a CA made here, HTTP/2 and HTTP/1.1 by ALPN) on another;
# the client is pinned to CPU 1. For 1, 100 and 400 streams the client runs
# REPEATS times (default 3) over each, alternating; figures are medians. CPU is
# the OS's accounting (user + sys, /usr/bin/time); "per 1k tokens" divides it
# by the output tokens received. Over HTTPS with HTTP/2 one connection carries
# every stream; HTTP/1.1 keeps one connection per stream.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_rust
repeats="${1:-3}"
cargo build --quiet --release -p benchrun
bin="$CARGO_TARGET_DIR/release/benchrun"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# A CA and a certificate for localhost that it signed.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=bench-ca -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' > "$work/san.ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
  -CAcreateserial -days 1 -extfile "$work/san.ext" -out "$work/tls.crt" 2>/dev/null
http_port=18111
https_port=18112
serve() { # PORT [TLS ARGS...]
  local port="$1"
  shift
  taskset -c 0 "$bin" sim inference --host 127.0.0.1 --port "$port" --model mock-model \
    --ttft 20ms --itl 5ms --truth-records 0 "$@" >/dev/null 2>&1 &
  pids+=($!)
}
serve "$http_port"
serve "$https_port" --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key"
until curl -sf "http://127.0.0.1:$http_port/health" >/dev/null &&
  curl -sf --cacert "$work/ca.crt" "https://localhost:$https_port/health" >/dev/null; do
  sleep 0.05
done

run_one() { # SCHEME STREAMS REQUESTS
  local url out="$work/out.json"
  if [ "$1" = https ]; then
    url="https://localhost:$https_port"
    set -- "$@" --ca-file "$work/ca.crt"
  else
    url="http://127.0.0.1:$http_port"
  fi
  local scheme="$1" streams="$2" requests="$3"
  shift 3
  taskset -c 1 /usr/bin/time -f '%U %S %M' -o "$work/time" "$bin" loadgen \
    --url "$url" --model mock-model --concurrency "$streams" --requests "$requests" \
    --input-tokens 100 --output-tokens 64 --output "$out" "$@" >/dev/null
  python3 - "$scheme" "$streams" "$out" "$work/time" >> "$work/runs.jsonl" <<'PY'
import json, sys
scheme, streams, out, timef = sys.argv[1:5]
user, sys_, rss = open(timef).read().split()[-3:]
s = json.load(open(out))["steps"][0]
print(json.dumps(dict(scheme=scheme, streams=int(streams), cpu=float(user) + float(sys_),
    rss=int(rss) / 1024, tokens=s["outputTokens"], ok=s["successes"], requests=s["requests"],
    tps=s["outputTokensPerS"], ttft=s["ttftS"]["p50"] * 1e3, itl=s["itlS"]["p50"] * 1e3)))
PY
}

for load in 1:40 100:4000 400:8000; do
  streams="${load%%:*}"
  requests="${load##*:}"
  for _ in $(seq "$repeats"); do
    run_one http "$streams" "$requests"
    run_one https "$streams" "$requests"
  done
done

python3 - "$work/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs)
print("| streams | scheme | requests ok | output tok/s | TTFT p50 ms | ITL p50 ms | client CPU s | CPU ms per 1k tokens | peak RSS MiB |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
ratios = []
for streams in sorted({r["streams"] for r in runs}):
    per = {}
    for scheme in ("http", "https"):
        rs = [r for r in runs if r["streams"] == streams and r["scheme"] == scheme]
        cpu_per_k = med([r["cpu"] / r["tokens"] * 1e6 for r in rs])
        per[scheme] = cpu_per_k
        print(f"| {streams} | {scheme} | {med([r['ok'] for r in rs]):.0f}/{rs[0]['requests']} | "
              f"{med([r['tps'] for r in rs]):.0f} | {med([r['ttft'] for r in rs]):.2f} | "
              f"{med([r['itl'] for r in rs]):.2f} | {med([r['cpu'] for r in rs]):.2f} | "
              f"{cpu_per_k:.1f} | {med([r['rss'] for r in rs]):.0f} |")
    ratios.append((streams, per["https"] / per["http"]))
print()
print("HTTPS / HTTP CPU per token: " + ", ".join(f"{s} streams ×{r:.2f}" for s, r in ratios))
PY

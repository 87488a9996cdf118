#!/usr/bin/env bash
# Parser speed and memory, side by side with aiperf's parser, in one run.
# Usage: bench/parser.sh [ROUNDS] [REPEATS]   Prints a Markdown table (docs/benchmarks.md).
# Both tools run REPEATS times (default 3), alternating; each figure is the
# median over the repeats of each run's median over ROUNDS rounds.
#
# benchrun: examples/parse_throughput.rs (release build), parse only and
# parse + ingest into the telemetry engine. aiperf 0.13.0: its parser call,
# prometheus_client.parser.text_string_to_metric_families, from PyPI
# (prometheus-client 0.23.1, the version aiperf 0.13.0 pins), in a venv.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_rust
rounds="${1:-200}"
repeats="${2:-3}"
venv="$BENCHRUN_CACHE/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet prometheus-client==0.23.1
fi
cargo build --quiet --release --example parse_throughput
bin="$CARGO_TARGET_DIR/release/examples/parse_throughput"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" --dump "$work" > "$work/list.tsv"
for _ in $(seq "$repeats"); do
  "$venv/bin/python" bench/aiperf_parser.py "$((rounds / 4 + 1))" < "$work/list.tsv" >> "$work/aiperf.jsonl"
  "$bin" --rounds "$rounds" >> "$work/benchrun.jsonl"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(rustc --version); $("$venv/bin/python" --version)"
echo
python3 - "$work/aiperf.jsonl" "$work/benchrun.jsonl" <<'PY'
import json, statistics, sys
def medians(path):
    runs = {}
    for j in map(json.loads, open(path)):
        runs.setdefault(j.get("payload") or j.get("memory"), []).append(j)
    out = []
    for key, js in runs.items():
        m = dict(js[0])
        for k, v in js[0].items():
            if isinstance(v, float):
                m[k] = statistics.median(j[k] for j in js)
        out.append(m)
    return out
aiperf = {j["payload"]: j for j in medians(sys.argv[1])}
rows = medians(sys.argv[2])
print("| payload | bytes | samples | aiperf parser MB/s | benchrun parse MB/s | benchrun parse+ingest MB/s | parse+ingest µs/sample | parse vs aiperf | parse+ingest vs aiperf |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    if "payload" not in r:
        continue
    a = aiperf[r["payload"]]
    print(f"| {r['payload']} | {r['bytes']} | {r['samples']} | {a['parseMBps']:.1f} | {r['parseMBps']:.0f} | {r['ingestMBps']:.0f} | {r['ingestUsPerSample']:.3f} | {r['parseMBps'] / a['parseMBps']:.0f}× | {r['ingestMBps'] / a['parseMBps']:.0f}× |")
for r in rows:
    if "memory" in r:
        print(f"\nMemory: {r['series']} series ({r['memory']}) after {r['scrapes']} scrapes of changing values: {r['bytesPerSeries']} bytes per series ({r['bytes']} bytes in all).")
PY

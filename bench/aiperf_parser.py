"""aiperf's exposition parser on the same payloads as examples/parse_throughput.rs.

aiperf 0.13.0 parses both dcgm-exporter and server pages with
prometheus_client.parser.text_string_to_metric_families (prometheus-client
~=0.23.1); this times exactly that call, median of ROUNDS, one JSON line per
payload, reading `name<TAB>path` lines from stdin.
"""
import json
import statistics
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 50

for line in sys.stdin:
    name, path = line.rstrip("\n").split("\t")
    text = open(path, encoding="utf-8").read()
    samples = sum(len(f.samples) for f in text_string_to_metric_families(text))
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        list(text_string_to_metric_families(text))
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    size = len(text.encode("utf-8"))
    print(json.dumps({
        "payload": name,
        "bytes": size,
        "samples": samples,
        "parseMBps": round(size / 1e6 / med, 2),
        "parseUsPerSample": round(med * 1e6 / max(samples, 1), 3),
    }), flush=True)

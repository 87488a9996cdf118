#!/usr/bin/env python3
"""Report of bench/scale.sh: one row per configuration, as markdown.

Usage: bench/scale_report.py OUT_DIR   (the folder bench/scale.sh wrote)
"""
import glob
import json
import os
import sys
from collections import Counter
from datetime import datetime

CLK_TCK = os.sysconf("SC_CLK_TCK")
CONTROLLER = "system:serviceaccount:benchrun-system:benchrun"


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def samples(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4:
                rows.append(tuple(float(x) for x in parts))
    return rows


def report(d):
    nodes, runs, interval, duration = open(f"{d}/config.txt").read().split()
    applied = float(open(f"{d}/applied-at.txt").read())
    ended = float(open(f"{d}/ended-at.txt").read())
    idle = samples(f"{d}/idle.txt")[0]
    rows = samples(f"{d}/samples.txt")
    # CPU over the window the runs were in progress.
    inside = [r for r in rows if applied <= r[0] <= ended] or rows
    cores = (inside[-1][1] - inside[0][1]) / CLK_TCK / max(inside[-1][0] - inside[0][0], 1e-9)
    peak_rss_mib = max(r[3] for r in rows) / 1024
    extra_mib = (max(r[2] for r in rows) - idle[2]) / 1024
    # The controller's API requests while the runs were in progress.
    verbs = Counter()
    status_writes = Counter()
    created = {}
    job_created = {}
    n_requests = 0
    with open(f"{d}/audit.log") as f:
        for line in f:
            e = json.loads(line)
            if e.get("stage") != "ResponseComplete":
                continue
            obj = e.get("objectRef") or {}
            t = ts(e["requestReceivedTimestamp"])
            user = (e.get("user") or {}).get("username")
            if obj.get("resource") == "benchmarkruns" and e["verb"] == "create":
                created[obj.get("name")] = t
                continue
            if user != CONTROLLER or not (applied <= t <= ended):
                continue
            n_requests += 1
            verbs[f'{e["verb"]} {obj.get("resource", "")}{"/" + obj["subresource"] if obj.get("subresource") else ""}'] += 1
            if obj.get("resource") == "benchmarkruns" and obj.get("subresource") == "status":
                status_writes[obj.get("name")] += 1
            if obj.get("resource") == "jobs" and e["verb"] in ("patch", "create"):
                name = (obj.get("name") or "").removesuffix("-loadgen")
                job_created.setdefault(name, t)
    window = ended - applied
    # Per run: its results.
    scrapes = 0
    run_seconds = []
    valid = Counter()
    worst_gap = 0.0
    missing = 0
    for path in sorted(glob.glob(f"{d}/results/*.json")):
        try:
            doc = json.load(open(path))
        except (json.JSONDecodeError, OSError):
            missing += 1
            continue
        for ep in doc.get("endpoints", []):
            if ep.get("kind") in ("gpu", "server"):
                scrapes += ep.get("scrapes", 0)
                worst_gap = max(worst_gap, ep.get("longestGapS") or 0.0)
        if doc.get("startTime") and doc.get("completionTime"):
            run_seconds.append(ts(doc["completionTime"]) - ts(doc["startTime"]))
    for r in json.load(open(f"{d}/runs.json"))["items"]:
        conds = {c["type"]: c for c in (r.get("status") or {}).get("conditions", [])}
        mv = conds.get("MeasurementValid")
        valid[f'{mv["status"]}/{mv["reason"]}' if mv else "none"] += 1
    latencies = sorted(job_created[n] - created[n] for n in job_created if n in created)
    mean_run = sum(run_seconds) / len(run_seconds) if run_seconds else 0
    per_min = (
        sum(status_writes.values()) / len(status_writes) / (window / 60) if status_writes else 0
    )
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    return {
        "config": f"{nodes} nodes ({int(nodes) * 8} GPUs, all scraped every {interval}), {runs} runs",
        "cores": cores,
        "peak_rss": peak_rss_mib,
        "extra_rss": extra_mib,
        "api_per_s": n_requests / window,
        "verbs": verbs.most_common(6),
        "status_per_run_min": per_min,
        # The runs overlap: all their scrapes over one run's length.
        "scrapes_per_s": scrapes / mean_run if mean_run else 0,
        "valid": dict(valid),
        "worst_gap": worst_gap,
        "apply_to_job_p50": p(0.5),
        "apply_to_job_max": latencies[-1] if latencies else float("nan"),
        "missing": missing,
        "window": window,
        "profile": profile(d),
    }


def profile(d):
    """The top entries of the controller's flat perf profile, if one was taken."""
    try:
        lines = [l.strip() for l in open(f"{d}/perf.txt") if "%" in l]
    except OSError:
        return []
    out = []
    for l in lines[:8]:
        pct, _, sym = l.partition("%")
        # perf pads the column, and fills empty ones with "-".
        sym = " ".join(w for w in sym.split("]", 1)[-1].split() if w != "-")
        out.append(f"{pct.strip()} % {sym[:90]}")
    return out


def main():
    out = sys.argv[1]
    dirs = [d for d in glob.glob(f"{out}/n*-r*") if os.path.exists(f"{d}/config.txt")]
    # In order of size: nodes, then runs.
    dirs.sort(key=lambda d: tuple(int(x[1:]) for x in os.path.basename(d).split("-")[:2]))
    rows = [report(d) for d in dirs]
    cpus = open(glob.glob(f"{out}/*/cpus.txt")[0]).read().strip() if rows else "?"
    print(f"Machine: {cpus} CPUs (the control plane, the simulators, the load generators and the controller share them).\n")
    print("| configuration | controller CPU (cores) | peak RSS (MiB) | RSS above idle (MiB) | API requests/s | status writes per run per min | scrapes/s | apply → Job p50 / max (s) | MeasurementValid | longest gap between scrapes (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        valid = ", ".join(f"{k} ×{v}" for k, v in sorted(r["valid"].items()))
        print(
            f'| {r["config"]} | {r["cores"]:.2f} | {r["peak_rss"]:.1f} | {r["extra_rss"]:.1f} | {r["api_per_s"]:.1f} | {r["status_per_run_min"]:.1f} | {r["scrapes_per_s"]:.0f} | {r["apply_to_job_p50"]:.2f} / {r["apply_to_job_max"]:.2f} | {valid} | {r["worst_gap"]:.1f} |'
        )
    print()
    for r in rows:
        top = ", ".join(f"{k}: {v / r['window']:.2f}/s" for k, v in r["verbs"])
        print(f'- {r["config"]}: the controller\'s requests by verb and resource: {top}' + (f'; {r["missing"]} runs without results' if r["missing"] else ""))
        if r["profile"]:
            print(f'  where its CPU time went (perf, flat): {"; ".join(r["profile"])}')


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The bench's six overview questions against a running Tally (docs/benchmarks.md, 20M).

    python3 benches/overview_queries.py URL FROM

For a database `tally bench` cannot reach the query phase of in one session (the 20M run):
start `tally serve` on it, then ask what `tally bench` asks (src/bench/mod.rs,
`overview_queries`, FROM the start of the traffic's 30 days, RFC 3339), two warm-up runs and
15 timed, and print each question's p50, min and max in milliseconds. Unlike the bench it has
no raw-events baseline and does not check the answers.
"""
import statistics, sys, time, urllib.request

url, frm = sys.argv[1], sys.argv[2].replace("+", "%2B")
questions = [
    ("total", f"/api/v1/costs?from={frm}"),
    ("daily series", f"/api/v1/costs?interval=day&from={frm}"),
    ("top 10 features", f"/api/v1/costs?group_by=feature&order=cost&limit=10&from={frm}"),
    ("top 10 users", f"/api/v1/costs?group_by=user_id&order=cost&limit=10&from={frm}"),
    ("top 10 models", f"/api/v1/costs?group_by=provider,model&order=cost&limit=10&from={frm}"),
    ("cost per successful task", f"/api/v1/tasks?from={frm}"),
]
for name, path in questions:
    times = []
    for i in range(17):
        started = time.perf_counter()
        with urllib.request.urlopen(url + path, timeout=600) as r:
            r.read()
        if i >= 2:
            times.append((time.perf_counter() - started) * 1000)
    print(f"{name:26s} p50 {statistics.median(times):8.1f} ms"
          f"  min {min(times):7.1f}  max {max(times):7.1f}")

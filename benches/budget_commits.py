#!/usr/bin/env python3
"""Per-commit cost of budget evaluation on a loaded database (docs/benchmarks.md, "Budgets").

    python3 benches/budget_commits.py BINARY DATA_DIR LABEL

DATA_DIR is a Tally data directory (the one holding tally.duckdb) with the benchmark's traffic:
`WORK/tally` after `tally bench --events 10000000 --work-dir WORK --keep` (projects
support-bot, dev-tools and knowledge-hub). It is copied first, so
two binaries can be compared on the same data. The script starts `BINARY serve` on the copy,
creates six budgets of common shapes (rolling 30 days and monthly, whole projects, split by
feature, by user and by model, feature and model globs), posts 80 sequential requests of 500
fresh events (one commit each), and prints the writer's `budgets` phase per commit from
/metrics, the request latency, and the time of a full budget status read.
"""
import json, os, shutil, subprocess, sys, time, urllib.request, gzip, random, statistics, re
import tempfile
BIN, SOURCE, LABEL = sys.argv[1], sys.argv[2], sys.argv[3]
KEY = "bench-admin-key-0123456789abcdef"
work = tempfile.mkdtemp(prefix="tally-budget-commits-")
db = f"{work}/db"
shutil.copytree(SOURCE, db)
env = dict(os.environ, TALLY_ADMIN_KEY=KEY, RUST_LOG="warn")
port = 7801
srv = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", db],
                       env=env, stdout=open(f"{work}/server.log", "w"), stderr=subprocess.STDOUT)
base = f"http://127.0.0.1:{port}"
def req(method, path, body=None, gz=False):
    data = None
    headers = {"Authorization": f"Bearer {KEY}"}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/x-ndjson" if isinstance(body, bytes) else "application/json"
    r = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(r, timeout=600) as resp:
        return resp.read()
for _ in range(600):
    try:
        urllib.request.urlopen(base + "/healthz", timeout=2); break
    except Exception:
        time.sleep(1)
specs = [
    {"name": "b1", "project": "support-bot", "period": "rolling 30 days", "amount": "1000000"},
    {"name": "b2", "project": "dev-tools", "period": "month", "amount": "1000000"},
    {"name": "b3", "project": "support-bot", "period": "rolling 30 days", "amount": "1000000", "split_by": "feature"},
    {"name": "b4", "project": "knowledge-hub", "period": "rolling 30 days", "amount": "1000000", "scope": {"feature": "doc-*"}},
    {"name": "b5", "project": "dev-tools", "period": "rolling 30 days", "amount": "1000000", "scope": {"model": "claude-*"}, "split_by": "model"},
    {"name": "b6", "project": "support-bot", "period": "rolling 30 days", "amount": "1000000", "split_by": "user_id"},
]
t = time.time()
for s in specs:
    req("POST", "/api/v1/budgets", s)
print(f"{LABEL} create 6 budgets {time.time()-t:.2f} s")
def metric(text, name, phase):
    m = re.search(rf'^{name}\{{[^}}]*phase="{phase}"[^}}]*\}} ([0-9.e+-]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0
m0 = req("GET", "/metrics").decode()
rnd = random.Random(7)
lat = []
projects = ["support-bot", "dev-tools", "knowledge-hub"]
features = ["support-chat", "doc-qa", "code-review", "ticket-triage"]
for b in range(80):
    lines = []
    now = time.time()
    for i in range(500):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + "Z"
        lines.append(json.dumps({"timestamp": ts, "request_id": f"bud-{LABEL}-{b}-{i}", "project": rnd.choice(projects),
            "feature": rnd.choice(features), "user_id": f"u{rnd.randrange(500)}", "model": "claude-sonnet-4-5-20250929",
            "provider": "anthropic", "usage": {"input_tokens": 1000, "output_tokens": 200}}))
    body = ("\n".join(lines) + "\n").encode()
    t = time.time()
    ans = json.loads(req("POST", "/v1/ingest", body))
    assert ans.get("accepted") == 500, str(ans)[:300]
    lat.append((time.time() - t) * 1000)
m1 = req("GET", "/metrics").decode()
name = "tally_writer_phase_duration_seconds"
for phase in ["budgets", "commit", "append", "rollups"]:
    s = metric(m1, name + "_sum", phase) - metric(m0, name + "_sum", phase)
    n = metric(m1, name + "_count", phase) - metric(m0, name + "_count", phase)
    print(f"{LABEL} {phase}: {n:.0f} commits, {1000*s/max(n,1):.2f} ms/commit")
lat.sort()
print(f"{LABEL} ingest request p50 {statistics.median(lat):.1f} ms p90 {lat[int(len(lat)*0.9)]:.1f} ms")
t = time.time()
st = req("GET", "/api/v1/budgets/status")
print(f"{LABEL} status {1000*(time.time()-t):.0f} ms, {len(st)} bytes")
srv.send_signal(2); srv.wait()
shutil.rmtree(work, ignore_errors=True)

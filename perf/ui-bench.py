"""The web UI at 5000 nodes, in headless Chromium: how long the first picture takes, how fast a change
shows, how much the page holds, and what the summaries cost the agent.

A server agent with the UI on learns 5000 members (each with three services) from `loadgen --scenario
announce`, as perf/dns-bench.sh does. Then:
  1. /v1/internal/ui/nodes and /v1/internal/ui/services: response size and median time (20 reads each);
  2. the page: time from navigation to the node list drawn with all 5001 nodes, rows in the DOM, JS heap;
  3. a change: a TTL check on the agent's own node flips between passing and critical ten times, a
     second apart (past the page's 500 ms gap between reads); each time, from the PUT until the node's
     row shows the new status.
Usage: python3 perf/ui-bench.py [path/to/murmur] [path/to/loadgen]   (prints a Markdown table)
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "ui"))
from browser import browser, wait  # noqa: E402  (the UI test's Chromium settings and waits)

IP = "127.0.74.1"
BASE = f"http://{IP}:8500"
N = 5000


def get(path):
    t = time.perf_counter()
    with urllib.request.urlopen(BASE + path, timeout=30) as r:
        body = r.read()
    return body, time.perf_counter() - t


def put(path, body=None):
    req = urllib.request.Request(BASE + path, method="PUT",
                                 data=None if body is None else body.encode())
    urllib.request.urlopen(req, timeout=10).read()


def main():
    murmur = sys.argv[1] if len(sys.argv) > 1 else "target/release/murmur"
    loadgen = sys.argv[2] if len(sys.argv) > 2 else "target/release/loadgen"
    tmp = tempfile.mkdtemp(prefix="murmur-uibench-")
    procs = []
    d = None
    try:
        procs.append(subprocess.Popen(
            [murmur, "agent", "-server", "-bootstrap", "-ui", "-node=agent", f"-bind={IP}",
             f"-client={IP}", f"-data-dir={tmp}/data", "-log-level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait(lambda: get("/v1/status/leader")[0] != b'""', 30, "a leader")
        procs.append(subprocess.Popen(
            [loadgen, "--nodes", str(N), "--scenario", "announce", "--join", f"{IP}:8301",
             "--duration", "900", "--port", "17995"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait(lambda: len(json.loads(get("/v1/internal/ui/nodes")[0])) == N + 1, 300,
             f"{N + 1} nodes")
        rows = []
        for path in ["/v1/internal/ui/nodes", "/v1/internal/ui/services"]:
            times, size = [], 0
            for _ in range(20):
                body, took = get(path)
                times.append(took)
                size = len(body)
            rows.append((f"`{path}`", f"{size / 1e6:.2f} MB, median {statistics.median(times) * 1e3:.1f} ms"))

        put("/v1/agent/check/register", json.dumps({"Name": "bench", "CheckID": "bench", "TTL": "600s"}))
        put("/v1/agent/check/pass/bench")
        d = browser()
        t0 = time.perf_counter()
        d.get(BASE + "/ui/#/nodes")
        wait(lambda: d.execute_script(
            "const s = document.getElementById('summary'); return s && s.textContent;")
            .startswith(f"{N + 1} nodes"), 60, "the page's node list")
        first = time.perf_counter() - t0
        dom_rows = d.execute_script("return document.querySelectorAll('.row').length")
        heap = d.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : 0")
        rows.append(("page: navigation to 5001 nodes listed", f"{first * 1e3:.0f} ms"))
        rows.append(("page: rows in the DOM", f"{dom_rows} (of {N + 1})"))
        rows.append(("page: JS heap", f"{heap / 2**20:.1f} MiB"))

        d.execute_script("const f = document.getElementById('filter'); f.value = 'agent';"
                         "f.dispatchEvent(new Event('input'));")
        lags = []
        for i in range(10):
            status = "critical" if i % 2 == 0 else "passing"
            t = time.perf_counter()
            put(f"/v1/agent/check/{'fail' if status == 'critical' else 'pass'}/bench")
            wait(lambda: d.execute_script(
                "const r = document.querySelector('.row[data-node=\"agent\"]');"
                "return r && r.dataset.status;") == status, 30, f"agent {status}")
            lags.append(time.perf_counter() - t)
            # Past the page's 500 ms gap between reads, so each flip measures the path, not the gap.
            time.sleep(1.0)
        rows.append(("change: check flip to the row repainted (10 flips)",
                     f"median {statistics.median(lags) * 1e3:.0f} ms, max {max(lags) * 1e3:.0f} ms"))
        print(f"UI at {N + 1} nodes ({N} announced by loadgen, 3 services each), headless Chromium")
        print()
        print("| what | figure |")
        print("|---|---|")
        for what, fig in rows:
            print(f"| {what} | {fig} |")
    finally:
        if d is not None:
            d.quit()
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

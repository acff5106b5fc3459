#!/usr/bin/env python3
"""External services seen by every agent: one server and AGENTS client agents on loopback; NODES external
nodes are registered through one client (timing each `PUT /v1/catalog/register`, which answers once the
writer's own reads show it), then ROUNDS times one node's check flips between passing and critical and
the script times how long until every agent's `/v1/health/node/NODE` shows it (each agent watched by a
blocking query). Agents mirror the servers' table by deltas, so a flip carries one node, not the table.
Prints medians, p99 and max.

Usage: perf/external-mirror.py [path/to/murmur] [AGENTS] [NODES] [ROUNDS]
       (default target/release/murmur, 8, 500, 40)
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/murmur"
AGENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 8
NODES = int(sys.argv[3]) if len(sys.argv) > 3 else 500
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 40
SERVER = "127.0.64.1"
CLIENTS = [f"127.0.64.{i}" for i in range(2, 2 + AGENTS)]


def http(ip, method, path, body=None, timeout=15):
    req = urllib.request.Request(f"http://{ip}:8500{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers
    except Exception:
        return None, b"", {}


def wait(cond, limit):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def registration(i, status):
    return json.dumps({
        "Node": f"ext-{i}", "Address": f"10.64.{i // 250}.{i % 250 + 1}",
        "NodeMeta": {"external-node": "true"},
        "Service": {"ID": f"svc-{i}", "Service": f"svc-{i % 20}", "Port": 8000 + i % 100},
        "Check": {"CheckID": f"probe-{i}", "Name": "probe", "Status": status, "ServiceID": f"svc-{i}"},
    }).encode()


def check_status(ip, node, index):
    code, body, headers = http(ip, "GET", f"/v1/health/node/{node}?index={index}&wait=20s", timeout=30)
    if code != 200:
        return None, index
    checks = {c["CheckID"]: c["Status"] for c in json.loads(body)}
    return checks.get(node.replace("ext-", "probe-")), int(headers.get("X-Consul-Index", index))


def main():
    tmp = tempfile.mkdtemp(prefix="murmur-extmirror-")
    procs = []
    try:
        for name, ip, extra in [("s", SERVER, ["-server", "-bootstrap"])] + [
                (f"c{i}", ip, [f"-retry-join={SERVER}"]) for i, ip in enumerate(CLIENTS)]:
            log = open(os.path.join(tmp, f"{name}.log"), "w")
            procs.append(subprocess.Popen(
                [BIN, "agent", f"-node={name}", f"-bind={ip}", f"-client={ip}",
                 f"-data-dir={os.path.join(tmp, name)}"] + extra, stdout=log, stderr=log))
        assert wait(lambda: all(http(ip, "GET", "/v1/status/leader")[1] not in (b"", b'""')
                                for ip in CLIENTS), 60), "no leader"

        writer = CLIENTS[0]
        put_ms = []
        for i in range(NODES):
            t0 = time.monotonic()
            code, body, _ = http(writer, "PUT", "/v1/catalog/register", registration(i, "passing"))
            put_ms.append((time.monotonic() - t0) * 1000)
            assert code == 200, body
        assert wait(lambda: all(
            len(json.loads(http(ip, "GET", "/v1/catalog/nodes")[1] or b"[]")) == NODES + 1 + AGENTS
            for ip in CLIENTS), 60), "not every agent lists every node"

        seen_ms = []
        status_of = {}
        for r in range(ROUNDS):
            node = r * 7 % NODES
            want = "critical" if status_of.get(node, "passing") == "passing" else "passing"
            status_of[node] = want
            ready = threading.Barrier(len(CLIENTS) + 1)
            done = {}
            start = {}

            def watch(ip):
                status, index = check_status(ip, f"ext-{node}", 0)
                ready.wait()
                end = time.monotonic() + 20
                while status != want and time.monotonic() < end:
                    status, index = check_status(ip, f"ext-{node}", index)
                done[ip] = time.monotonic()

            threads = [threading.Thread(target=watch, args=(ip,)) for ip in CLIENTS]
            for t in threads:
                t.start()
            ready.wait()
            start["t"] = time.monotonic()
            code, body, _ = http(CLIENTS[-1], "PUT", "/v1/catalog/register", registration(node, want))
            assert code == 200, body
            for t in threads:
                t.join()
            seen_ms.append((max(done.values()) - start["t"]) * 1000)

        print(f"{AGENTS} client agents + 1 server, {NODES} external nodes, {ROUNDS} check flips")
        print(f"register (answered once the writer's agent shows it): median {statistics.median(put_ms):.1f} ms,"
              f" p99 {pct(put_ms, 0.99):.1f} ms, max {max(put_ms):.1f} ms")
        print(f"check flip seen by every agent: median {statistics.median(seen_ms):.1f} ms,"
              f" p99 {pct(seen_ms, 0.99):.1f} ms, max {max(seen_ms):.1f} ms")
        print("sorted:", " ".join(f"{x:.0f}" for x in sorted(seen_ms)))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if os.environ.get("EXTMIRROR_KEEP"):
            print("logs kept in", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

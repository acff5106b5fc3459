#!/usr/bin/env python3
"""Leader failover of murmur's servers: 3 servers and 1 client on loopback; RUNS times, `kill -9` of
the leader, then the time until (a) a write through the client is accepted and (b) the client names a
new leader. The killed server is restarted with its data dir before the next run. At the end every
acknowledged write is read back with ?consistent. Prints medians, p99 and max.

Usage: perf/failover.py [path/to/murmur] [RUNS]   (default target/release/murmur, 20)
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/murmur"
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
IPS = [f"127.0.70.{i}" for i in range(1, 5)]


def http(ip, method, path, body=None, timeout=15):
    req = urllib.request.Request(f"http://{ip}:8500{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:
        return None, b""


def leader(ip):
    code, body = http(ip, "GET", "/v1/status/leader", timeout=3)
    return json.loads(body) if code == 200 else ""


def voters(ip):
    code, body = http(ip, "GET", "/v1/operator/raft/configuration?stale", timeout=3)
    if code != 200:
        return 0
    return sum(1 for s in json.loads(body)["Servers"] if s["Voter"])


def wait(cond, limit):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def main():
    tmp = tempfile.mkdtemp(prefix="murmur-failover-")
    procs = {}

    def start(i):
        ip = IPS[i]
        args = [BIN, "agent", f"-node=f{i}", f"-bind={ip}", f"-client={ip}",
                f"-data-dir={tmp}/f{i}", f"-retry-join={IPS[0]}"]
        if i < 3:
            args += ["-server", "-bootstrap-expect=3"]
        log = open(f"{tmp}/f{i}.log", "ab")
        procs[i] = subprocess.Popen(args, stdout=log, stderr=log)

    try:
        for i in range(4):
            start(i)
        client = IPS[3]
        assert wait(lambda: leader(client) != "", 60), "no leader"
        acked = []
        n = 0
        to_write, to_leader = [], []
        for run in range(RUNS):
            # Some writes before the crash, acknowledged ones remembered.
            for _ in range(20):
                n += 1
                if http(client, "PUT", f"/v1/kv/f/{n}", str(n).encode())[1] == b"true":
                    acked.append(n)
            old = leader(client)
            victim = next(i for i in range(3) if old.startswith(IPS[i] + ":"))
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            t0 = time.monotonic()
            while True:
                assert time.monotonic() - t0 < 60, "no write accepted within 60 s of the crash"
                n += 1
                code, body = http(client, "PUT", f"/v1/kv/f/{n}", str(n).encode())
                if body == b"true":
                    acked.append(n)
                    to_write.append(time.monotonic() - t0)
                    break
            assert wait(lambda: leader(client) not in ("", old), 30)
            to_leader.append(time.monotonic() - t0)
            start(victim)
            # Back in the configuration and caught up before the next crash. Autopilot may have
            # removed the victim while gossip counted it failed: then it votes again only after the
            # stabilization time, and the next crash must wait for that.
            assert wait(lambda: http(IPS[victim], "GET", f"/v1/kv/f/{n}?stale", timeout=3)[0] == 200, 60)
            # Every server's own view: a restarted server answers /v1/status/peers from the
            # configuration it had before autopilot removed it.
            assert wait(lambda: all(voters(IPS[i]) == 3 for i in range(3)), 60), \
                "the victim did not vote again"
        lost = [k for k in acked
                if http(client, "GET", f"/v1/kv/f/{k}?consistent")[0] != 200]

        def summary(name, xs):
            xs = sorted(xs)
            p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
            print(f"{name}: median {statistics.median(xs):.2f} s, p99 {p99:.2f} s, "
                  f"max {xs[-1]:.2f} s over {len(xs)} runs")
            print("  sorted: " + " ".join(f"{x:.2f}" for x in xs))

        summary("kill -9 leader -> next write accepted", to_write)
        summary("kill -9 leader -> new leader named by the client", to_leader)
        print(f"acknowledged writes: {len(acked)}, lost: {len(lost)}")
        return 1 if lost else 0
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        if os.environ.get("FAILOVER_KEEP"):
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

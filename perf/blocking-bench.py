#!/usr/bin/env python3
"""Blocking queries at scale, against a real agent on loopback.

W watchers (default 10000) hold `GET /v1/health/service/svc-K?index=..&wait=300s` over S services
(default 100, so W/S watchers per service). Each round changes one service (a new tag) and measures, for
every watcher of that service, the time from the registration's `PUT` returning to the watcher's answer;
watchers of other services must not answer (Consul wakes every watcher of the table, hashicorp/consul
#3890). Also measured: the agent's CPU while it holds the watchers idle, and per round.

With --kind kv the agent is a one-server cluster (-server -bootstrap) and the watchers hold
`GET /v1/kv/watch/kK?index=..&wait=300s` over S keys; each round writes one key (a `PUT` committed through
the replicated log) and times its watchers the same way.

Usage: perf/blocking-bench.py [--kind health|kv] [--watchers 10000] [--services 100] [--rounds 20]
       (MURMUR_BIN=path picks the binary; default ./target/release/murmur)
Prints one JSON object; perf/RESULTS.md records the figures with the command.
"""
import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

IP = "127.0.70.1"
PORT = 8500


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def http(method, path, body=None):
    req = urllib.request.Request(f"http://{IP}:{PORT}{path}", data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers, r.read()


KIND = "health"


def register(k, tag):
    if KIND == "kv":
        status, _, body = http("PUT", f"/v1/kv/watch/k{k}", tag.encode())
        assert status == 200 and body == b"true", body
        return
    body = json.dumps({"Name": f"svc-{k}", "ID": f"svc-{k}", "Port": 1000 + k, "Tags": [tag]}).encode()
    status, _, _ = http("PUT", "/v1/agent/service/register", body)
    assert status == 200


def watched(k):
    return f"/v1/kv/watch/k{k}" if KIND == "kv" else f"/v1/health/service/svc-{k}"


def index_of(k):
    _, headers, _ = http("GET", watched(k))
    return int(headers["X-Consul-Index"])


async def watch(k, index, results, key):
    reader, writer = await asyncio.open_connection(IP, PORT)
    path = f"{watched(k)}?index={index}&wait=300s"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {IP}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    await reader.read()  # the whole answer: the agent closes after it
    results[key] = time.monotonic()
    writer.close()


async def main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binary = os.environ.get("MURMUR_BIN", "./target/release/murmur")
    work = tempfile.mkdtemp(prefix="murmur-blocking-")
    conf = os.path.join(work, "limits.json")
    with open(conf, "w") as f:
        json.dump({"limits": {"http_max_conns_per_client": args.watchers * 2}}, f)
    server = ["-server", "-bootstrap"] if KIND == "kv" else []
    agent = subprocess.Popen(
        [binary, "agent", "-node", "blocking-bench", "-bind", IP, "-client", IP,
         "-data-dir", os.path.join(work, "data"), "-config-file", conf, "-log-level", "warn"] + server,
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "agent.log"), "w"))
    try:
        for _ in range(200):
            try:
                http("GET", "/v1/agent/self")
                break
            except OSError:
                await asyncio.sleep(0.05)
        for _ in range(400):
            if KIND != "kv" or http("GET", "/v1/status/leader")[2] not in (b'""', b""):
                break
            await asyncio.sleep(0.05)
        for k in range(args.services):
            register(k, "v0")
        for _ in range(400):
            if KIND == "kv":
                break
            _, _, body = http("GET", "/v1/catalog/services")
            if len(json.loads(body)) >= args.services:
                break
            await asyncio.sleep(0.05)
        indexes = {k: index_of(k) for k in range(args.services)}
        results = {}
        tasks = {}
        for w in range(args.watchers):
            k = w % args.services
            tasks[w] = asyncio.create_task(watch(k, indexes[k], results, w))
            if w % 500 == 499:
                await asyncio.sleep(0.05)
        await asyncio.sleep(2)
        assert not results, f"{len(results)} watchers answered before any change"
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        await asyncio.sleep(5)
        idle_cpu = (cpu_seconds(agent.pid) - c0) / (time.monotonic() - t0)

        latencies, spurious, per_round_cpu = [], 0, []
        for r in range(args.rounds):
            k = (r * 7) % args.services
            watchers = [w for w in range(args.watchers) if w % args.services == k]
            c0 = cpu_seconds(agent.pid)
            register(k, f"v{r + 1}")
            changed = time.monotonic()
            await asyncio.wait([tasks[w] for w in watchers], timeout=10)
            per_round_cpu.append(cpu_seconds(agent.pid) - c0)
            woke = [results.pop(w) - changed for w in watchers if w in results]
            assert len(woke) == len(watchers), f"round {r}: {len(woke)} of {len(watchers)} woke"
            latencies.extend(woke)
            spurious += len(results)
            results.clear()
            index = index_of(k)
            for w in watchers:
                tasks[w] = asyncio.create_task(watch(k, index, results, w))
            await asyncio.sleep(0.5)
            spurious += len(results)
            results.clear()
        latencies.sort()
        q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
        out = {
            "kind": KIND, "watchers": args.watchers, "services": args.services, "rounds": args.rounds,
            "woken": len(latencies), "spurious_wakeups": spurious,
            "wake_ms": {"p50": round(q(0.5), 2), "p99": round(q(0.99), 2), "max": round(latencies[-1] * 1000, 2),
                        "mean": round(statistics.mean(latencies) * 1000, 2)},
            "agent_cpu_idle_cores": round(idle_cpu, 4),
            "agent_cpu_per_round_s": round(statistics.median(per_round_cpu), 4),
        }
        print(json.dumps(out))
        for t in tasks.values():
            t.cancel()
    finally:
        agent.kill()
        agent.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=["health", "kv"], default="health")
    p.add_argument("--watchers", type=int, default=10000)
    p.add_argument("--services", type=int, default=100)
    p.add_argument("--rounds", type=int, default=20)
    a = p.parse_args()
    KIND = a.kind
    asyncio.run(main(a))

#!/usr/bin/env python3
"""What `?dc=` and cross-datacenter DNS cost: two datacenters on loopback (a server and a client
each, the servers joined over the WAN), then from dc1's client N sequential requests of each kind on
one kept-alive HTTP connection (or one UDP socket), timed one by one:

  local     GET /v1/catalog/nodes              answered by the client itself
  dc2       GET /v1/catalog/nodes?dc=dc2       client -> dc1 server -> dc2 server and back
  kv        GET /v1/kv/k                       client -> dc1 server (the store is on the servers)
  kv-dc2    GET /v1/kv/k?dc=dc2                client -> dc1 server -> dc2 server
  dns       A s1.node.consul                   answered by dc1's server itself
  dns-dc2   A c2.node.dc2.consul               answered by dc2's server (node_ttl 0: never cached)
  dns-dc2-cached  the same asked of dc1's client, whose dns_config.node_ttl is 30s (dc2 builds the
                  answer with the asking agent's settings): served from its cache after the first query

Prints p50, p99 and the rate per kind. Usage: perf/datacenters.py [path/to/murmur] [N] (default
target/release/murmur, 2000).
"""
import http.client
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/murmur"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
S1, S2, C1, C2 = (f"127.0.69.{i}" for i in range(1, 5))


def wait(cond, limit):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if cond():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def get(ip, path):
    c = http.client.HTTPConnection(ip, 8500, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


def dns_query(name, qid):
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return header + labels + struct.pack(">HH", 1, 1)


def time_http(ip, path):
    c = http.client.HTTPConnection(ip, 8500, timeout=30)
    out = []
    for _ in range(N):
        t = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        out.append(time.perf_counter() - t)
        assert r.status == 200, (path, r.status)
    return out


def time_dns(ip, name):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    out = []
    for i in range(N):
        q = dns_query(name, i & 0xFFFF)
        t = time.perf_counter()
        s.sendto(q, (ip, 8600))
        resp, _ = s.recvfrom(4096)
        out.append(time.perf_counter() - t)
        assert resp[:2] == q[:2] and resp[3] & 0x0F == 0, (name, resp[:4])
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="murmur-dcs-")
    cfg = os.path.join(tmp, "c1.json")
    with open(cfg, "w") as f:
        json.dump({"dns_config": {"node_ttl": "30s"}}, f)
    procs = []

    def start(name, ip, dc, *extra):
        args = [BIN, "agent", f"-node={name}", f"-bind={ip}", f"-client={ip}",
                f"-datacenter={dc}", f"-data-dir={tmp}/{name}", *extra]
        log = open(os.path.join(tmp, f"{name}.log"), "w")
        procs.append(subprocess.Popen(args, stdout=log, stderr=log))

    try:
        start("s1", S1, "dc1", "-server", "-bootstrap-expect=1")
        start("s2", S2, "dc2", "-server", "-bootstrap-expect=1")
        start("c1", C1, "dc1", f"-retry-join={S1}", "-config-file", cfg)
        start("c2", C2, "dc2", f"-retry-join={S2}")
        assert wait(lambda: get(S1, "/v1/status/leader")[1] not in (b'""', b""), 30)
        assert wait(lambda: get(S2, "/v1/status/leader")[1] not in (b'""', b""), 30)
        c = http.client.HTTPConnection(S1, 8500, timeout=10)
        c.request("PUT", f"/v1/agent/join/{S2}?wan=1")
        assert c.getresponse().status == 200
        assert wait(lambda: get(C1, "/v1/catalog/nodes?dc=dc2")[0] == 200
                    and len(json.loads(get(C1, "/v1/catalog/nodes?dc=dc2")[1])) == 2, 30)
        for ip in (C1, C2):
            c = http.client.HTTPConnection(ip, 8500, timeout=10)
            c.request("PUT", "/v1/kv/k", body=b"v")
            assert c.getresponse().status == 200
        kinds = [
            ("local", lambda: time_http(C1, "/v1/catalog/nodes")),
            ("dc2", lambda: time_http(C1, "/v1/catalog/nodes?dc=dc2")),
            ("kv", lambda: time_http(C1, "/v1/kv/k")),
            ("kv-dc2", lambda: time_http(C1, "/v1/kv/k?dc=dc2")),
            ("dns", lambda: time_dns(S1, "s1.node.consul")),
            ("dns-dc2", lambda: time_dns(S1, "c2.node.dc2.consul")),
            ("dns-dc2-cached", lambda: time_dns(C1, "c2.node.dc2.consul")),
        ]
        print(f"{N} sequential requests per kind, one connection (HTTP) or socket (DNS)")
        print(f"{'kind':<16} {'p50 us':>8} {'p99 us':>8} {'req/s':>8}")
        for kind, run in kinds:
            t = sorted(run())
            p50 = statistics.median(t) * 1e6
            p99 = t[int(len(t) * 0.99) - 1] * 1e6
            print(f"{kind:<16} {p50:8.0f} {p99:8.0f} {len(t) / sum(t):8.0f}")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What a thousand health checks cost one agent: N checks (default 1000; half HTTP, half TCP) at one
interval (default 10s, Consul's usual) against endpoints on loopback; measures the agent's CPU over a
window once every check has run, and checks that every one is passing.

Usage: perf/checks-bench.py [--checks 1000] [--interval 10] [--window 60]
       (MURMUR_BIN=path picks the binary; default ./target/release/murmur)
Prints one JSON object; perf/RESULTS.md records the figures with the command.
"""
import argparse
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

IP = "127.0.71.1"
TARGET = "127.0.71.9"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_):
        pass


def tcp_listener(stop):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((TARGET, 0))
    s.listen(1024)
    s.settimeout(0.5)
    port = s.getsockname()[1]

    def run():
        while not stop.is_set():
            try:
                c, _ = s.accept()
                c.close()
            except OSError:
                pass
        s.close()

    threading.Thread(target=run, daemon=True).start()
    return port


def main(args):
    binary = os.environ.get("MURMUR_BIN", "./target/release/murmur")
    work = tempfile.mkdtemp(prefix="murmur-checks-")
    stop = threading.Event()
    web = http.server.ThreadingHTTPServer((TARGET, 0), Ok)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    tcp_port = tcp_listener(stop)
    checks = []
    for k in range(args.checks):
        c = {"id": f"c{k}", "name": f"c{k}", "interval": f"{args.interval}s"}
        if k % 2 == 0:
            c["http"] = f"http://{TARGET}:{web.server_port}/health"
        else:
            c["tcp"] = f"{TARGET}:{tcp_port}"
        checks.append(c)
    conf = os.path.join(work, "checks.json")
    with open(conf, "w") as f:
        json.dump({"checks": checks}, f)
    agent = subprocess.Popen(
        [binary, "agent", "-node", "checks-bench", "-bind", IP, "-client", IP,
         "-data-dir", os.path.join(work, "data"), "-config-file", conf, "-log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "agent.log"), "w"))
    try:
        def statuses():
            with urllib.request.urlopen(f"http://{IP}:8500/v1/agent/checks", timeout=10) as r:
                return [c["Status"] for c in json.load(r).values()]
        deadline = time.monotonic() + args.interval * 3 + 30
        while time.monotonic() < deadline:
            try:
                s = statuses()
                if len(s) == args.checks and all(x == "passing" for x in s):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        s = statuses()
        passing = sum(1 for x in s if x == "passing")
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(args.window)
        used = cpu_seconds(agent.pid) - c0
        elapsed = time.monotonic() - t0
        runs = args.checks * elapsed / args.interval
        print(json.dumps({
            "checks": args.checks, "interval_s": args.interval, "window_s": round(elapsed, 1),
            "passing": passing,
            "agent_cpu_cores": round(used / elapsed, 4),
            "cpu_us_per_check_run": round(used / runs * 1e6, 1),
        }))
    finally:
        agent.kill()
        agent.wait()
        stop.set()
        web.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checks", type=int, default=1000)
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--window", type=int, default=60)
    main(p.parse_args())

#!/usr/bin/env python3
"""Prints a markdown table of every loadgen JSON in perf/runs (used to write perf/RESULTS.md)."""
import glob, json, os, sys

def f(v, unit="s"):
    return "-" if v is None else f"{v:.2f}{unit}"

rows = []
for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "runs", "*.json"))):
    d = json.load(open(path))
    r, res = d["results"], d["resources"]
    boot = r.get("bootstrap", r)
    extra = ""
    if d["scenario"] == "broadcast":
        extra = f"reach 50/99/100%: {f(r['reach_50pct_s'])} / {f(r['reach_99pct_s'])} / {f(r['reach_100pct_s'])}"
    elif d["scenario"] == "crash":
        many = f"{r['crashed']} crashes: p50 " if r.get("crashed", 1) > 1 else ""
        p99 = f", p99 {f(r['all_know_p99_s'])}" if many and "all_know_p99_s" in r else ""
        extra = (f"{many}first {f(r['first_detection_p50_s'])}, all live know {f(r['all_know_p50_s'])}{p99} "
                 f"(max {f(r['all_know_max_s'])}), false positives {r['false_positives']}")
    lag = res.get("timer_lag_p99_ms")
    start = d.get("start", "join")
    if start == "converged":
        boot_cell = "converged start"
    else:
        rate = d.get("join_rate")
        boot_cell = (f"{f(boot.get('after_last_join_99pct_s'))} / {f(boot.get('after_last_join_100pct_s'))}"
                     + ("" if rate is None else f" ({rate:g} joins/s)"))
    scen = d["scenario"]
    mult = d.get("suspicion_mult")
    if mult is not None and mult != {"lan": 4, "wan": 6, "local": 3}.get(d.get("profile", "lan")):
        scen += f" (suspicion_mult {mult})"
    # Runs from before ring monitoring carry no such key: they ran memberlist's rules.
    if d.get("ring_monitors") is True:
        scen += " (ring monitors)"
    elif d.get("ring_monitors") is False:
        scen += " (memberlist's rules)"
    rows.append((d["nodes"], d["net"], scen, boot_cell,
                 extra, f"{res['wall_s']:.0f}s", f"{res['cpu_s']:.0f}s",
                 f"{res['peak_rss_kib'] / 1024:.0f} MiB ({res['rss_per_node_kib']:.0f} KiB/node)",
                 f"{res['packets_per_node_per_s']:.1f} / {res['bytes_per_node_per_s'] / 1024:.1f} KiB",
                 "-" if lag is None else f"{lag:.1f} ms"))
rows.sort(key=lambda r: (r[1], r[0], r[2]))
print("| N | net | scenario | all see all 99% / 100% after last join | event figures | wall | CPU | peak RSS | pkt/s / bytes/s per node | timer lag p99 |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(str(x) for x in r) + " |")

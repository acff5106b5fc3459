#!/usr/bin/env bash
# murmur's replicated KV store against etcd, side by side in one run: three servers of each on loopback,
# the same load client (loadgen's kvload) with the same connections, keys, values and timing.
#
# For each of ROUNDS rounds (alternating which store goes first): start 3 murmur servers
# (-bootstrap-expect 3, data dirs on the same disk), run kvload writes then linearizable reads; stop
# them; the same for 3 etcd members. Prints one JSON line per run and the medians; perf/RESULTS.md
# records them with the machine.
#
# Usage: perf/kv-bench.sh [ROUNDS=3] [CLIENTS=64] [DURATION=10]
# Installs Debian's etcd-server (3.4) when etcd is missing. Traffic stays on 127.0.80.x / 127.0.81.x.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
CLIENTS=${2:-64}
DURATION=${3:-10}
VALUE=256

if ! command -v etcd >/dev/null; then
    (apt-get install -y etcd-server || (apt-get update -qq && apt-get install -y etcd-server)) >/dev/null
fi
cargo build --release -q --bin murmur -p murmur
cargo build --release -q --bin kvload -p loadgen
MURMUR=target/release/murmur
KVLOAD=target/release/kvload
TMP=$(mktemp -d /tmp/kv-bench.XXXXXX)
OUT=$TMP/results.jsonl
PIDS=()

stop_all() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap 'stop_all; rm -rf "$TMP"' EXIT

# Waits (at most 60 s) until CMD succeeds.
await() {
    for _ in $(seq 600); do
        if eval "$1" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "kv-bench: gave up waiting for: $1" >&2
    return 1
}

start_murmur() {
    local dir=$TMP/murmur-$1
    rm -rf "$dir"
    for i in 1 2 3; do
        local ip=127.0.80.$i
        "$MURMUR" agent -server -bootstrap-expect=3 -node="m$i" -bind="$ip" -client="$ip" \
            -data-dir="$dir/m$i" -retry-join=127.0.80.1 -log-level=warn >"$dir-m$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 1 2 3; do
        await "curl -sf http://127.0.80.$i:8500/v1/status/leader | grep -q 8300"
    done
    await "curl -sf -X PUT -d x http://127.0.80.1:8500/v1/kv/bench/ready | grep -q true"
}

start_etcd() {
    local dir=$TMP/etcd-$1 cluster=""
    rm -rf "$dir"
    for i in 1 2 3; do cluster+="e$i=http://127.0.81.$i:2380,"; done
    for i in 1 2 3; do
        local ip=127.0.81.$i
        etcd --name "e$i" --data-dir "$dir/e$i" \
            --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
            --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
            --initial-cluster "${cluster%,}" --initial-cluster-state new \
            --initial-cluster-token kv-bench --log-level warn >"$dir-e$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 1 2 3; do
        await "curl -sf http://127.0.81.$i:2379/health | grep -q true"
    done
}

load() {
    local target=$1 endpoints=$2 mode=$3
    "$KVLOAD" --target "$target" --endpoints "$endpoints" --mode "$mode" --clients "$CLIENTS" \
        --duration "$DURATION" --value-size "$VALUE" | tee -a "$OUT"
}

bench() {
    local store=$1 round=$2
    if [ "$store" = murmur ]; then
        start_murmur "$round"
        local ep=127.0.80.1:8500,127.0.80.2:8500,127.0.80.3:8500
    else
        start_etcd "$round"
        local ep=127.0.81.1:2379,127.0.81.2:2379,127.0.81.3:2379
    fi
    load "$store" "$ep" write
    load "$store" "$ep" read
    stop_all
}

echo "# $(nproc) cores, $(uname -r), etcd $(etcd --version | head -1 | awk '{print $3}'), murmur $(git rev-parse --short HEAD)"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then bench murmur "$r"; bench etcd "$r"; else bench etcd "$r"; bench murmur "$r"; fi
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for t in ("murmur", "etcd"):
    for m in ("write", "read"):
        rs = [r for r in runs if r["target"] == t and r["mode"] == m]
        med[t, m] = {k: statistics.median(r[k] for r in rs) for k in ("ops_per_s", "p50_ms", "p99_ms")}
        med[t, m]["errors"] = sum(r["errors"] for r in rs)
        print(json.dumps({"median": t, "mode": m, "runs": len(rs), **med[t, m]}))
for m in ("write", "read"):
    a, b = med["murmur", m], med["etcd", m]
    print(json.dumps({"ratio": m, "ops_per_s murmur/etcd": round(a["ops_per_s"] / b["ops_per_s"], 2),
                      "p99 murmur/etcd": round(a["p99_ms"] / b["p99_ms"], 2)}))
EOF

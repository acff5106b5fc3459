#!/usr/bin/env bash
# murmur DNS vs NSD, side by side on this machine: queries answered per server CPU-second.
# A murmur server agent learns 5000 members over real gossip from `loadgen --scenario announce` (one socket
# that announces them and answers the agent's probes for all of them, so they stay alive without 5000 full
# gossip nodes competing for the same two cores); NSD serves the same names from a static zone; dnsperf (EDNS) loads each in turn with the server
# pinned to CPU 0 and dnsperf to CPU 1. Results are appended to perf/RESULTS.md.
# Every announced member also publishes a catalog record of three services (member i runs web-K, api-K and
# metrics-K, K = i/3: three instances per name), and a share of the queries asks for them (SRV, and A).
# Every answer must be NOERROR and the agent must know all members first, or the script aborts: an NXDOMAIN
# or SERVFAIL is cheaper to send than an answer and would count as speed. Each round runs both servers on
# three query sets: the service mix, node lookups alone (the figure service lookups are held to), and
# service lookups alone, so that every comparison comes from one sitting on the same load. Five alternating rounds; the table shows
# each round, then the medians, spreads and the ratios.
# murmur answers as Consul does by default (enable_additional_node_meta_txt): every node A answer and every
# SRV answer also carries the node's meta as TXT records in the additional section, which NSD's zone has no
# counterpart for. A second agent in the same cluster runs with that option off and answers exactly what
# NSD answers: that row is the like-for-like one.
# Usage: perf/dns-bench.sh [seconds per run, default 20]   (MURMUR_BIN=path benches another build;
# FLIPS=F has F members a second flip a check, so murmur's answers about their services change)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
rounds=5
n=5000
murmur_bin=${MURMUR_BIN:-./target/release/murmur}
# Members whose check flips each second (FLIPS=10: the catalog scenario's rate); NSD's zone is static.
flips=${FLIPS:-0}
for p in dnsperf nsd; do
  command -v "$p" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf nsd; break; }
done
systemctl stop nsd 2>/dev/null || true
cargo build --release --workspace
work=$(mktemp -d /tmp/murmur-dnsbench.XXXX)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

# 1. murmur agent + 5000 gossiping members.
taskset -c 0 "$murmur_bin" agent -server -node agent -bind 127.0.20.1 -client 127.0.20.1 \
  -data-dir "$work/data" -log-level warn > "$work/agent.log" 2>&1 &
sleep 1
taskset -c 1 ./target/release/loadgen --nodes $n --scenario announce --join 127.0.20.1:8301 \
  --duration 3600 --port 17990 --flip-rate "$flips" > "$work/loadgen.log" 2>&1 &
names=$((3 * ((n + 2) / 3)))
# The second agent joins once the first knows everyone: loadgen's announced members do not gossip, so
# it learns them from its join's full-state exchange with the first agent.
for agent in 127.0.20.1 127.0.20.3; do
  if [ $agent = 127.0.20.3 ]; then
    echo 'dns_config { enable_additional_node_meta_txt = false }' > "$work/lean.hcl"
    taskset -c 0 "$murmur_bin" agent -node agent-lean -bind 127.0.20.3 -client 127.0.20.3 -join 127.0.20.1 \
      -data-dir "$work/data-lean" -config-file "$work/lean.hcl" -log-level warn > "$work/agent-lean.log" 2>&1 &
  fi
  for _ in $(seq 1 300); do
    c=$(curl -s http://$agent:8500/v1/agent/members | grep -o '"Status":1' | wc -l || true)
    [ "$c" -ge $((n + 1)) ] && break
    sleep 1
  done
  echo "agent $agent knows $c alive members"
  if [ "$c" -lt $((n + 1)) ]; then
    echo "aborting: agent $agent knows $c alive members, not $((n + 1)); see $work/agent*.log and $work/loadgen.log" >&2
    exit 1
  fi
  for _ in $(seq 1 60); do
    s=$(curl -s http://$agent:8500/v1/catalog/services | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [ "$s" -ge "$names" ] && break
    sleep 1
  done
  echo "agent $agent's catalog holds $s service names"
  if [ "$s" -lt "$names" ]; then
    echo "aborting: agent $agent's catalog holds $s service names, not $names" >&2
    exit 1
  fi
done

# 2. Queries: 60% node A, 20% SRV and 10% A of a catalog service (three instances each), 10% SRV of the
# consul service; and node A alone.
python3 - "$work/queries" $n <<'PY'
import random, sys
random.seed(7)
n = int(sys.argv[2])
kinds = ["web", "api", "metrics"]
with open(sys.argv[1] + "-node", "w") as f:
    for _ in range(100000):
        f.write(f"n{random.randrange(n)}.node.consul A\n")
# Service lookups alone, as in the mix: two SRV for one A.
with open(sys.argv[1] + "-svc", "w") as f:
    for _ in range(100000):
        svc = f"{random.choice(kinds)}-{random.randrange((n + 2) // 3)}.service.consul"
        f.write(f"{svc} {'A' if random.random() < 1 / 3 else 'SRV'}\n")
with open(sys.argv[1], "w") as f:
    for _ in range(100000):
        r = random.random()
        svc = f"{random.choice(kinds)}-{random.randrange((n + 2) // 3)}.service.consul"
        if r < 0.6:
            f.write(f"n{random.randrange(n)}.node.consul A\n")
        elif r < 0.8:
            f.write(f"{svc} SRV\n")
        elif r < 0.9:
            f.write(f"{svc} A\n")
        else:
            f.write("consul.service.consul SRV\n")
PY

# 3. NSD with the same names as a static zone.
mkdir -p "$work/nsd"
{
  echo '$TTL 0'
  echo '@ IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0'
  echo '@ IN NS ns.consul.'
  echo 'ns IN A 127.0.20.1'
  echo 'agent.node.dc1 IN A 127.0.20.1'
  echo 'consul.service IN SRV 1 1 8300 agent.node.dc1.consul.'
  for i in $(seq 0 $((n - 1))); do
    echo "n$i.node IN A 127.1.0.1"
    echo "n$i.node.dc1 IN A 127.1.0.1"
  done
  # The catalog's services, as murmur answers them: three SRV (targets in the additional section) and
  # one A (every instance's node has the same address).
  for k in $(seq 0 $(((n + 2) / 3 - 1))); do
    for svc in web:80 api:8080 metrics:9100; do
      name=${svc%%:*}-$k port=${svc##*:}
      for i in $((3 * k)) $((3 * k + 1)) $((3 * k + 2)); do
        [ $i -lt $n ] && echo "$name.service IN SRV 1 1 $port n$i.node.dc1.consul."
      done
      echo "$name.service IN A 127.1.0.1"
    done
  done
} > "$work/nsd/consul.zone"
cat > "$work/nsd/nsd.conf" <<CONF
server:
  ip-address: 127.0.20.2@8600
  server-count: 1
  # Response rate limiting would throttle a benchmark to a few hundred answers per second.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  username: ""
  zonesdir: "$work/nsd"
  database: ""
  pidfile: "$work/nsd/nsd.pid"
  xfrdfile: "$work/nsd/xfrd.state"
  zonelistfile: "$work/nsd/zone.list"
  logfile: "$work/nsd/nsd.log"
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: consul
  zonefile: consul.zone
CONF
taskset -c 0 nsd -d -c "$work/nsd/nsd.conf" &
sleep 2

# CPU ticks of every process whose command line matches (NSD serves from a forked grandchild).
cpu_ticks() {
  local total=0 p
  for p in $(pgrep -f "$1"); do
    # Fields after "pid (comm) ": comm may hold spaces ("nsd: main"), so cut at the last ')'.
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
  done
  echo $total
}
tck=$(getconf CLK_TCK)
# dnsperf's "Response codes:" line, e.g. "NOERROR 1000 (100.00%)"; anything but NOERROR aborts the run.
check_rcodes() { # name dnsperf-output
  local codes
  codes=$(echo "$2" | awk -F'Response codes: *' '/Response codes:/ {print $2}')
  if [ -z "$codes" ] || echo "$codes" | grep -Eq '(FORMERR|SERVFAIL|NXDOMAIN|NOTIMP|REFUSED|BADVERS|YXDOMAIN)'; then
    echo "aborting: $1 answered with response codes: ${codes:-none}" >&2
    exit 1
  fi
}
# A murmur agent's DNS counters: "queries cache_hits".
dns_counts() { # agent-address
  curl -s "http://$1:8500/v1/agent/self" |
    python3 -c 'import json,sys; d=json.load(sys.stdin)["Stats"]["dns"]; print(d["queries"], d["cache_hits"])'
}
bench() { # name process-pattern server query-file; prints a table row and leaves the rate in $per
  local name=$1 pid=$2 server=$3 queries=$4
  local t0 t1 out q qps lat cpu q0 h0 q1 h1 hits=-
  [ "$server" != 127.0.20.2 ] && read -r q0 h0 < <(dns_counts "$server")
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 dnsperf -s "$server" -p 8600 -d "$queries" -l "$secs" -c 8 -e -q 200 2>&1)
  t1=$(cpu_ticks "$pid")
  if [ "$server" != 127.0.20.2 ]; then
    read -r q1 h1 < <(dns_counts "$server")
    hits="$(echo "scale=1; 100 * ($h1 - $h0) / ($q1 - $q0)" | bc)%"
  fi
  check_rcodes "$name" "$out"
  q=$(echo "$out" | awk '/Queries completed/ {print $3}')
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  lat=$(echo "$out" | awk '/Average Latency/ {print $4, $5, $6, $7, $8}')
  cpu=$(echo "scale=3; ($t1 - $t0) / $tck" | bc)
  per=$(echo "scale=0; $q / $cpu" | bc 2>/dev/null || echo 0)
  echo "| $name | $qps | $cpu | $per | $hits | $lat |"
}
# Median, min and max of the numbers given.
stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "median %d (min %d, max %d)", v[int((NR+1)/2)], v[1], v[NR]}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
{
  echo
  echo "### DNS: murmur vs NSD, $(date -u +%F), $(nproc) cores, $n members and $names services, $flips check flips/s (FLIPS=$flips perf/dns-bench.sh $secs, $murmur_bin)"
  echo
  echo "Queries: the service mix (60% node A, 20% service SRV, 10% service A, three instances per service,"
  echo "10% consul SRV), node A alone, and service lookups alone (two SRV for one A). \"murmur\" answers as Consul does by default, with node meta TXT"
  echo "records in the additional section; \"murmur without meta TXT\" (enable_additional_node_meta_txt = false,"
  echo "a second agent of the same cluster) answers the same records as NSD."
  echo
  echo "| server, queries | QPS (dnsperf-bound) | server CPU s | queries per server CPU-second | answered from the cache | latency avg (min max) |"
  echo "| --- | --- | --- | --- | --- | --- |"
  # Alternate servers and query sets within each round, so drift on the machine hits all of them alike.
  m_rates=() n_rates=() m_node=() n_node=() l_rates=() l_node=() m_svc=() n_svc=() l_svc=()
  nsd_name="NSD $(nsd -v 2>&1 | awk 'NR == 1 {print $3}')"
  murmur_pat="agent -server -node agent -bind 127.0.20.1"
  lean_pat="agent -node agent-lean -bind 127.0.20.3"
  nsd_pat="nsd -d -c $work/nsd/nsd.conf"
  for round in $(seq 1 $rounds); do
    bench "murmur, mix (round $round)" "$murmur_pat" 127.0.20.1 "$work/queries"
    m_rates+=("$per")
    bench "$nsd_name, mix (round $round)" "$nsd_pat" 127.0.20.2 "$work/queries"
    n_rates+=("$per")
    bench "murmur, nodes (round $round)" "$murmur_pat" 127.0.20.1 "$work/queries-node"
    m_node+=("$per")
    bench "$nsd_name, nodes (round $round)" "$nsd_pat" 127.0.20.2 "$work/queries-node"
    n_node+=("$per")
    bench "murmur without meta TXT, mix (round $round)" "$lean_pat" 127.0.20.3 "$work/queries"
    l_rates+=("$per")
    bench "murmur without meta TXT, nodes (round $round)" "$lean_pat" 127.0.20.3 "$work/queries-node"
    l_node+=("$per")
    bench "murmur, services (round $round)" "$murmur_pat" 127.0.20.1 "$work/queries-svc"
    m_svc+=("$per")
    bench "$nsd_name, services (round $round)" "$nsd_pat" 127.0.20.2 "$work/queries-svc"
    n_svc+=("$per")
    bench "murmur without meta TXT, services (round $round)" "$lean_pat" 127.0.20.3 "$work/queries-svc"
    l_svc+=("$per")
  done
  ratio() { echo "scale=2; $(median "${@:2:$1}") / $(median "${@:$(($1 + 2))}")" | bc; }
  echo
  echo "murmur, mix: $(stats "${m_rates[@]}") queries per server CPU-second"
  echo "$nsd_name, mix: $(stats "${n_rates[@]}") queries per server CPU-second"
  echo "murmur, nodes: $(stats "${m_node[@]}") queries per server CPU-second"
  echo "$nsd_name, nodes: $(stats "${n_node[@]}") queries per server CPU-second"
  echo "murmur without meta TXT, mix: $(stats "${l_rates[@]}") queries per server CPU-second"
  echo "murmur without meta TXT, nodes: $(stats "${l_node[@]}") queries per server CPU-second"
  echo "murmur, services: $(stats "${m_svc[@]}") queries per server CPU-second"
  echo "$nsd_name, services: $(stats "${n_svc[@]}") queries per server CPU-second"
  echo "murmur without meta TXT, services: $(stats "${l_svc[@]}") queries per server CPU-second"
  echo "ratio of medians, mix, murmur/NSD: $(ratio $rounds "${m_rates[@]}" "${n_rates[@]}")"
  echo "ratio of medians, nodes, murmur/NSD: $(ratio $rounds "${m_node[@]}" "${n_node[@]}")"
  echo "ratio of medians, murmur, mix/nodes: $(ratio $rounds "${m_rates[@]}" "${m_node[@]}")"
  echo "ratio of medians, NSD, mix/nodes: $(ratio $rounds "${n_rates[@]}" "${n_node[@]}")"
  echo "ratio of medians, mix, murmur without meta TXT/NSD: $(ratio $rounds "${l_rates[@]}" "${n_rates[@]}")"
  echo "ratio of medians, nodes, murmur without meta TXT/NSD: $(ratio $rounds "${l_node[@]}" "${n_node[@]}")"
  echo "ratio of medians, murmur without meta TXT, mix/nodes: $(ratio $rounds "${l_rates[@]}" "${l_node[@]}")"
  echo "ratio of medians, services, murmur/NSD: $(ratio $rounds "${m_svc[@]}" "${n_svc[@]}")"
  echo "ratio of medians, services, murmur without meta TXT/NSD: $(ratio $rounds "${l_svc[@]}" "${n_svc[@]}")"
  echo "ratio of medians, murmur without meta TXT, services/nodes: $(ratio $rounds "${l_svc[@]}" "${l_node[@]}")"
  echo "ratio of medians, NSD, services/nodes: $(ratio $rounds "${n_svc[@]}" "${n_node[@]}")"
  echo
  for target in "murmur 127.0.20.1" "NSD 127.0.20.2"; do
    set -- $target
    out=$(taskset -c 1 dnsperf -s "$2" -p 8600 -d "$work/queries" -l "$secs" -e -Q 20000 -v 2>/dev/null)
    check_rcodes "$1" "$out"
    echo "$out" | awk '/^> / {print $NF}' | sort -g > "$work/lat-$1"
    f="$work/lat-$1"
    total=$(wc -l < "$f")
    p50=$(sed -n "$(( (total * 50 + 99) / 100 ))p" "$f")
    p99=$(sed -n "$(( (total * 99 + 99) / 100 ))p" "$f")
    echo "$1 at a fixed 20k qps: $total answers, latency p50 $p50 s, p99 $p99 s, max $(tail -1 "$f") s"
  done
} | tee -a perf/RESULTS.md

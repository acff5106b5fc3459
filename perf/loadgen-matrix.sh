#!/usr/bin/env bash
# Runs loadgen's join, broadcast and crash scenarios for the given sizes on both networks and keeps the
# JSON of every run in perf/runs/. Usage: perf/loadgen-matrix.sh [SIZES...]   (default: 100 1000 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p loadgen
mkdir -p perf/runs
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000 5000)
for n in "${sizes[@]}"; do
  for net in sim udp; do
    for sc in join broadcast crash; do
      out="perf/runs/${sc}-${net}-${n}.json"
      echo "== loadgen --nodes $n --net $net --scenario $sc"
      ./target/release/loadgen --nodes "$n" --net "$net" --scenario "$sc" --out "$out" \
        --plot "perf/runs/${sc}-${net}-${n}.svg" --timeout 300 || echo "run failed: $out"
    done
  done
done

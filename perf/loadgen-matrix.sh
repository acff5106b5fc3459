#!/usr/bin/env bash
# Runs the loadgen matrix behind perf/RESULTS.md and keeps every run's JSON and SVG in perf/runs/.
# Usage: perf/loadgen-matrix.sh [SIZES...]   (default: 100 1000 5000 50000)
#   N <= 1000: join, broadcast, crash on both networks, nodes joining through three seeds.
#   N = 5000:  the same on both networks (udp joins at loadgen's default 20/s), plus broadcast and crash
#              on udp from a converged start.
#   N = 50000: sim only, broadcast and crash from a converged start.
# Do not run it while anything else loads the machine: UDP figures and timer lag are real-time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p loadgen
mkdir -p perf/runs
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000 5000 50000)

run() { # N NET SCENARIO TAG [loadgen args...]
  local n=$1 net=$2 sc=$3 tag=$4
  shift 4
  local base="perf/runs/${sc}-${net}-${n}${tag}"
  echo "== loadgen --nodes $n --net $net --scenario $sc $*"
  ./target/release/loadgen --nodes "$n" --net "$net" --scenario "$sc" --out "$base.json" \
    --plot "$base.svg" --timeout 300 "$@" || echo "run failed: $base"
}

for n in "${sizes[@]}"; do
  if [ "$n" -le 1000 ]; then
    for net in sim udp; do
      for sc in join broadcast crash; do run "$n" "$net" "$sc" ""; done
    done
  elif [ "$n" -le 5000 ]; then
    for net in sim udp; do
      for sc in join broadcast crash; do run "$n" "$net" "$sc" ""; done
    done
    for sc in broadcast crash; do run "$n" udp "$sc" "-converged" --start converged; done
  else
    for sc in broadcast crash; do run "$n" sim "$sc" "-converged" --start converged; done
  fi
done

#!/usr/bin/env bash
# Records a flamegraph of a loadgen run (default: 5000 nodes, simulated network, broadcast scenario).
# Installs perf (Debian linux-perf) and inferno if missing. Output: perf/flamegraph.svg
# Usage: perf/flamegraph.sh [loadgen args...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v perf >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf
fi
if ! command -v inferno-flamegraph >/dev/null; then
  cargo install --locked inferno
fi
cargo build --release -p loadgen
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--nodes 5000 --net sim --scenario broadcast)
perf record -F 499 -g -o perf/perf.data ./target/release/loadgen "${args[@]}"
perf script -i perf/perf.data | inferno-collapse-perf | inferno-flamegraph --title "loadgen ${args[*]}" > perf/flamegraph.svg
rm -f perf/perf.data
echo "wrote perf/flamegraph.svg"

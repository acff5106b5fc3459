#!/usr/bin/env bash
# Short fuzz runs of every target on stable Rust (cargo-fuzz with -s none), seeded from fuzz/corpus.
# Usage: tools/fuzz.sh [seconds per target, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cd fuzz
for t in gossip_packet dns_query aead_open; do
  mkdir -p "corpus/$t"
  cargo fuzz run -s none --release "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=2048
done

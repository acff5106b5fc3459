#!/usr/bin/env bash
# Fuzz runs of every target on stable Rust (cargo-fuzz with -s none --release; no nightly needed).
#
# Usage:
#   tools/fuzz.sh [SECONDS] [TARGET...]          the gate: .ci/run calls `tools/fuzz.sh 10` (default 30 s)
#   tools/fuzz.sh --explore SECONDS [TARGET...]  exploration, for humans outside the gate
#
# Gate (the default), for each target:
#   1. replays the committed corpus fuzz/corpus/<target> once (libFuzzer -runs=0 executes every input);
#   2. fuzzes for SECONDS from a fixed seed (-seed=1): every run walks the same mutation sequence (how
#      far it gets depends on machine speed), so a crash that is merely lucky does not block an
#      unrelated submission. New inputs go to a scratch corpus (first corpus
#      dir, under ${TMPDIR:-/tmp}/murmur-fuzz-XXXXXX); the committed corpus is only read.
#   The tracked corpus is never written. Crash inputs (-artifact_prefix) also go to the scratch dir.
#   A crash does not stop the other targets: at the end the script prints each crash input in hex,
#   keeps the scratch dir and exits non-zero; otherwise the scratch dir is deleted.
#
# Explore (--explore SECONDS): random seeds, new inputs into the scratch corpus, then -merge=1 adds the
#   ones that bring new coverage to fuzz/corpus/<target> (review and commit them). Crashes are reported
#   as in the gate (and never merged: artifacts live outside the corpus dirs).
#
# Inputs are capped at 9216 bytes (wire::MAX_DATAGRAM, the gossip datagram limit) except full states
# (pushpull_state), which arrive over a stream: 64 KiB. Each input has 25 s before counting as a hang.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '3,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

mode=gate
if [[ ${1:-} == --explore ]]; then
  mode=explore
  shift
  [[ ${1:-} =~ ^[0-9]+$ ]] || usage
fi
case ${1:-} in
  -h | --help) usage ;;
esac
secs=30
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
  secs=$1
  shift
elif [[ -n ${1:-} && ${1:-} == -* ]]; then
  usage
fi

all_targets=(gossip_packet pushpull_state dns_query aead_open node_record server_rpc http_txn snapshot_file catalog_register user_event coordinate_update filter_expr record_patch)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")

max_len() {
  case $1 in
    pushpull_state) echo 65536 ;;
    *) echo 9216 ;;
  esac
}

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cd fuzz
for t in "${targets[@]}"; do
  [[ -f fuzz_targets/$t.rs ]] || { echo "fuzz.sh: no target $t" >&2; exit 2; }
done

scratch=$(mktemp -d "${TMPDIR:-/tmp}/murmur-fuzz-XXXXXX")
keep=0
trap '[[ $keep == 1 ]] || rm -rf "$scratch"' EXIT

cargo fuzz build -s none --release

failed=()
run() { # target, libFuzzer args...: runs over the scratch corpus (written) and the committed one (read)
  local t=$1
  shift
  cargo fuzz run -s none --release "$t" "$scratch/corpus/$t" "corpus/$t" -- \
    -artifact_prefix="$scratch/artifacts/$t/" -timeout=25 "$@"
}

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "$scratch/corpus/$t" "$scratch/artifacts/$t"
  len=$(max_len "$t")
  ok=1
  if [[ $mode == gate ]]; then
    echo "=== $t: replaying fuzz/corpus/$t ($(find "corpus/$t" -type f | wc -l) inputs)"
    run "$t" -runs=0 || ok=0
    if [[ $ok == 1 ]]; then
      echo "=== $t: ${secs}s from seed 1"
      run "$t" -seed=1 -max_total_time="$secs" -max_len="$len" || ok=0
    fi
  else
    echo "=== $t: exploring for ${secs}s (random seed)"
    run "$t" -max_total_time="$secs" -max_len="$len" || ok=0
    before=$(find "corpus/$t" -type f | wc -l)
    cargo fuzz run -s none --release "$t" "corpus/$t" "$scratch/corpus/$t" -- \
      -merge=1 -max_len="$len" -artifact_prefix="$scratch/artifacts/$t/" -timeout=25 || ok=0
    echo "=== $t: merged $(($(find "corpus/$t" -type f | wc -l) - before)) new inputs into fuzz/corpus/$t"
  fi
  [[ $ok == 1 ]] || failed+=("$t")
done

if [[ ${#failed[@]} -gt 0 ]]; then
  keep=1
  echo "fuzz.sh: FAILED: ${failed[*]} (scratch dir kept: $scratch)" >&2
  for t in "${failed[@]}"; do
    for f in "$scratch/artifacts/$t"/*; do
      [[ -f $f ]] || continue
      echo "--- $t crash input $f ($(wc -c <"$f") bytes), hex:" >&2
      od -An -v -tx1 "$f" | tr -d ' \n' >&2
      echo >&2
    done
  done
  exit 1
fi
echo "fuzz.sh: ${mode}: ${targets[*]}: no crash"

#!/usr/bin/env bash
# `ferry cache` over a large generated cache: IMAGES recorded images of 10
# blobs each (an index, a manifest, a config, 7 layers) plus STRAY blobs no
# record names; by default 4,500 x 10 + 5,000 = 50,000 blobs. Times (median
# of 3, each on a freshly generated cache, page cache warm) `ferry cache
# gc` (which must remove exactly the stray blobs; the issue asks for under
# 5 s), `ferry cache ls`, and `ferry cache prune --older-than 50d` (about
# half the records, spread over 100 days, and their blobs).
# Usage: scripts/bench-cache.sh [IMAGES=4500] [STRAY=5000]
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-4500}
stray=${2:-5000}
mkdir -p bench-out
cargo build --release --quiet --bin ferry --example gen_cache
ferry=${FERRY_BIN:-target/release/ferry}
work=$(mktemp -d -p "$PWD/bench-out")
trap 'rm -rf "$work"' EXIT
cache=$work/cache

generate() { target/release/examples/gen_cache "$cache" "$images" "$stray" >"$work/gen"; sync; }

# run_timed CMD…: runs it, leaves its stdout in $work/out, prints seconds.
run_timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$work/out"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

# bench LABEL REGENERATE CMD…: three runs, the median and each.
bench() {
  local label=$1 regen=$2; shift 2
  local times=()
  for _ in 1 2 3; do
    [ "$regen" = yes ] && generate
    times+=("$(run_timed "$@")")
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
  printf '%-36s median %5.2f s  (runs: %s)\n' "$label" "$median" \
    "$(printf '%.2f ' "${times[@]}")"
}

generate
echo "cache: $(cat "$work/gen") in $(du -sh "$cache" | cut -f1)"
bench "ferry cache ls" no "$ferry" cache ls --cache "$cache" --json
bench "ferry cache gc --dry-run" no "$ferry" cache gc --cache "$cache" --dry-run
bench "ferry cache gc" yes "$ferry" cache gc --cache "$cache"
grep -q "^removed $stray blobs" "$work/out" || { echo "gc removed the wrong blobs: $(cat "$work/out")" >&2; exit 1; }
bench "ferry cache prune --older-than 50d" yes "$ferry" cache prune --cache "$cache" --older-than 50d
tail -1 "$work/out"

#!/usr/bin/env bash
# Benchmarks pack and verify on a generated bundle of incompressible layers
# and prints throughput and peak RSS next to sha256sum and openssl over the
# same bytes. Usage: scripts/bench.sh [TOTAL_MIB=1024] [IMAGES=8]
# Figures are printed, never asserted: performance lives here, not in tests.
source "$(dirname "$0")/bench-common.sh" "$@"

measure() { # label, command...
  local label=$1; shift
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$out/rss" "$@" >/dev/null
  t1=$(date +%s.%N)
  rss=$(cat "$out/rss")
  secs=$(echo "$t1 - $t0" | bc -l)
  printf '%-34s %8.2f s  %9.1f MB/s  peak RSS %6.1f MiB\n' "$label" "$secs" \
    "$(echo "$bytes / 1000000 / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
}

rm -f "$out/bench.tar"
bytes=$(du -sb "$out/src/layout" | cut -f1)
echo "bundle: $images images x 2 platforms, $(echo "$bytes / 1048576" | bc) MiB of blobs; $(nproc) cores"
measure "ferry pack (local layout)" "$ferry" --quiet pack "$out/src/ferry.yaml" -o "$out/bench.tar"
bytes=$(stat -c %s "$out/bench.tar")
cat "$out/bench.tar" >/dev/null  # warm the page cache equally for every reader
measure "ferry verify" "$ferry" --quiet verify "$out/bench.tar"
measure "sha256sum (1 core, whole file)" sha256sum "$out/bench.tar"
measure "openssl dgst -sha256 (1 core)" openssl dgst -sha256 "$out/bench.tar"
measure "ferry unpack" "$ferry" --quiet unpack "$out/bench.tar" -o "$out/unpacked-$$"
rm -rf "$out/unpacked-$$"
measure "ferry inspect" "$ferry" --quiet inspect "$out/bench.tar"

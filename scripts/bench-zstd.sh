#!/usr/bin/env bash
# Compression benchmark: the same generated images packed plain and with
# --compress zstd, for incompressible layers (gzip of random data, like
# real images) and for uncompressed text layers. For each: archive size,
# pack time, verify time and throughput (over the tar's bytes), and load
# time into an empty CNCF distribution registry, with peak RSS.
# Usage: scripts/bench-zstd.sh [TOTAL_MIB=1024] [IMAGES=8]
source "$(dirname "$0")/bench-common.sh" "$@"
FERRY_BENCH_TEXT=1 target/release/examples/gen_bench "$out/src-text" "$total" "$images" >/dev/null

timed() { # timed NAME CMD… : prints seconds; peak RSS to $work/NAME.rss
  local name=$1; shift
  local t0 t1; t0=$(now)
  /usr/bin/time -f '%M' -o "$work/$name.rss" "$@" >/dev/null 2>"$work/$name.err"
  t1=$(now); echo "$t1 - $t0" | bc -l
}
rss() { echo "$(cat "$work/$1.rss")/1024" | bc -l; }

printf '%-14s %-6s %9s %8s %17s %17s %9s\n' content format "size MB" "pack s" "verify s (MB/s)" "load s (MB/s)" "RSS MiB"
for kind in layers text; do
  src="$out/src"; [ "$kind" = text ] && src="$out/src-text"
  for fmt in plain zstd; do
    a="$work/$kind-$fmt.tar"; extra=()
    [ "$fmt" = zstd ] && { a="$a.zst"; extra=(--compress zstd); }
    p=$(timed "$kind-$fmt-pack" "$ferry" --quiet pack "$src/ferry.yaml" -o "$a" "${extra[@]}")
    v=$(timed "$kind-$fmt-verify" "$ferry" --quiet verify "$a")
    port=$(start_registry "$kind-$fmt"); sleep 1
    l=$(timed "$kind-$fmt-load" "$ferry" --quiet load "$a" --registry "127.0.0.1:$port")
    tarbytes=$("$ferry" --quiet inspect "$a" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["content_bytes"])')
    size=$(stat -c %s "$a")
    maxrss=$(printf '%s\n' "$(rss "$kind-$fmt-pack")" "$(rss "$kind-$fmt-verify")" "$(rss "$kind-$fmt-load")" | sort -g | tail -1)
    printf '%-14s %-6s %9.1f %8.2f %8.2f (%6.0f) %8.2f (%6.0f) %9.1f\n' "$kind" "$fmt" \
      "$(echo "$size/1000000" | bc -l)" "$p" "$v" "$(echo "$tarbytes/1000000/$v" | bc -l)" \
      "$l" "$(echo "$tarbytes/1000000/$l" | bc -l)" "$maxrss"
  done
done

#!/usr/bin/env bash
# Compression benchmark: the same generated images packed plain and with
# --compress zstd, for incompressible layers (gzip of random data, like
# real images) and for uncompressed text layers. For each: archive size,
# pack time, verify time and throughput (over the tar's bytes), and load
# time into an empty CNCF distribution registry, with peak RSS.
# Also, verify only: the plain archive compressed by `zstd` as one stream
# (no seek table: how ferry wrote --compress before framing, read in
# order on one core), the baseline framed reading is measured against.
# FERRY_BASE=PATH adds pack and verify of the zstd archive by another
# build (the start of a branch, for a before/after), in the same run.
# Usage: [FERRY_BASE=PATH] scripts/bench-zstd.sh [TOTAL_MIB=1024] [IMAGES=8]
source "$(dirname "$0")/bench-common.sh" "$@"
base=${FERRY_BASE:-}
FERRY_BENCH_TEXT=1 target/release/examples/gen_bench "$out/src-text" "$total" "$images" >/dev/null

timed() { # timed NAME CMD… : prints seconds; peak RSS to $work/NAME.rss
  local name=$1; shift
  local t0 t1; t0=$(now)
  /usr/bin/time -f '%M' -o "$work/$name.rss" "$@" >/dev/null 2>"$work/$name.err"
  t1=$(now); echo "$t1 - $t0" | bc -l
}
rss() { echo "$(cat "$work/$1.rss")/1024" | bc -l; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %-12s %9s %8s %17s %17s %9s\n' content format "size MB" "pack s" "verify s (MB/s)" "load s (MB/s)" "RSS MiB"
for kind in layers text; do
  src="$out/src"; [ "$kind" = text ] && src="$out/src-text"
  for fmt in plain zstd one-stream base-zstd; do
    [ "$fmt" = base-zstd ] && [ -z "$base" ] && continue
    a="$work/$kind-$fmt.tar"; extra=(); bin=$ferry
    case $fmt in
      zstd) a="$a.zst"; extra=(--compress zstd) ;;
      base-zstd) a="$a.zst"; extra=(--compress zstd); bin=$base ;;
    esac
    if [ "$fmt" = one-stream ]; then
      a="$a.zst"
      zstd -q -3 -T0 "$work/$kind-plain.tar" -o "$a"
      p=0
    else
      p=$(timed "$kind-$fmt-pack" "$bin" --quiet pack "$src/ferry.yaml" -o "$a" "${extra[@]}")
    fi
    v=$(timed "$kind-$fmt-verify" "$bin" --quiet verify "$a")
    tarbytes=$("$ferry" --quiet inspect "$a" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["content_bytes"])')
    size=$(stat -c %s "$a")
    if [ "$fmt" = plain ] || [ "$fmt" = zstd ]; then
      port=$(start_registry "$kind-$fmt"); sleep 1
      l=$(timed "$kind-$fmt-load" "$bin" --quiet load "$a" --registry "127.0.0.1:$port")
      maxrss=$(printf '%s\n' "$(rss "$kind-$fmt-pack")" "$(rss "$kind-$fmt-verify")" "$(rss "$kind-$fmt-load")" | sort -g | tail -1)
      printf '%-14s %-12s %9.1f %8.2f %8.2f (%6.0f) %8.2f (%6.0f) %9.1f\n' "$kind" "$fmt" \
        "$(echo "$size/1000000" | bc -l)" "$p" "$v" "$(echo "$tarbytes/1000000/$v" | bc -l)" \
        "$l" "$(echo "$tarbytes/1000000/$l" | bc -l)" "$maxrss"
    else
      printf '%-14s %-12s %9.1f %8s %8.2f (%6.0f) %17s %9.1f\n' "$kind" "$fmt" \
        "$(echo "$size/1000000" | bc -l)" "$([ "$p" = 0 ] && echo - || printf '%.2f' "$p")" "$v" \
        "$(echo "$tarbytes/1000000/$v" | bc -l)" - "$(rss "$kind-$fmt-verify")"
    fi
  done
done
echo "(load average $(cut -d' ' -f1-3 /proc/loadavg))"

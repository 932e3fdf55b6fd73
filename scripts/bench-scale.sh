#!/usr/bin/env bash
# Scale: ARTIFACTS single-platform images of five small blobs each
# (examples/gen_scale.rs: 50,000 blobs at 10,000 artifacts), at each size of
# SIZES. For each: pack (from the local layout), verify, inspect, load
# --dry-run against a registry that already holds everything (filled by a
# `ferry load` first, timed too), and serve's start-up (until `/v2/`
# answers; measured before the loads, which take longest). Prints time and peak RSS of each, KiB of peak RSS per artifact,
# and time per 1,000 artifacts, so growth can be read off across sizes.
# The loads take longest (about 47 s per 1,000 artifacts on 2 cores):
# LOAD_MAX=N skips them above N artifacts. FERRY_BASE=PATH runs each step
# by another build too (the start of a branch, for a before/after), right
# after this build's, on the same archive and registry.
# Usage: [LOAD_MAX=N] [FERRY_BASE=PATH] scripts/bench-scale.sh [SIZES="2500 5000 10000"]
sizes=${1:-2500 5000 10000}
load_max=${LOAD_MAX:-}
base=${FERRY_BASE:-}
export FERRY_BENCH_NO_SRC=1
source "$(dirname "$0")/bench-common.sh"
cargo build --release --quiet --example gen_scale
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# both LABEL N ARGS…: timed with this build, then with FERRY_BASE's.
both() {
  local label=$1 n=$2; shift 2
  timed "$label" "$n" "$ferry" "$@"
  [ -z "$base" ] || timed "$label (base)" "$n" "$base" "$@"
}

# timed LABEL N CMD…: runs CMD, prints seconds, peak RSS and per-artifact figures.
timed() {
  local label=$1 n=$2 t0 t1 s rss; shift 2
  t0=$(now)
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >"$work/out" 2>"$work/err" || { echo "$label failed:"; cat "$work/err"; exit 1; }
  t1=$(now); s=$(echo "$t1 - $t0" | bc -l); rss=$(tail -1 "$work/rss")
  printf '%6d artifacts  %-28s %7.2f s  %6.2f s/1k  peak RSS %6.1f MiB  %5.1f KiB/artifact\n' \
    "$n" "$label" "$s" "$(echo "$s * 1000 / $n" | bc -l)" "$(echo "$rss/1024" | bc -l)" "$(echo "$rss/$n" | bc -l)"
}

for n in $sizes; do
  target/release/examples/gen_scale "$out/scale$n" "$n" >/dev/null
  a="$work/scale$n.tar"
  [ -z "$base" ] || timed 'pack (base)' "$n" "$base" --quiet pack "$out/scale$n/ferry.yaml" -o "$a"
  timed pack "$n" "$ferry" --quiet pack "$out/scale$n/ferry.yaml" -o "$a"
  both verify "$n" --quiet verify "$a"
  both inspect "$n" --quiet inspect "$a"
  both 'inspect --json' "$n" --quiet inspect --json "$a"
  for bin in "$ferry" $base; do
  label='serve start-up'; [ "$bin" = "$ferry" ] || label='serve start-up (base)'
  # serve: start-up until /v2/ answers, and its RSS then.
  sp=$(free_port); t0=$(now)
  "$bin" --quiet serve "$a" --listen "127.0.0.1:$sp" >/dev/null 2>"$work/serve.err" &
  spid=$!
  until curl -sf "http://127.0.0.1:$sp/v2/" >/dev/null; do
    kill -0 "$spid" 2>/dev/null || { echo "serve failed:"; cat "$work/serve.err"; exit 1; }
    sleep 0.02
  done
  t1=$(now); s=$(echo "$t1 - $t0" | bc -l)
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$spid/status")
  kill "$spid"; wait "$spid" 2>/dev/null || true
  printf '%6d artifacts  %-28s %7.2f s  %6.2f s/1k  peak RSS %6.1f MiB  %5.1f KiB/artifact\n' \
    "$n" "$label" "$s" "$(echo "$s * 1000 / $n" | bc -l)" "$(echo "$rss/1024" | bc -l)" "$(echo "$rss/$n" | bc -l)"
  done
  if [ -n "$load_max" ] && [ "$n" -gt "$load_max" ]; then
    printf '%6d artifacts  load, load --dry-run: skipped (LOAD_MAX=%s)\n' "$n" "$load_max"
    rm -rf "$a" "$out/scale$n"
    continue
  fi
  p=$(start_registry "reg$n"); wait_port "$p"
  timed 'load (empty registry)' "$n" "$ferry" --quiet load "$a" --registry "127.0.0.1:$p"
  both 'load --dry-run (all there)' "$n" --quiet load --dry-run "$a" --registry "127.0.0.1:$p"
  echo "       (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  rm -rf "$a" "$work/reg$n-data" "$out/scale$n"
done

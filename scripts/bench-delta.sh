#!/usr/bin/env bash
# Delta benchmark: two generations of the same generated images, 10 % of
# the layers changed between them. Packs generation 2 whole and as a delta
# against an inventory of generation 1's bundle, and prints the bytes each
# carries, plus verify and load times of the delta into a registry that
# holds generation 1 (with --force: generation 2 keeps the tags).
# Usage: scripts/bench-delta.sh [TOTAL_MIB=1024] [IMAGES=8] [CHANGE_PCT=10]
source "$(dirname "$0")/bench-common.sh" "$@"
pct=${3:-10}
target/release/examples/gen_bench "$out/src2" "$total" "$images" "$pct" >/dev/null

"$ferry" --quiet pack "$out/src/ferry.yaml" -o "$work/gen1.tar" >/dev/null
"$ferry" --quiet pack "$out/src2/ferry.yaml" -o "$work/gen2-full.tar" >/dev/null
"$ferry" --quiet inventory --bundle "$work/gen1.tar" -o "$work/have.json" >/dev/null
t0=$(now)
"$ferry" --quiet pack "$out/src2/ferry.yaml" -o "$work/gen2-delta.tar" --have "$work/have.json" >/dev/null
t1=$(now); p=$(echo "$t1 - $t0" | bc -l)

port=$(start_registry reg)
sleep 1
"$ferry" --quiet load "$work/gen1.tar" --registry "127.0.0.1:$port" >/dev/null
t0=$(now)
"$ferry" --quiet inventory --registry "127.0.0.1:$port" -o "$work/have-reg.json" >/dev/null
t1=$(now); inv=$(echo "$t1 - $t0" | bc -l)
t0=$(now)
"$ferry" --quiet verify "$work/gen2-delta.tar" >/dev/null
t1=$(now); v=$(echo "$t1 - $t0" | bc -l)
t0=$(now)
"$ferry" --quiet load "$work/gen2-delta.tar" --registry "127.0.0.1:$port" --force >/dev/null
t1=$(now); l=$(echo "$t1 - $t0" | bc -l)

full=$(stat -c %s "$work/gen2-full.tar")
delta=$(stat -c %s "$work/gen2-delta.tar")
layers=$((images * 8))
printf 'generation 2: %d images, %d layers, %d%% of them changed\n' "$images" "$layers" "$pct"
printf 'full bundle:  %.1f MB\n' "$(echo "$full/1000000" | bc -l)"
printf 'delta bundle: %.1f MB = %.1f %% of the full bundle (pack --have %.2f s)\n' \
  "$(echo "$delta/1000000" | bc -l)" "$(echo "100*$delta/$full" | bc -l)" "$p"
printf 'inventory of the registry holding generation 1: %.2f s, %d blobs\n' "$inv" "$(grep -c '"digest"' "$work/have-reg.json")"
printf 'verify of the delta: %.2f s; load of the delta on top of generation 1: %.2f s\n' "$v" "$l"

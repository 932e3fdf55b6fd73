#!/usr/bin/env bash
# Serve benchmark: `skopeo copy --all` of every image of a generated bundle
# from `ferry serve` versus from the CNCF distribution registry holding the
# same images, in one run. Also prints ferry serve's start-up time and peak
# RSS. Usage: scripts/bench-serve.sh [TOTAL_MIB=1024] [IMAGES=8]
source "$(dirname "$0")/bench-common.sh" "$@"

"$ferry" --quiet pack "$out/src/ferry.yaml" -o "$out/bench.tar" >/dev/null
reg_port=$(start_registry registry)
ferry_port=$(free_port)
/usr/bin/time -f '%M' -o "$work/ferry.rss" "$ferry" serve "$out/bench.tar" --listen "127.0.0.1:$ferry_port" >"$work/ferry.log" 2>&1 & ferry_pid=$!
pids+=($ferry_pid)
sleep 1
grep -o 'ready in [0-9]* ms' "$work/ferry.log" | sed 's/^/ferry serve start-up on the bundle: /'

for i in $(seq 0 $((images - 1))); do
  skopeo --insecure-policy copy -q --all --dest-tls-verify=false \
    "oci:$out/src/layout:registry.example.com/bench/app$i:1.0" "docker://127.0.0.1:$reg_port/bench/app$i:1.0"
done

pull_all() { # port
  local t0 t1
  rm -rf "$work/pull"; mkdir -p "$work/pull"; t0=$(date +%s.%N)
  for i in $(seq 0 $((images - 1))); do
    skopeo --insecure-policy copy -q --all --src-tls-verify=false \
      "docker://127.0.0.1:$1/bench/app$i:1.0" "oci:$work/pull/app$i:x" >&2 || exit 1
  done
  t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l
}
bytes=$(stat -c %s "$out/bench.tar")
for round in 1 2; do
  r=$(pull_all "$reg_port"); f=$(pull_all "$ferry_port")
  printf 'round %d: skopeo copy --all of %d images: distribution %.2f s (%.0f MB/s), ferry serve %.2f s (%.0f MB/s)\n' \
    "$round" "$images" "$r" "$(echo "$bytes/1000000/$r" | bc -l)" "$f" "$(echo "$bytes/1000000/$f" | bc -l)"
done
pkill -INT -P $ferry_pid; wait $ferry_pid 2>/dev/null || true
printf 'ferry serve peak RSS: %.1f MiB\n' "$(echo "$(cat "$work/ferry.rss")/1024" | bc -l)"

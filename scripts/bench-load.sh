#!/usr/bin/env bash
# Load benchmark, in one run on the same machine and images: `ferry load` of
# a generated bundle into an empty CNCF distribution registry versus
# `skopeo copy --all oci:LAYOUT:REF docker://…` of every image into another
# empty one (skopeo gets the layout already extracted; ferry reads the
# archive as it is). Prints times, throughput and ferry's peak RSS, then the
# time of a repeated load (nothing left to push).
# Usage: scripts/bench-load.sh [TOTAL_MIB=1024] [IMAGES=8]
source "$(dirname "$0")/bench-common.sh" "$@"

"$ferry" --quiet pack "$out/src/ferry.yaml" -o "$out/bench.tar" >/dev/null
ferry_port=$(start_registry ferry)
skopeo_port=$(start_registry skopeo)
sleep 1
bytes=$(stat -c %s "$out/bench.tar")

t0=$(now)
/usr/bin/time -f '%M' -o "$work/ferry.rss" "$ferry" --quiet load "$out/bench.tar" --registry "127.0.0.1:$ferry_port" >"$work/ferry.out" 2>&1
t1=$(now); f=$(echo "$t1 - $t0" | bc -l)

t0=$(now)
for i in $(seq 0 $((images - 1))); do
  skopeo --insecure-policy copy -q --all --dest-tls-verify=false \
    "oci:$out/src/layout:registry.example.com/bench/app$i:1.0" "docker://127.0.0.1:$skopeo_port/bench/app$i:1.0"
done
t1=$(now); s=$(echo "$t1 - $t0" | bc -l)

t0=$(now)
"$ferry" --quiet load "$out/bench.tar" --registry "127.0.0.1:$ferry_port" >/dev/null 2>&1
t1=$(now); again=$(echo "$t1 - $t0" | bc -l)

printf 'bundle: %.0f MB, %d images\n' "$(echo "$bytes/1000000" | bc -l)" "$images"
printf 'ferry load:            %.2f s (%.0f MB/s), peak RSS %.1f MiB\n' "$f" "$(echo "$bytes/1000000/$f" | bc -l)" "$(echo "$(cat "$work/ferry.rss")/1024" | bc -l)"
printf 'skopeo copy --all x%d: %.2f s (%.0f MB/s)\n' "$images" "$s" "$(echo "$bytes/1000000/$s" | bc -l)"
printf 'speed-up: %.2fx\n' "$(echo "$s/$f" | bc -l)"
printf 'repeated ferry load (everything present): %.2f s\n' "$again"

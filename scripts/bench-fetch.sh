#!/usr/bin/env bash
# Fetch benchmark, in one run on the same machine and images: `ferry pack`
# of every image of a generated bundle from a local CNCF distribution
# registry (cold cache) versus `skopeo copy --all docker://… oci:DIR:…` for
# every image plus `tar` of the resulting layout and a `sync` (ferry's
# figure includes making the archive durable). Prints times, throughput
# and ferry's peak RSS, then a warm re-run (everything cached).
# Usage: scripts/bench-fetch.sh [TOTAL_MIB=1024] [IMAGES=8]
source "$(dirname "$0")/bench-common.sh" "$@"

port=$(start_registry registry)
sleep 1
printf 'images:\n' > "$work/spec.yaml"
for i in $(seq 0 $((images - 1))); do
  skopeo --insecure-policy copy -q --all --preserve-digests --dest-tls-verify=false \
    "oci:$out/src/layout:registry.example.com/bench/app$i:1.0" "docker://127.0.0.1:$port/bench/app$i:1.0"
  printf '  - 127.0.0.1:%s/bench/app%d:1.0\n' "$port" "$i" >> "$work/spec.yaml"
done

sync; t0=$(now)
/usr/bin/time -f '%M' -o "$work/ferry.rss" "$ferry" --quiet pack "$work/spec.yaml" -o "$work/ferry.tar" --cache "$work/cache" >/dev/null
t1=$(now); f=$(echo "$t1 - $t0" | bc -l)
bytes=$(stat -c %s "$work/ferry.tar")

sync; t0=$(now)
for i in $(seq 0 $((images - 1))); do
  skopeo --insecure-policy copy -q --all --src-tls-verify=false \
    "docker://127.0.0.1:$port/bench/app$i:1.0" "oci:$work/skopeo:bench/app$i:1.0"
done
tar -cf "$work/skopeo.tar" -C "$work/skopeo" .
sync   # ferry's figure includes making the archive durable; so does this one
t1=$(now); s=$(echo "$t1 - $t0" | bc -l)

t0=$(now)
"$ferry" --quiet pack "$work/spec.yaml" -o "$work/again.tar" --cache "$work/cache" >/dev/null
t1=$(now); again=$(echo "$t1 - $t0" | bc -l)

printf 'bundle: %.0f MB, %d images\n' "$(echo "$bytes/1000000" | bc -l)" "$images"
printf 'ferry pack (registry -> archive, cold cache): %.2f s (%.0f MB/s), peak RSS %.1f MiB\n' "$f" "$(echo "$bytes/1000000/$f" | bc -l)" "$(echo "$(cat "$work/ferry.rss")/1024" | bc -l)"
printf 'skopeo copy --all x%d + tar:                  %.2f s (%.0f MB/s)\n' "$images" "$s" "$(echo "$bytes/1000000/$s" | bc -l)"
printf 'speed-up: %.2fx\n' "$(echo "$s/$f" | bc -l)"
printf 'ferry pack again (warm cache):                %.2f s\n' "$again"

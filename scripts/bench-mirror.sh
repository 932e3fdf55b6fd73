#!/usr/bin/env bash
# Mirror benchmark, in one run on the same machine and images: IMAGES
# two-platform images (4 layers of incompressible data per platform, TOTAL_MIB
# in all; the defaults give 4 MiB layers) in one loopback CNCF distribution
# registry, copied into an empty one by
#   - `ferry mirror SPEC` (registry to registry, no disk),
#   - `skopeo sync --all --src yaml --dest docker` (the same images),
#   - `ferry load` of the same images from an archive: no source registry
#     in the way, so the target registry's own limit on this machine.
# Each target is a fresh registry; RUNS rounds (default 2). Prints times,
# throughput, the clients' peak RSS and CPU seconds (the registries take
# the rest of the machine), then a repeated mirror (nothing to copy).
# Usage: scripts/bench-mirror.sh [TOTAL_MIB=640] [IMAGES=20]  (RUNS=N in the environment)
source "$(dirname "$0")/bench-common.sh" "${1:-640}" "${2:-20}"
runs=${RUNS:-2}

# The source registry, filled from the generated layout (not timed).
"$ferry" --quiet pack "$out/src/ferry.yaml" -o "$out/mirror-src.tar" >/dev/null
src_port=$(start_registry source)
sleep 1
"$ferry" --quiet load "$out/mirror-src.tar" --registry "127.0.0.1:$src_port" >/dev/null
bytes=$(stat -c %s "$out/mirror-src.tar")

{
  echo "name: bench-mirror"
  echo "images:"
  for i in $(seq 0 $((images - 1))); do echo "  - 127.0.0.1:$src_port/bench/app$i:1.0"; done
} >"$work/mirror.yaml"
{
  echo "127.0.0.1:$src_port:"
  echo "  tls-verify: false"
  echo "  images:"
  for i in $(seq 0 $((images - 1))); do echo "    bench/app$i: [\"1.0\"]"; done
} >"$work/sync.yaml"

mb() { echo "$bytes/1000000/$1" | bc -l; }
# CPU seconds (user + system) a registry started as NAME has used so far.
reg_cpu() {
  local pid; pid=$(pgrep -f "serve $work/$1.yml" | head -1)
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat"
}
for r in $(seq 1 "$runs"); do
  m_port=$(start_registry "mirror$r")
  s_port=$(start_registry "skopeo$r")
  l_port=$(start_registry "load$r")
  sleep 1

  src_cpu0=$(reg_cpu source)
  t0=$(now)
  /usr/bin/time -f '%M %U %S' -o "$work/mirror$r.rss" "$ferry" --quiet mirror "$work/mirror.yaml" \
    --registry "127.0.0.1:$m_port" >"$work/mirror$r.out" 2>&1 || { cat "$work/mirror$r.out"; exit 1; }
  t1=$(now); f=$(echo "$t1 - $t0" | bc -l)
  m_src=$(echo "$(reg_cpu source) - $src_cpu0" | bc -l); m_dst=$(reg_cpu "mirror$r")
  src_cpu0=$(reg_cpu source)

  t0=$(now)
  /usr/bin/time -f '%M %U %S' -o "$work/skopeo$r.rss" skopeo --insecure-policy sync --all --src yaml --dest docker --dest-tls-verify=false \
    "$work/sync.yaml" "127.0.0.1:$s_port/bench" >"$work/skopeo$r.out" 2>&1 || { cat "$work/skopeo$r.out"; exit 1; }
  t1=$(now); s=$(echo "$t1 - $t0" | bc -l)
  s_src=$(echo "$(reg_cpu source) - $src_cpu0" | bc -l); s_dst=$(reg_cpu "skopeo$r")

  t0=$(now)
  "$ferry" --quiet load "$out/mirror-src.tar" --registry "127.0.0.1:$l_port" >/dev/null 2>&1
  t1=$(now); l=$(echo "$t1 - $t0" | bc -l)
  l_dst=$(reg_cpu "load$r")

  t0=$(now)
  "$ferry" --quiet mirror "$work/mirror.yaml" --registry "127.0.0.1:$m_port" >"$work/again$r.out" 2>&1
  t1=$(now); again=$(echo "$t1 - $t0" | bc -l)

  printf 'run %d: %.0f MB, %d images\n' "$r" "$(echo "$bytes/1000000" | bc -l)" "$images"
  read -r m_rss m_u m_s <"$work/mirror$r.rss"
  read -r s_rss s_u s_s <"$work/skopeo$r.rss"
  printf '  ferry mirror:           %.2f s (%.0f MB/s), peak RSS %.1f MiB, CPU %.2f s\n' "$f" "$(mb "$f")" "$(echo "$m_rss/1024" | bc -l)" "$(echo "$m_u + $m_s" | bc -l)"
  printf '  skopeo sync --all:      %.2f s (%.0f MB/s), peak RSS %.1f MiB, CPU %.2f s\n' "$s" "$(mb "$s")" "$(echo "$s_rss/1024" | bc -l)" "$(echo "$s_u + $s_s" | bc -l)"
  printf '  ferry load (archive):   %.2f s (%.0f MB/s)\n' "$l" "$(mb "$l")"
  printf '  registries CPU (source + target): mirror %.2f + %.2f s, skopeo %.2f + %.2f s, load - + %.2f s\n' \
    "$m_src" "$m_dst" "$s_src" "$s_dst" "$l_dst"
  printf '  all CPU during mirror: %.2f s of %.2f s available on %d cores\n' \
    "$(echo "$m_src + $m_dst + $m_u + $m_s" | bc -l)" "$(echo "$f * $(nproc)" | bc -l)" "$(nproc)"
  printf '  speed-up vs skopeo: %.2fx; mirror at %.0f%% of the load rate\n' "$(echo "$s/$f" | bc -l)" "$(echo "100*$l/$f" | bc -l)"
  printf '  repeated mirror (everything present): %.2f s\n' "$again"
  tail -1 "$work/mirror$r.out" | sed 's/^/  /'
  # Free the disk before the next round.
  rm -rf "$work/mirror$r-data" "$work/skopeo$r-data" "$work/load$r-data"
done

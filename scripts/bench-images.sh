#!/usr/bin/env bash
# `ferry images` over MB (default 100) megabytes of manifests in files of
# about 1 MB (examples/gen_manifests.rs: Deployments, Helm values, ESS
# ConfigMaps with the installer's tree in a block scalar, Argo CD
# Applications with helm.values blocks, compose services). Prints the
# median wall time of 3 runs, the throughput and the peak RSS, and the same
# for `ferry rewrite --check` against a map that carries nothing (it reads
# and rewrites every file, then fails as it must). The issue asks for
# 100 MB/s or more.
# Usage: scripts/bench-images.sh [MB]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-100}
out=bench-out/images
cargo build --release --quiet --bin ferry --example gen_manifests
ferry=${FERRY_BIN:-target/release/ferry}
target/release/examples/gen_manifests "$out/src" "$mb"
bytes=$(cat "$out"/src/manifests/* "$out"/src/images_digests.yml | wc -c)
work=$(mktemp -d -p "$PWD/bench-out")
trap 'rm -rf "$work"' EXIT
printf '{"format":"ferry-map","format_version":1,"registry":"registry.local:5000","images":[]}\n' > "$work/map.json"

# run ARGS…: wall seconds, peak RSS (MiB) and CPU seconds (user + system)
# of one ferry command; the exit status is recorded in $work/rc.
run() {
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M %U %S' -o "$work/rss" "$ferry" -q "$@" >"$work/out" 2>"$work/err" || rc=$?
  t1=$(date +%s.%N)
  echo "$rc" > "$work/rc"
  read -r kb user sys < <(tail -1 "$work/rss")
  echo "$(echo "$t1 - $t0" | bc) $(echo "$kb / 1024" | bc -l) $(echo "$user + $sys" | bc)"
}

# bench LABEL EXPECTED_RC ARGS…
bench() {
  local label=$1 want=$2 times=() secs rss cpu
  shift 2
  for _ in 1 2 3; do
    read -r secs rss cpu < <(run "$@")
    [ "$(cat "$work/rc")" -eq "$want" ] || { echo "$label: exit $(cat "$work/rc"), expected $want"; tail -5 "$work/err"; exit 1; }
    times+=("$secs")
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
  printf '%-22s median %.2f s of 3 (%s), %.0f MB/s, peak %.1f MiB, %.2f CPU-s (last run)\n' "$label" "$median" \
    "$(printf '%.2f ' "${times[@]}")" "$(echo "$bytes / 1000000 / $median" | bc -l)" "$rss" "$cpu"
}

echo "input: $(echo "$bytes / 1000000" | bc -l | xargs printf '%.1f') MB in $(ls "$out/src/manifests" | wc -l) files"
bench "ferry images" 0 images "$out/src" --unique
echo "  $(wc -l < "$work/out") distinct references; $(tail -1 "$work/err")"
bench "ferry rewrite --check" 1 rewrite --map "$work/map.json" --check "$out/src"
echo "target: 100 MB/s or more for ferry images (load now: $(cut -d' ' -f1-3 /proc/loadavg); other work on the cores slows every figure)"

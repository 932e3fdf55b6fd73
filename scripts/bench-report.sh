#!/usr/bin/env bash
# The bundle report at scale: IMAGES (default 3,000) two-platform images
# sharing ten base layers (examples/gen_report.rs), packed, then
# `ferry inspect --html` timed three times (the median printed) with its
# peak RSS and the page's size. The issue asks for under 2 s and under
# 5 MB at 3,000 images. Also times `--html --verify` once, for reference
# (it hashes every member). The last page is kept as
# bench-out/report/report.html to look at.
# Usage: scripts/bench-report.sh [IMAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-3000}
out=bench-out/report
cargo build --release --quiet --bin ferry --example gen_report
ferry=${FERRY_BIN:-target/release/ferry}
target/release/examples/gen_report "$out/src" "$images"
work=$(mktemp -d -p "$PWD/bench-out")
trap 'rm -rf "$work"' EXIT

"$ferry" -q pack "$out/src/ferry.yaml" -o "$work/many.tar" >/dev/null
echo "archive: $(du -h "$work/many.tar" | cut -f1), $images images"

# run LABEL ARGS…: wall seconds and peak RSS (MiB) of one inspect.
run() {
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$ferry" -q inspect "$work/many.tar" "$@" >"$work/out" 2>"$work/err" || rc=$?
  t1=$(date +%s.%N)
  [ "$rc" -eq 0 ] || { echo "inspect $* failed (exit $rc):"; cat "$work/err"; exit 1; }
  echo "$(echo "$t1 - $t0" | bc) $(echo "$(tail -1 "$work/rss") / 1024" | bc -l)"
}

times=()
for _ in 1 2 3; do
  read -r secs rss < <(run --html "$work/report.html")
  times+=("$(printf '%.2f' "$secs")")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
bytes=$(stat -c %s "$work/report.html")
printf 'inspect --html           median %s s of 3 (%s s), peak %.1f MiB; page %.2f MB (%s bytes)\n' \
  "$median" "$(IFS=' '; echo "${times[*]}")" "$rss" "$(echo "$bytes / 1000000" | bc -l)" "$bytes"
read -r secs rss < <(run --html "$work/report.html" --verify)
printf 'inspect --html --verify  %.2f s, peak %.1f MiB\n' "$secs" "$rss"
echo "targets: under 2 s and under 5 MB"
mkdir -p "$out"
cp "$work/report.html" "$out/report.html"

#!/usr/bin/env bash
# `ferry diff` at scale: two generations of IMAGES (default 3,000)
# two-platform images (examples/gen_report.rs; in the second, every image
# has a new tag and every tenth a new, 30 % larger layer), each packed,
# then `ferry diff OLD NEW --max-growth 5%` timed three times on the
# archives (the median printed) with its peak RSS, and once on the bare
# bundle.json files. The issue asks for under 1 s at 3,000 images.
# Usage: scripts/bench-diff.sh [IMAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-3000}
out=bench-out/diff
cargo build --release --quiet --bin ferry --example gen_report
ferry=${FERRY_BIN:-target/release/ferry}
mkdir -p bench-out
target/release/examples/gen_report "$out/gen1" "$images" 0 >/dev/null
target/release/examples/gen_report "$out/gen2" "$images" 1 >/dev/null
work=$(mktemp -d -p "$PWD/bench-out")
trap 'rm -rf "$work"' EXIT

"$ferry" -q pack "$out/gen1/ferry.yaml" -o "$work/gen1.tar" >/dev/null
"$ferry" -q pack "$out/gen2/ferry.yaml" -o "$work/gen2.tar" >/dev/null
tar -xf "$work/gen1.tar" -C "$work" bundle.json && mv "$work/bundle.json" "$work/gen1.json"
tar -xf "$work/gen2.tar" -C "$work" bundle.json && mv "$work/bundle.json" "$work/gen2.json"
echo "archives: $(du -h "$work/gen1.tar" | cut -f1) and $(du -h "$work/gen2.tar" | cut -f1), $images images each; bundle.json $(du -h "$work/gen2.json" | cut -f1)"

# run OLD NEW: wall seconds and peak RSS (MiB) of one diff. Exit 1 is
# expected (some images grew over 5 %); anything else fails.
run() {
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$ferry" -q diff "$1" "$2" --max-growth 5% >"$work/out" 2>"$work/err" || rc=$?
  t1=$(date +%s.%N)
  [ "$rc" -le 1 ] || { echo "diff failed (exit $rc):"; cat "$work/err"; exit 1; }
  echo "$(echo "$t1 - $t0" | bc) $(echo "$(tail -1 "$work/rss") / 1024" | bc -l)"
}

times=()
for _ in 1 2 3; do
  read -r secs rss < <(run "$work/gen1.tar" "$work/gen2.tar")
  times+=("$(printf '%.3f' "$secs")")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
printf 'diff of the archives        median %s s of 3 (%s s), peak %.1f MiB\n' \
  "$median" "$(IFS=' '; echo "${times[*]}")" "$rss"
grep -E "^(artifacts|images|content):|^(OK|FAILED)" "$work/out" | sed 's/^/  /'
read -r secs rss < <(run "$work/gen1.json" "$work/gen2.json")
printf 'diff of the bundle.json     %.3f s, peak %.1f MiB\n' "$secs" "$rss"
echo "target: under 1 s"

#!/usr/bin/env bash
# Export benchmark: `ferry export` of a generated bundle (TOTAL_MIB,
# default 1 GiB) into a docker-archive and an oci-archive, against
# `cp --reflink=never` of the archive (the same bytes moved by the
# kernel's plainest path) and against the same copy made durable (`dd
# conv=fsync`: export, like pack, syncs its temp file before renaming it
# into place, which cp does not), from a warm page cache, alternating,
# median of 3; with export's peak RSS. Throughput is over the bytes each
# writes; "% of cp" compares with the plain cp.
# Usage: scripts/bench-export.sh [TOTAL_MIB=1024] [IMAGES=8]
source "$(dirname "$0")/bench-common.sh" "$@"
a="$work/b.tar"
"$ferry" --quiet pack "$out/src/ferry.yaml" -o "$a"
# Warm the cache, and find a platform every image has.
cat "$a" >/dev/null
platform=$("$ferry" --quiet inspect "$a" --json | python3 -c '
import json, sys
arts = [a for a in json.load(sys.stdin)["artifacts"] if a["kind"] == "image"]
common = set(arts[0]["platforms"])
for a in arts[1:]: common &= set(a["platforms"])
print(sorted(common)[0] if common else "")')

run() { # run NAME CMD… : prints seconds; peak RSS (KiB) to $work/NAME.rss
  local name=$1; shift
  local t0 t1; t0=$(now)
  /usr/bin/time -f '%M' -o "$work/$name.rss" "$@" >/dev/null 2>"$work/$name.err"
  t1=$(now); echo "$t1 - $t0" | bc -l
}
median() { sort -g | sed -n 2p; }
declare -A times
for i in 1 2 3; do
  times[cp]+="$(run cp cp --reflink=never "$a" "$work/copy.tar")"$'\n'; rm -f "$work/copy.tar"
  times[dd]+="$(run dd dd if="$a" of="$work/copy.tar" bs=1M conv=fsync status=none)"$'\n'; rm -f "$work/copy.tar"
  times[docker]+="$(run docker "$ferry" --quiet export "$a" -o "$work/d.tar" ${platform:+--platform "$platform"})"$'\n'
  times[oci]+="$(run oci "$ferry" --quiet export "$a" -o "$work/o.tar" --format oci-archive)"$'\n'
  dsize=$(stat -c %s "$work/d.tar"); osize=$(stat -c %s "$work/o.tar"); rm -f "$work/d.tar" "$work/o.tar"
done
size=$(stat -c %s "$a")
cp_s=$(printf '%s' "${times[cp]}" | median)
printf '%-32s %9s %8s %8s %9s %9s\n' what "size MB" "s" "MB/s" "% of cp" "RSS MiB"
row() { # row NAME LABEL BYTES
  local s; s=$(printf '%s' "${times[$1]}" | median)
  printf '%-32s %9.1f %8.2f %8.0f %9.0f %9.1f\n' "$2" "$(echo "$3/1000000" | bc -l)" "$s" \
    "$(echo "$3/1000000/$s" | bc -l)" "$(echo "100*($3/$s)/($size/$cp_s)" | bc -l)" \
    "$(echo "$(cat "$work/$1.rss")/1024" | bc -l)"
}
row cp "cp --reflink=never (archive)" "$size"
row dd "dd conv=fsync (archive)" "$size"
row docker "export docker-archive ${platform:-}" "$dsize"
row oci "export oci-archive (all)" "$osize"

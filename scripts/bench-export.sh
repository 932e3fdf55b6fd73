#!/usr/bin/env bash
# Export benchmark: `ferry export` of a generated bundle (TOTAL_MIB,
# default 1 GiB) into a docker-archive and an oci-archive, against three
# copies of the archive: `cp --reflink=never` (the kernel's plainest path,
# left in the page cache), the same cp made durable (`cp && sync FILE`:
# export, like pack, syncs its temp file before renaming it into place,
# which a plain cp does not) and `dd conv=fsync` (a durable copy through
# user space). Warm page cache, alternating, median of ROUNDS (default 3);
# with each one's peak RSS and CPU time (user + system, all threads).
# Throughput is over the bytes each writes; "% of cp" and "% of cp+sync"
# compare it with those two copies' throughput.
# FERRY_BASE=PATH adds the same two exports by another build (main's, for a
# before/after), in the same rounds.
# Usage: scripts/bench-export.sh [TOTAL_MIB=1024] [IMAGES=8]
source "$(dirname "$0")/bench-common.sh" "$@"
rounds=${ROUNDS:-3}
base=${FERRY_BASE:-}
a="$work/b.tar"
"$ferry" --quiet pack "$out/src/ferry.yaml" -o "$a" >/dev/null
# Warm the cache, and find a platform every image has.
cat "$a" >/dev/null
platform=$("$ferry" --quiet inspect "$a" --json | python3 -c '
import json, sys
arts = [a for a in json.load(sys.stdin)["artifacts"] if a["kind"] == "image"]
common = set(arts[0]["platforms"])
for a in arts[1:]: common &= set(a["platforms"])
print(sorted(common)[0] if common else "")')

run() { # run NAME CMD… : prints seconds; peak RSS (KiB) and CPU s to $work/NAME.{rss,cpu}
  local name=$1; shift
  local t0 t1; t0=$(now)
  /usr/bin/time -f '%M %U %S' -o "$work/$name.time" "$@" >/dev/null 2>"$work/$name.err"
  t1=$(now); echo "$t1 - $t0" | bc -l
  read -r rss user sys <"$work/$name.time"
  echo "$rss" >"$work/$name.rss"
  echo "$user + $sys" | bc -l >>"$work/$name.cpu"
}
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
declare -A times
exports=(docker oci)
[ -n "$base" ] && exports+=(base-docker base-oci)
for ((i = 1; i <= rounds; i++)); do
  times[cp]+="$(run cp cp --reflink=never "$a" "$work/copy.tar")"$'\n'; rm -f "$work/copy.tar"
  times[cpsync]+="$(run cpsync sh -c 'cp --reflink=never "$1" "$2" && sync "$2"' sh "$a" "$work/copy.tar")"$'\n'; rm -f "$work/copy.tar"
  times[dd]+="$(run dd dd if="$a" of="$work/copy.tar" bs=1M conv=fsync status=none)"$'\n'; rm -f "$work/copy.tar"
  for e in "${exports[@]}"; do
    bin=$ferry; [[ $e == base-* ]] && bin=$base
    case $e in
      *docker) args=(-o "$work/d.tar" ${platform:+--platform "$platform"}) ;;
      *oci) args=(-o "$work/o.tar" --format oci-archive) ;;
    esac
    times[$e]+="$(run "$e" "$bin" --quiet export "$a" "${args[@]}")"$'\n'
  done
  dsize=$(stat -c %s "$work/d.tar"); osize=$(stat -c %s "$work/o.tar"); rm -f "$work/d.tar" "$work/o.tar"
done
size=$(stat -c %s "$a")
cp_s=$(printf '%s' "${times[cp]}" | median)
cpsync_s=$(printf '%s' "${times[cpsync]}" | median)
printf '%-34s %8s %6s %6s %6s %8s %6s %7s\n' what "MB" "s" "MB/s" "% cp" "% cp+sync" "CPU s" "RSS MiB"
row() { # row NAME LABEL BYTES
  local s; s=$(printf '%s' "${times[$1]}" | median)
  printf '%-34s %8.1f %6.2f %6.0f %6.0f %8.0f %6.2f %7.1f\n' "$2" "$(echo "$3/1000000" | bc -l)" "$s" \
    "$(echo "$3/1000000/$s" | bc -l)" "$(echo "100*($3/$s)/($size/$cp_s)" | bc -l)" \
    "$(echo "100*($3/$s)/($size/$cpsync_s)" | bc -l)" \
    "$(median <"$work/$1.cpu")" "$(echo "$(cat "$work/$1.rss")/1024" | bc -l)"
}
row cp "cp --reflink=never (archive)" "$size"
row cpsync "cp && sync (archive)" "$size"
row dd "dd conv=fsync (archive)" "$size"
row docker "export docker-archive ${platform:-}" "$dsize"
row oci "export oci-archive (all)" "$osize"
if [ -n "$base" ]; then
  row base-docker "FERRY_BASE docker-archive" "$dsize"
  row base-oci "FERRY_BASE oci-archive" "$osize"
fi
echo "($rounds rounds, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"

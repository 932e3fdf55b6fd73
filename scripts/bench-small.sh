#!/usr/bin/env bash
# Load with many small blobs, on loopback (no emulated link): IMAGES
# (default 3,000) two-platform images sharing ten base layers
# (examples/gen_report.rs; 9 documents and blobs per image), each loaded
# into an empty CNCF distribution registry. On the 300-image set, in one
# run: `ferry load` against `skopeo copy --all` of each image in turn, and
# against the registry's own ingest limit, measured by scripts/raw-ingest.py
# (only the requests the API needs, at THREADS_LIST concurrencies; the best
# is the limit). On the big set: `ferry load` against the raw client at
# its best concurrency. Also counts ferry's requests by kind, through the
# link emulator with no delay and no cap (examples/link.rs), as requests
# per blob placement and per manifest. FERRY_BASE=PATH adds the same loads
# and counts by another build (the start of a branch, for a before/after),
# in the same run. Each figure is printed with the load average.
# Usage: scripts/bench-small.sh [IMAGES=3000] [THREADS_LIST="8 16 32 64 p4 p8 p16"]
# (pN: N processes; see raw-ingest.py)
big=${1:-3000}; threads_list=${2:-8 16 32 64 p4 p8 p16}
base=${FERRY_BASE:-}
export FERRY_BENCH_NO_SRC=1
source "$(dirname "$0")/bench-common.sh"
cargo build --release --quiet --example gen_report --example link
for n in 300 "$big"; do
  target/release/examples/gen_report "$out/small$n" "$n" >/dev/null
  "$ferry" --quiet pack "$out/small$n/ferry.yaml" -o "$work/small$n.tar" >/dev/null
done
objects() { find "$out/small$1/layout/blobs" -type f | wc -l; }
ferry_load() { # ARCHIVE PORT [BINARY] → seconds
  local t0 t1; t0=$(now)
  "${3:-$ferry}" --quiet load "$1" --registry "127.0.0.1:$2" >/dev/null
  t1=$(now); echo "$t1 - $t0" | bc -l
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
raw() { # SET THREADS PORT → "seconds requests blobs manifests"
  scripts/raw-ingest.py "$out/small$1/layout" "127.0.0.1:$3" "$2"
}
fresh() { local p; p=$(start_registry "$1"); wait_port "$p"; echo "$p"; }

echo "machine: $(nproc) cores"
# 300 images: ferry, skopeo, raw client.
n=300
f=$(ferry_load "$work/small$n.tar" "$(fresh f300)")
printf 'ferry load, 300 images: %.2f s (load average %s)\n' "$f" "$(loadavg)"
if [ -n "$base" ]; then
  fb=$(ferry_load "$work/small$n.tar" "$(fresh b300)" "$base")
  printf 'FERRY_BASE load, 300 images: %.2f s (load average %s)\n' "$fb" "$(loadavg)"
fi
p=$(fresh s300); t0=$(now)
python3 -c 'import json,sys; [print(m["annotations"]["org.opencontainers.image.ref.name"]) for m in json.load(open(sys.argv[1]))["manifests"]]' \
  "$out/small$n/layout/index.json" > "$work/names300"
while read -r name; do
  skopeo --insecure-policy copy -q --all --dest-tls-verify=false \
    "oci:$out/small$n/layout:$name" "docker://127.0.0.1:$p/${name#*/}"
done < "$work/names300"
t1=$(now); s=$(echo "$t1 - $t0" | bc -l)
printf 'skopeo copy --all x300: %.2f s (load average %s)\n' "$s" "$(loadavg)"
best=; best_t=
for t in $threads_list; do
  read -r secs reqs _ _ < <(raw $n "$t" "$(fresh "r300-$t")")
  printf 'raw client, %3s threads, 300 images: %.2f s, %d requests (%.0f/s; load average %s)\n' "$t" "$secs" "$reqs" "$(echo "$reqs / $secs" | bc -l)" "$(loadavg)"
  if [ -z "$best" ] || [ "$(echo "$secs < $best_t" | bc -l)" = 1 ]; then best=$t; best_t=$secs; fi
done
printf '300 images (%d objects): ferry load %.2f s; skopeo copy --all x300 %.2f s (ferry %.2fx); raw limit (%s threads) %.2f s (ferry at %.0f %% of it)\n' \
  "$(objects $n)" "$f" "$s" "$(echo "$s/$f" | bc -l)" "$best" "$best_t" "$(echo "$best_t/$f*100" | bc -l)"
if [ -n "$base" ]; then
  printf '300 images: FERRY_BASE load %.2f s (%.2fx skopeo, at %.0f %% of the raw limit); ferry %.2fx FERRY_BASE\n' \
    "$fb" "$(echo "$s/$fb" | bc -l)" "$(echo "$best_t/$fb*100" | bc -l)" "$(echo "$fb/$f" | bc -l)"
fi

# Requests by kind (300 images, through a link with no delay), per blob
# placement and per manifest (from the load's own counts).
count() { # LABEL BINARY
  local p l
  p=$(fresh "c300-$1"); l=$(start_link "count-$1" "$p" 0 1000000); wait_port "$l"
  "$2" --quiet load "$work/small$n.tar" --registry "127.0.0.1:$l" --json >"$work/count-$1.json"
  link_stats "count-$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
c = json.load(open(sys.argv[2]))["counts"]
k = d["by_kind"]
blob = sum(v for n, v in k.items() if n.split(" ", 1)[-1] in ("blob", "upload"))
man = sum(v for n, v in k.items() if n.split(" ", 1)[-1] == "manifest")
docs = c["manifests_pushed"] + c["manifests_present"]
reqs, conns, placements = d["requests"], d["connections"], c["blob_placements"]
up, mo = c["uploaded"], c["mounted"]
print(f"{sys.argv[1]} load requests (300 images): {reqs} in {conns} connections: "
      + ", ".join(f"{n} {v}" for n, v in k.items()))
print(f"  {blob / placements:.2f} per blob placement ({placements}: {up} uploaded, {mo} mounted), "
      f"{man / docs:.2f} per manifest ({docs})")
' "$1" "$work/count-$1.json"
}
count ferry "$ferry"
[ -z "$base" ] || count FERRY_BASE "$base"

# The big set: ferry against the raw client at its best concurrency.
n=$big
f=$(ferry_load "$work/small$n.tar" "$(fresh "f$n")")
fl=$(loadavg)
read -r secs reqs _ _ < <(raw "$n" "$best" "$(fresh "r$n")")
printf '%d images (%d objects): ferry load %.2f s (%.0f objects/s; load average %s); raw limit (%s threads) %.2f s, %d requests (%.0f/s; load average %s); ferry at %.0f %% of it\n' \
  "$n" "$(objects "$n")" "$f" "$(echo "$(objects "$n")/$f" | bc -l)" "$fl" "$best" "$secs" "$reqs" "$(echo "$reqs/$secs" | bc -l)" "$(loadavg)" "$(echo "$secs/$f*100" | bc -l)"
if [ -n "$base" ]; then
  fb=$(ferry_load "$work/small$n.tar" "$(fresh "b$n")" "$base")
  printf '%d images: FERRY_BASE load %.2f s (load average %s; at %.0f %% of the raw limit)\n' \
    "$n" "$fb" "$(loadavg)" "$(echo "$secs/$fb*100" | bc -l)"
fi

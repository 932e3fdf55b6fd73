#!/usr/bin/env bash
# Fetch over an emulated wide-area link (examples/link.rs: 50 ms round
# trip, 200 Mbit/s each way, shared by all connections) in front of a real
# CNCF distribution registry with htpasswd auth. The fixed image set: 20
# two-platform images, each platform 4 layers of 1 MiB of incompressible
# data, the first layer shared by all (about 127 MB). In the same run, cold
# caches: `ferry pack --no-referrers` against `skopeo copy --all` of each
# image in turn (plus `tar` of its layout and a `sync`, as ferry's archive
# is durable), then `ferry pack` with referrer discovery on. Prints times,
# the ratio, ferry's share of the link's bandwidth over its whole run, and
# the requests each client made through the link, by kind.
# The emulator terminates TCP on loopback: it emulates round trips and
# bandwidth, not TCP window dynamics (slow start, loss).
# Usage: scripts/bench-link.sh [RTT_MS=50] [MBIT=200] [RUNS=1]
rtt=${1:-50}; mbit=${2:-200}; runs=${3:-1}
export FERRY_BENCH_SHARED=1
source "$(dirname "$0")/bench-common.sh" 160 20
cargo build --release --quiet --example link

reg=$(start_registry_auth registry)
wait_port "$reg"
link=$(start_link link "$reg" "$rtt" "$mbit")
wait_port "$link"
printf 'images:\n' > "$work/spec.yaml"
for i in $(seq 0 19); do
  skopeo --insecure-policy copy -q --all --preserve-digests --dest-tls-verify=false \
    --dest-creds "$bench_user:$bench_password" \
    "oci:$out/src/layout:registry.example.com/bench/app$i:1.0" "docker://127.0.0.1:$reg/bench/app$i:1.0"
  printf '  - 127.0.0.1:%s/bench/app%d:1.0\n' "$link" "$i" >> "$work/spec.yaml"
done
rate=$(echo "$mbit * 1000000 / 8" | bc -l)
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
summary() { # NAME STATS_FILE SECONDS
  printf '  %s requests through the link: %s in %s connections (%s)\n' "$1" \
    "$(json "$2" 'd["requests"]')" "$(json "$2" 'd["connections"]')" \
    "$(json "$2" '", ".join(f"{k} {v}" for k, v in d["by_kind"].items())')"
  printf '  %s link use: %.0f MB down in %.2f s = %.0f %% of %s Mbit/s\n' "$1" \
    "$(json "$2" 'd["bytes_down"]/1e6')" "$3" \
    "$(echo "$(json "$2" 'd["bytes_down"]') / $3 / $rate * 100" | bc -l)" "$mbit"
}

ferry_pack() { # OUT CACHE [ARGS...]
  local o=$1 c=$2; shift 2
  echo "$bench_password" | "$ferry" --quiet pack "$work/spec.yaml" -o "$o" --cache "$c" \
    --username "$bench_user" --password-stdin "$@" >/dev/null
}
for run in $(seq "$runs"); do
  rm -rf "$work"/cache-* "$work"/skopeo "$work"/*.tar
  link_stats link >/dev/null
  sync; t0=$(now)
  ferry_pack "$work/ferry.tar" "$work/cache-f" --no-referrers
  t1=$(now); f=$(echo "$t1 - $t0" | bc -l)
  link_stats link > "$work/ferry.json"
  bytes=$(stat -c %s "$work/ferry.tar")

  sync; t0=$(now)
  for i in $(seq 0 19); do
    skopeo --insecure-policy copy -q --all --src-tls-verify=false \
      --src-creds "$bench_user:$bench_password" \
      "docker://127.0.0.1:$link/bench/app$i:1.0" "oci:$work/skopeo:bench/app$i:1.0"
  done
  tar -cf "$work/skopeo.tar" -C "$work/skopeo" .
  sync
  t1=$(now); s=$(echo "$t1 - $t0" | bc -l)
  link_stats link > "$work/skopeo.json"

  sync; t0=$(now)
  ferry_pack "$work/ferry-ref.tar" "$work/cache-r"
  t1=$(now); r=$(echo "$t1 - $t0" | bc -l)
  link_stats link > "$work/ref.json"

  printf 'run %d: link %s ms RTT, %s Mbit/s; bundle %.0f MB, 20 images (%d cores)\n' "$run" "$rtt" "$mbit" "$(echo "$bytes/1000000" | bc -l)" "$(nproc)"
  printf 'ferry pack --no-referrers (cold cache):   %.2f s\n' "$f"
  printf 'skopeo copy --all x20 + tar:              %.2f s\n' "$s"
  printf 'speed-up: %.2fx\n' "$(echo "$s/$f" | bc -l)"
  printf 'ferry pack, referrers on (cold cache):    %.2f s (%.2fx skopeo)\n' "$r" "$(echo "$s/$r" | bc -l)"
  summary 'ferry    ' "$work/ferry.json" "$f"
  summary 'skopeo   ' "$work/skopeo.json" "$s"
  summary 'ferry+ref' "$work/ref.json" "$r"
done

#!/usr/bin/env bash
# Graph walks on a hostile fan-out: one image whose index lists the same
# child FANOUT times at each of DEPTH levels (60^4 = 12,960,000 paths in a
# few KB). Measures, with /usr/bin/time: pack from the layout, verify,
# verify with the one layer missing, load into the real registry, and
# pack from that registry (cold cache). Every walk must visit each
# document once: the issue asks for under 1 s and 100 MiB for verify and
# under 5 s for each pack.
# Usage: scripts/bench-fanout.sh [FANOUT] [DEPTH]
set -euo pipefail
cd "$(dirname "$0")/.."
fanout=${1:-60}
depth=${2:-4}
out=bench-out/fanout
cargo build --release --quiet --bin ferry --example gen_fanout
ferry=${FERRY_BIN:-target/release/ferry}
target/release/examples/gen_fanout "$out" "$fanout" "$depth"
work=$(mktemp -d -p "$PWD/bench-out")
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT

# measure LABEL CMD…: wall seconds and peak RSS (MiB), one line.
measure() {
  local label=$1; shift
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" timeout 300 "$@" >"$work/out" 2>"$work/err" || rc=$?
  t1=$(date +%s.%N)
  printf '%-34s %6.2f s  %6.1f MiB  exit %s\n' "$label" "$(echo "$t1 - $t0" | bc)" \
    "$(echo "$(tail -1 "$work/rss") / 1024" | bc -l)" "$rc"
}

echo "fan-out $fanout, depth $depth ($(du -sh "$out/layout" | cut -f1) of layout)"
measure "pack from the layout" "$ferry" -q pack "$out/ferry.yaml" -o "$work/fan.tar"
measure "verify" "$ferry" -q verify "$work/fan.tar"

# The same archive without its one layer member (bundle.json still lists it).
python3 - "$work/fan.tar" "$work/missing.tar" "$(cat "$out/layer")" <<'PY'
import sys
src, dst, drop = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, 'rb').read()
out, i = bytearray(), 0
while i + 512 <= len(data):
    h = data[i:i + 512]
    if h == bytes(512):
        out += data[i:]
        break
    name = h[:100].rstrip(b'\0').decode()
    size = int(h[124:136].rstrip(b'\0 ') or b'0', 8)
    n = 512 + (size + 511) // 512 * 512
    if name != drop:
        out += data[i:i + n]
    i += n
open(dst, 'wb').write(out)
PY
measure "verify, the layer missing" "$ferry" -q verify "$work/missing.tar"
hex=$(sed 's,.*/,,' "$out/layer")
echo "  lines of verify's report naming the missing layer: $(grep -c "$hex" "$work/out" || true)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/reg.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/reg-data}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
measure "load into the registry" "$ferry" -q load "$work/fan.tar" --registry "127.0.0.1:$port"
printf 'images:\n  - 127.0.0.1:%s/library/fan:1\n' "$port" > "$work/remote.yaml"
DOCKER_CONFIG=$work/no-docker measure "pack from the registry (cold)" \
  "$ferry" -q pack "$work/remote.yaml" -o "$work/again.tar" --cache "$work/cache"

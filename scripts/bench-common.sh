# Shared by the bench-*.sh scripts (sourced, not run): arguments, the
# release build, the generated bundle source, and throwaway CNCF
# distribution registries on free loopback ports.
# Usage inside a script: source "$(dirname "$0")/bench-common.sh" "$@"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
total=${1:-1024}
images=${2:-8}
out=bench-out
mkdir -p "$out"
cargo build --release --quiet --bin ferry --example gen_bench
# FERRY_BIN runs another build (a before/after comparison) on the same data.
ferry=${FERRY_BIN:-target/release/ferry}
target/release/examples/gen_bench "$out/src" "$total" "$images" >/dev/null

work=$(mktemp -d -p "$PWD/$out")
pids=()
# start_registry runs in $(…), a subshell: its pids are kept in a file.
trap 'kill "${pids[@]}" $(cat "$work/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry NAME: an empty registry storing under $work/NAME-data;
# prints its port.
start_registry() {
  local port; port=$(free_port)
  cat > "$work/$1.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/$1-data}}
http: {addr: 127.0.0.1:$port}
YML
  docker-registry serve "$work/$1.yml" >"$work/$1.log" 2>&1 &
  pids+=($!)
  echo $! >>"$work/pids"
  echo "$port"
}

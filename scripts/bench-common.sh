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
# (Scripts that make their own source set FERRY_BENCH_NO_SRC=1.)
[ -n "${FERRY_BENCH_NO_SRC:-}" ] || target/release/examples/gen_bench "$out/src" "$total" "$images" >/dev/null

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

# The user and password of start_registry_auth's registries (the bcrypt
# hash below is `htpasswd -Bbn -C 5 ferry s3cret-pass`, as in the tests).
bench_user=ferry
bench_password=s3cret-pass

# start_registry_auth NAME: like start_registry, with htpasswd auth.
start_registry_auth() {
  local port; port=$(free_port)
  printf '%s\n' 'ferry:$2y$05$yeIfixxHppfFWiZaD6LD2O2YkyHvIWQZtg9cqwIi1B2T73XdX2NkO' > "$work/$1.htpasswd"
  cat > "$work/$1.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/$1-data}}
http: {addr: 127.0.0.1:$port}
auth: {htpasswd: {realm: bench, path: $work/$1.htpasswd}}
YML
  docker-registry serve "$work/$1.yml" >"$work/$1.log" 2>&1 &
  echo $! >> "$work/pids"
  echo "$port"
}

# start_link NAME UPSTREAM_PORT RTT_MS MBIT: the link emulator
# (examples/link.rs, built by the caller) in front of a local port; prints
# its port. `link_stats NAME` then prints what went through it since the
# last call (JSON) and starts counting again.
start_link() {
  local port; port=$(free_port)
  target/release/examples/link --listen "127.0.0.1:$port" --upstream "127.0.0.1:$2" \
    --rtt-ms "$3" --mbit "$4" --stats "$work/$1.stats" >/dev/null 2>"$work/$1.log" &
  echo "$! $1" >> "$work/links"
  echo $! >> "$work/pids"
  echo "$port"
}
link_stats() {
  local pid; pid=$(awk -v n="$1" '$2 == n {print $1}' "$work/links")
  rm -f "$work/$1.stats"
  kill -USR1 "$pid"
  while [ ! -s "$work/$1.stats" ]; do sleep 0.05; done
  sleep 0.05
  cat "$work/$1.stats"
}
# wait_port PORT: until something listens there.
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

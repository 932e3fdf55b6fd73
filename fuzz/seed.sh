#!/usr/bin/env bash
# Fills fuzz/corpus/TARGET with starting inputs built from the repository:
# small real archives (plain, signed-free, split), the demo spec, the YAML
# corpus, and references from the fixtures. Run once before fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin ferry
ferry=target/debug/ferry
c=fuzz/corpus
mkdir -p "$c/archive" "$c/spec" "$c/rewrite" "$c/reference"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# A tiny archive: one small file.
mkdir -p "$tmp/f"; printf 'hello\n' > "$tmp/f/hello.txt"
printf 'name: tiny\nfiles:\n  - path: f/hello.txt\n' > "$tmp/tiny.yaml"
"$ferry" -q pack "$tmp/tiny.yaml" -o "$c/archive/tiny.tar" >/dev/null
"$ferry" -q pack fixtures/demo/ferry.yaml -o "$c/archive/demo.tar" >/dev/null

cp fixtures/demo/ferry.yaml "$c/spec/demo.yaml"
printf 'docker.io/library/nginx:1.27\nghcr.io/org/app@sha256:%064d\n# comment\n' 0 > "$c/spec/images.txt"
printf '{"name":"j","images":["nginx:1.27"],"platforms":["linux/amd64"]}\n' > "$c/spec/spec.json"

cp tests/corpus/*.yaml "$c/rewrite/"
for r in nginx nginx:1.27 docker.io/library/nginx:1.27 localhost:5000/a/b:c \
         "quay.io/x/y@sha256:$(printf '%064d' 0)" registry.k8s.io/pause:3.9 ; do
  printf '%s' "$r" > "$c/reference/$(printf '%s' "$r" | sha256sum | cut -c1-16)"
done
echo "seeded $c"

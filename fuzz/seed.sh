#!/usr/bin/env bash
# Fills fuzz/corpus/TARGET with starting inputs built from the repository:
# small real archives (plain, signed-free, split), the demo spec, the YAML
# corpus, and references from the fixtures. Run once before fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin ferry
ferry=target/debug/ferry
c=fuzz/corpus
mkdir -p "$c/archive" "$c/spec" "$c/rewrite" "$c/reference" "$c/oci" "$c/map" "$c/serve" "$c/plan"
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
# OCI documents: every manifest and index of the demo archive, each under
# each declared type (the first byte chooses it), and index.json.
python3 - "$c/archive/demo.tar" "$c/oci" <<'PY'
import hashlib, os, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(src) as t:
    for m in t.getmembers():
        data = t.extractfile(m).read()
        if not data.startswith(b'{') or len(data) > 65536:
            continue
        for sel in range(6):
            blob = bytes([sel]) + data
            open(os.path.join(dst, hashlib.sha256(blob).hexdigest()[:16]), 'wb').write(blob)
PY

# A map file, as load --map-out writes it.
printf '{"format":"ferry-map","format_version":1,"registry":"reg.local:5000","images":[{"source":"docker.io/library/nginx:1.27","target":"reg.local:5000/library/nginx","tag":"1.27","digest":"sha256:%064d"},{"source":"ghcr.io/org/app@sha256:%064d","target":"reg.local:5000/org/app","tag":null,"digest":"sha256:%064d","source_digest":"sha256:%064d"}]}\n' 0 1 1 2 > "$c/map/map.json"

# Requests serve answers, against the demo archive.
manifest=$(python3 -c 'import json,tarfile; t=tarfile.open("'"$c/archive/demo.tar"'"); i=json.load(t.extractfile("index.json")); print(i["manifests"][0]["digest"])')
n=0
for r in 'GET /v2/' 'GET /v2/_catalog?n=1' 'GET /v2/_catalog?n=0&last=a%2Fb' \
         'GET /v2/library/demo/tags/list?n=1&last=0' 'GET /v2/library/demo/manifests/1.0' \
         "HEAD /v2/library/demo/manifests/$manifest" \
         "GET /v2/library/demo/blobs/$manifest\nRange: bytes=0-9\nIf-Range: \"$manifest\"" \
         "GET /v2/library/demo/blobs/$manifest\nRange: bytes=-5" \
         "GET /v2/library/demo/manifests/1.0\nAccept: application/vnd.oci.image.index.v1+json" \
         'GET /charts/index.yaml' 'GET /charts/demo-chart-0.1.0.tgz\nRange: bytes=2-' \
         'GET /files/' 'HEAD /files/README.txt' 'GET /files/manifests\nRange: bytes=-10' \
         'GET /files/../bundle.json' ; do
  n=$((n + 1)); printf "$r" > "$c/serve/request-$n"
done

# Specs for the planner: the demo spec and variants.
cp fixtures/demo/ferry.yaml "$c/plan/demo.yaml"
printf 'name: p\nplatforms: [linux/arm64]\nimages:\n  - oci:layout:docker.io/library/demo:1.0\n' > "$c/plan/platform.yaml"
printf 'images:\n  - ref: oci:layout:registry.example.com/tools/hello:2.1\n    name: tools/hello:x\n    platforms: [linux/amd64]\ncharts:\n  - path: charts/demo-chart-0.1.0.tgz\n' > "$c/plan/entry.yaml"
echo "seeded $c"

#!/usr/bin/env bash
# Referrers benchmark: `ferry pack` of IMAGES images (default 20) from a
# local CNCF distribution registry, each with 3 referrers (a cosign `.sig`
# tag, a cosign `.att` tag, and an SPDX SBOM attached as an OCI 1.1
# referrer listed in the tag schema's fallback index, since distribution
# 2.8 has no referrers API), with referrer discovery on (the default) and
# off (--no-referrers). Cold cache each time, alternating, median of 3.
# Prints both times, the overhead in percent (target: < 25 %) and the
# requests discovery made.
# Usage: scripts/bench-referrers.sh [TOTAL_MIB=256] [IMAGES=20]
source "$(dirname "$0")/bench-common.sh" "${1:-256}" "${2:-20}"

port=$(start_registry registry)
sleep 1
printf 'images:\n' > "$work/spec.yaml"
for i in $(seq 0 $((images - 1))); do
  skopeo --insecure-policy copy -q --all --preserve-digests --dest-tls-verify=false \
    "oci:$out/src/layout:registry.example.com/bench/app$i:1.0" "docker://127.0.0.1:$port/bench/app$i:1.0"
  printf '  - 127.0.0.1:%s/bench/app%d:1.0\n' "$port" "$i" >> "$work/spec.yaml"
done

# Three referrers per image, pushed over the registry API.
python3 - "$port" "$images" <<'PY'
import hashlib, json, sys, urllib.request
port, images = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"
def req(method, path, body=b"", ctype=None, accept=None):
    r = urllib.request.Request(base + path, data=body if method in ("PUT", "POST") else None, method=method)
    if ctype: r.add_header("Content-Type", ctype)
    if accept: r.add_header("Accept", accept)
    return urllib.request.urlopen(r)
def digest(b): return "sha256:" + hashlib.sha256(b).hexdigest()
def blob(repo, b):
    loc = req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    loc = loc[loc.index("/v2/"):] if "/v2/" in loc else loc
    sep = "&" if "?" in loc else "?"
    req("PUT", f"{loc}{sep}digest={digest(b)}", b, "application/octet-stream")
def desc(mt, b): return {"mediaType": mt, "digest": digest(b), "size": len(b)}
def manifest(repo, ref, m, mt="application/vnd.oci.image.manifest.v1+json"):
    b = json.dumps(m).encode(); req("PUT", f"/v2/{repo}/manifests/{ref}", b, mt); return b
OCI_M = "application/vnd.oci.image.manifest.v1+json"
for i in range(images):
    repo = f"bench/app{i}"
    raw = req("GET", f"/v2/{repo}/manifests/1.0", accept="application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json").read()
    mt = json.loads(raw).get("mediaType", "application/vnd.oci.image.index.v1+json")
    d = digest(raw); hexd = d.split(":")[1]
    subject = {"mediaType": mt, "digest": d, "size": len(raw)}
    for suffix, lt in (("sig", "application/vnd.dev.cosign.simplesigning.v1+json"), ("att", "application/vnd.dsse.envelope.v1+json")):
        payload = json.dumps({"critical": {"image": {"docker-manifest-digest": d}, "type": "cosign container image signature"}, "n": i, "s": suffix}).encode()
        config = json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": [digest(payload)]}, "config": {}}).encode()
        blob(repo, payload); blob(repo, config)
        layer = desc(lt, payload); layer["annotations"] = {"dev.cosignproject.cosign/signature": "bench"}
        manifest(repo, f"sha256-{hexd}.{suffix}", {"schemaVersion": 2, "mediaType": OCI_M, "config": desc("application/vnd.oci.image.config.v1+json", config), "layers": [layer]})
    sbom = json.dumps({"spdxVersion": "SPDX-2.3", "name": repo, "packages": [{"name": f"p{k}"} for k in range(200)]}).encode()
    empty = b"{}"
    blob(repo, sbom); blob(repo, empty)
    m = manifest(repo, digest(json.dumps({"schemaVersion": 2, "mediaType": OCI_M, "artifactType": "application/spdx+json", "config": desc("application/vnd.oci.empty.v1+json", empty), "layers": [desc("application/spdx+json", sbom)], "subject": subject}).encode()),
                 {"schemaVersion": 2, "mediaType": OCI_M, "artifactType": "application/spdx+json", "config": desc("application/vnd.oci.empty.v1+json", empty), "layers": [desc("application/spdx+json", sbom)], "subject": subject})
    listed = desc(OCI_M, m); listed["artifactType"] = "application/spdx+json"
    manifest(repo, f"sha256-{hexd}", {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [listed]}, "application/vnd.oci.image.index.v1+json")
PY

run() { # run NAME ARGS… : seconds
  rm -rf "$work/cache-$1" "$work/$1.tar"
  sync
  local t0 t1; t0=$(now)
  "$ferry" --quiet pack "$work/spec.yaml" -o "$work/$1.tar" --cache "$work/cache-$1" --json "${@:2}" >"$work/$1.json"
  t1=$(now); echo "$t1 - $t0" | bc -l
}
median() { sort -g | sed -n 2p; }
on=""; off=""
for _ in 1 2 3; do
  off+="$(run off --no-referrers)"$'\n'
  on+="$(run on)"$'\n'
done
on_s=$(printf '%s' "$on" | median); off_s=$(printf '%s' "$off" | median)
python3 - "$work/on.json" "$images" "$on_s" "$off_s" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); images = int(sys.argv[2]); on, off = float(sys.argv[3]), float(sys.argv[4])
f = s["fetched"]
kinds = {}
for r in s.get("referrers", []): kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
print(f"{images} images, {len(s.get('referrers', []))} referrers carried {kinds}")
print(f"pack --no-referrers: {off:.2f} s")
print(f"pack (referrers):    {on:.2f} s")
print(f"overhead: {100 * (on - off) / off:.1f} % (target < 25 %)")
print(f"discovery: {f['referrer_probes']} probes (HEADs, API pages), {f['referrers']} referrers pulled")
PY

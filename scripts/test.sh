#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs the external
# programs the tests drive (the real CNCF distribution registry, skopeo,
# umoci, minisign, zstd) when they are missing, then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in docker-registry:docker-registry skopeo:skopeo umoci:umoci minisign:minisign tar:tar openssl:openssl zstd:zstd sha256sum:coreutils; do
  bin=${pair%%:*} pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing test dependencies: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

exec cargo test --locked "$@"

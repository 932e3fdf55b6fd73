#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs the external
# programs the tests drive (the real CNCF distribution registry, skopeo,
# umoci, minisign, zstd, containerd, podman, chromium, curl, and oras-py
# from pip) when they are missing, then checks what README promises
# (rustfmt, clippy with -D warnings, rustdoc with -D warnings,
# vendor/oci-client = upstream + ferry.patch) and runs `cargo test`.
# Any failing check fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in docker-registry:docker-registry skopeo:skopeo umoci:umoci minisign:minisign tar:tar openssl:openssl zstd:zstd sha256sum:coreutils containerd:containerd ctr:containerd podman:podman chromium:chromium curl:curl python3:python3; do
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

# oras-py (the pip package `oras`), the OCI client tests/oras.rs drives.
if ! python3 -c 'import oras.client' >/dev/null 2>&1; then
  echo "installing the pip package oras (oras-py) for tests/oras.rs" >&2
  python3 -m pip --version >/dev/null 2>&1 || {
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-pip
  }
  # A Debian python3 marks itself externally managed (PEP 668).
  python3 -m pip install --quiet oras ||
    python3 -m pip install --quiet --break-system-packages oras || {
    echo "cannot install the pip package oras (python3 -m pip install oras); tests/oras.rs needs it" >&2
    exit 1
  }
fi

# Known advisories against the locked dependencies, when cargo-deny is
# installed and can reach its advisory database (it cannot offline).
if command -v cargo-deny >/dev/null 2>&1; then
  if cargo deny check advisories; then :; else
    status=$?
    # 1: advisories found (fail); anything else: no database (say so).
    [ "$status" -eq 1 ] && exit 1
    echo "cargo deny could not check advisories (exit $status): no advisory database?" >&2
  fi
else
  echo "note: cargo-deny is not installed; advisories not checked (cargo install cargo-deny)" >&2
fi

for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 ||
    { echo "cargo ${component/rustfmt/fmt} is missing: rustup component add $component" >&2; exit 1; }
done
step() { echo "== $*" >&2; "$@"; }
step cargo fmt --all -- --check
step cargo clippy --locked --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" step cargo doc --locked --no-deps
step scripts/check-vendor.sh
exec cargo test --locked "$@"

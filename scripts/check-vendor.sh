#!/usr/bin/env bash
# Checks that vendor/oci-client is exactly the oci-client crate published on
# crates.io plus vendor/oci-client/ferry.patch, so the patch cannot drift
# away from the vendored sources without anyone noticing.
#
# It rebuilds the expected tree the way vendor/oci-client/FERRY-PATCH.md
# describes: take the published crate (the version the vendored Cargo.toml
# names), keep src/, LICENSE, README.md and Cargo.toml, trim Cargo.toml
# (no [[example]], [[test]], [[bench]] or dev-dependencies), apply
# ferry.patch from the crate root with `patch -p1`, then compares that tree
# with the vendor dir. Only FERRY-PATCH.md, ferry.patch and cargo's
# bookkeeping files are left out of the comparison.
#
# The crate comes through cargo (a throwaway project and `cargo fetch`),
# reusing the local cargo cache and index, offline first, and its archive is
# checked against the registry index's checksum before it is unpacked.
#
# Usage: scripts/check-vendor.sh [VENDOR_DIR]
#   VENDOR_DIR (argument or environment variable) defaults to
#   vendor/oci-client in this repository.
# Exit status: 0 the same; 1 a difference, or ferry.patch does not apply
# cleanly; 2 the check could not run (no registry, missing tool, ...).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
vendor=${1:-${VENDOR_DIR:-$repo/vendor/oci-client}}

die() { # status message...
  local status=$1
  shift
  echo "check-vendor: $*" >&2
  exit "$status"
}

[ -d "$vendor" ] || die 2 "no vendor dir at $vendor"
vendor=$(cd "$vendor" && pwd)
if [ "$vendor" = "$repo/vendor/oci-client" ]; then
  name=vendor/oci-client
else
  name=$vendor
fi
[ -f "$vendor/ferry.patch" ] || die 1 "$name has no ferry.patch"
[ -f "$vendor/Cargo.toml" ] || die 1 "$name has no Cargo.toml"

for tool in cargo tar patch diff awk; do
  command -v "$tool" >/dev/null 2>&1 || die 2 "needs $tool, which is not installed"
done
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  die 2 "needs sha256sum or shasum, neither is installed"
fi

# The upstream version is the one the vendored Cargo.toml names.
version=$(awk '
  /^\[/ { pkg = ($0 == "[package]") }
  pkg && /^version[ \t]*=/ { sub(/^[^"]*"/, ""); sub(/".*$/, ""); print; exit }
' "$vendor/Cargo.toml")
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] ||
  die 1 "cannot read the package version from $name/Cargo.toml (got '$version')"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-vendor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --- The published crate, through cargo --------------------------------------

probe=$tmp/probe
mkdir -p "$probe/src"
cat >"$probe/Cargo.toml" <<EOF
[package]
name = "ferry-check-vendor-probe"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
oci-client = { version = "=$version", default-features = false }
EOF
: >"$probe/src/lib.rs"
# ferry's lock file pins oci-client's dependencies to versions a ferry build
# has already downloaded, so a warm cache needs no network at all.
if [ -f "$repo/Cargo.lock" ]; then
  cp "$repo/Cargo.lock" "$probe/Cargo.lock"
fi

fetch_args=()
if host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p') && [ -n "$host" ]; then
  fetch_args=(--target "$host")
fi
fetch() {
  (cd "$probe" && CARGO_TARGET_DIR="$tmp/target" CARGO_TERM_COLOR=never \
    cargo fetch "$@" ${fetch_args[@]+"${fetch_args[@]}"}) >"$tmp/cargo.log" 2>&1
}
if ! fetch --offline && ! fetch; then
  tail -n 20 "$tmp/cargo.log" >&2
  die 2 "cargo could not fetch oci-client $version from crates.io (is the registry reachable?); cargo's output is above"
fi

checksum=$(awk -v want="$version" '
  /^\[\[package\]\]/ { name = ""; ver = ""; src = "" }
  /^name = /     { name = $3 }
  /^version = /  { ver = $3 }
  /^source = /   { src = $3 }
  /^checksum = / && name == "\"oci-client\"" && ver == "\"" want "\"" && src ~ /^"registry\+/ {
    gsub(/"/, "", $3); print $3; exit
  }
' "$probe/Cargo.lock")
[ -n "$checksum" ] || die 2 "cargo resolved no registry checksum for oci-client $version"

cargo_home=${CARGO_HOME:-$HOME/.cargo}
crate=
for f in "$cargo_home"/registry/cache/*/"oci-client-$version.crate"; do
  [ -f "$f" ] || continue
  if [ "$(sha256 "$f")" = "$checksum" ]; then
    crate=$f
    break
  fi
  echo "check-vendor: ignoring $f: its sha256 is not the index's $checksum" >&2
done
[ -n "$crate" ] ||
  die 2 "cargo fetched oci-client $version but no archive matching the index checksum is in $cargo_home/registry/cache"

mkdir "$tmp/upstream"
tar -xzf "$crate" -C "$tmp/upstream"
upstream=$tmp/upstream/oci-client-$version
[ -d "$upstream" ] || die 2 "$crate does not unpack to oci-client-$version/"

# --- The expected tree: the kept files, Cargo.toml trimmed, ferry.patch ------

cmp=$tmp/cmp
expected_dir=oci-client-$version+ferry.patch
vendor_dir="vendor-oci-client"
mkdir -p "$cmp/$expected_dir" "$cmp/$vendor_dir"
expected=$cmp/$expected_dir

for keep in src LICENSE README.md; do
  [ -e "$upstream/$keep" ] || die 2 "oci-client $version has no $keep"
  cp -R "$upstream/$keep" "$expected/"
done

# Drop the [[example]], [[test]] and [[bench]] targets and every
# dev-dependencies table (their header and key lines; the blank lines between
# tables stay), then the blank lines left at the end of the file.
awk '
  /^\[/ {
    drop = ($0 ~ /^\[\[(example|test|bench)\]\]$/ ||
            $0 ~ /^\[(target\..*\.)?dev-dependencies(\..*)?\]$/)
  }
  drop && NF { next }
  !NF { held = held $0 "\n"; next }
  { printf "%s", held; held = ""; print }
' "$upstream/Cargo.toml" >"$expected/Cargo.toml"

if ! patch_out=$(patch -d "$expected" -p1 --force --fuzz=0 --no-backup-if-mismatch \
  --reject-file=- -i "$vendor/ferry.patch" 2>&1); then
  printf '%s\n' "$patch_out" >&2
  die 1 "$name/ferry.patch does not apply cleanly to oci-client $version (trimmed as FERRY-PATCH.md says); output above"
fi
if grep -Eq 'offset|fuzz|Reversed|previously applied|malformed|Only garbage' <<<"$patch_out"; then
  printf '%s\n' "$patch_out" >&2
  die 1 "$name/ferry.patch applies to oci-client $version only with offsets or fuzz: regenerate it against the trimmed crate"
fi

# --- Compare -------------------------------------------------------------------

cp -R "$vendor/." "$cmp/$vendor_dir/"
for extra in FERRY-PATCH.md ferry.patch .cargo-ok .cargo_vcs_info.json Cargo.toml.orig .cargo-checksum.json; do
  rm -f "$cmp/$vendor_dir/$extra"
done

cd "$cmp"
if diff -rq "$expected_dir" "$vendor_dir" >"$tmp/summary" 2>&1; then
  echo "$name = oci-client $version + ferry.patch" >&2
  exit 0
fi

# The diff, at most $limit lines, without the temp files' timestamps.
limit=200
diff -ru "$expected_dir" "$vendor_dir" 2>&1 |
  sed -E '/^(---|\+\+\+) /s/\t[0-9]{4}-[0-9]{2}-[0-9]{2} .*$//' >"$tmp/diff" || true
head -n "$limit" "$tmp/diff" >&2
lines=$(wc -l <"$tmp/diff")
if [ "$lines" -gt "$limit" ]; then
  echo "... ($((lines - limit)) more lines of diff)" >&2
fi

files=$(awk -v e="$expected_dir/" -v v="$vendor_dir/" '
  function rel(p) {
    if (index(p, e) == 1) return substr(p, length(e) + 1)
    if (index(p, v) == 1) return substr(p, length(v) + 1)
    if (p == substr(e, 1, length(e) - 1) || p == substr(v, 1, length(v) - 1)) return ""
    return p
  }
  function join(d, f) { d = rel(d); return d == "" ? f : d "/" f }
  /^Files .* differ$/ { sub(/^Files /, ""); sub(/ and .*$/, ""); print rel($0); next }
  /^Only in / {
    sub(/^Only in /, ""); dir = $0; sub(/: .*$/, "", dir); f = $0; sub(/^[^:]*: /, "", f)
    where = (index(dir "/", v) == 1) ? " (only in the vendor dir)" : " (missing from the vendor dir)"
    print join(dir, f) where; next
  }
  { print }
' "$tmp/summary" | paste -sd, - | sed 's/,/, /g')
echo "check-vendor: $name is not oci-client $version + ferry.patch; it differs in: $files. Put the change into ferry.patch (or undo it) so the two agree." >&2
exit 1

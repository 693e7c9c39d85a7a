#!/usr/bin/env bash
# The static build that the image ships and CI tests: one musl binary with no
# dynamic loader and no libraries, stripped. deploy/Dockerfile's build stage
# runs exactly this script, so the image and CI cannot drift apart.
#
#   bash deploy/build-static.sh [OUT]   # default OUT: target/static/portwarden
#
# Needs: musl-tools (ring, through rustls, compiles C for the target with
# x86_64-linux-musl-gcc) and the Rust target; installed here when missing
# and we are root (as in the image's build stage and in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/static/portwarden}
target=x86_64-unknown-linux-musl

if ! command -v x86_64-linux-musl-gcc >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "build-static: needs musl-tools: sudo apt-get install -y musl-tools" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends musl-tools >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

# musl targets link statically (crt-static) by default; say so anyway.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --quiet --target "$target" --bin portwarden
mkdir -p "$(dirname "$out")"
strip -o "$out" "target/$target/release/portwarden"
# No interpreter, no needed libraries: it runs in an image holding nothing else.
if readelf -l "$out" | grep -q INTERP || readelf -d "$out" | grep -q NEEDED; then
  echo "build-static: $out is not static" >&2
  exit 1
fi
echo "$out"

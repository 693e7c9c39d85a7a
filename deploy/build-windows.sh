#!/usr/bin/env bash
# The Windows release: portwarden.exe cross-built for x86_64-pc-windows-gnu
# (Debian's mingw-w64 links it), zipped with the README, the Windows guide,
# the alerting rules and the dashboard. Prints the zip's path.
#
#   bash deploy/build-windows.sh [OUT]   # default OUT: target/dist/portwarden-<version>-windows-x86_64.zip
#
# Needs: gcc-mingw-w64-x86-64 (the linker, and ring's C) and the Rust
# target; installed here when missing and we are root (as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-pc-windows-gnu
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
out=${1:-target/dist/portwarden-$version-windows-x86_64.zip}

if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "build-windows: needs gcc-mingw-w64-x86-64: sudo apt-get install -y gcc-mingw-w64-x86-64" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends gcc-mingw-w64-x86-64 >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2

cargo build --release --locked --quiet --target "$target" --bin portwarden
exe="target/$target/release/portwarden.exe"
x86_64-w64-mingw32-strip -o "target/$target/release/portwarden-stripped.exe" "$exe"
mkdir -p "$(dirname "$out")"
python3 - "$out" "target/$target/release/portwarden-stripped.exe" <<'PY'
import sys, zipfile
out, exe = sys.argv[1], sys.argv[2]
files = [
    (exe, "portwarden/portwarden.exe"),
    ("README.md", "portwarden/README.md"),
    ("docs/windows.md", "portwarden/docs/windows.md"),
    ("deploy/prometheus/portwarden.rules.yml", "portwarden/prometheus/portwarden.rules.yml"),
    ("deploy/grafana/portwarden.json", "portwarden/grafana/portwarden.json"),
]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for src, name in files:
        z.write(src, name)
PY
echo "$out"

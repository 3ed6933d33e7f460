#!/bin/sh
# Installs the benchmark/interop anchor, node-llama-cpp (llama.cpp's Node binding), into
# <repo>/.anchors/node-llama-cpp/, outside the package's own dependency tree.
#
# Only the CPU prebuilt binary for this platform is installed: --omit=optional skips the
# ~600 MB of CUDA/Vulkan binaries that node-llama-cpp lists as optional, and
# --ignore-scripts skips its postinstall, which may try to download or compile llama.cpp.
# Re-running is a no-op once the pinned version is in place.
set -eu

VERSION=3.21.1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST="$ROOT/.anchors/node-llama-cpp"

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=mac ;;
  MINGW* | MSYS* | CYGWIN*) os=win ;;
  *) echo "anchors: unsupported OS $(uname -s)" >&2; exit 1 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  armv7l) arch=armv7l ;;
  riscv64) arch=riscv64 ;;
  *) echo "anchors: unsupported CPU $(uname -m)" >&2; exit 1 ;;
esac
# node-llama-cpp's prebuilt package for this platform (macOS on Apple silicon is "mac-arm64-metal").
platform="$os-$arch"
[ "$platform" = "mac-arm64" ] && platform="mac-arm64-metal"
BINARY="@node-llama-cpp/$platform"

installed_version() {
  node -e "try { process.stdout.write(require(process.argv[1]).version) } catch { }" "$DEST/node_modules/$1/package.json"
}

if [ "$(installed_version node-llama-cpp)" = "$VERSION" ] && [ "$(installed_version "$BINARY")" = "$VERSION" ]; then
  echo "anchors: node-llama-cpp@$VERSION ($BINARY) already installed in $DEST"
  exit 0
fi

mkdir -p "$DEST"
# A package.json of its own so npm installs here and never walks up to the repo's.
[ -f "$DEST/package.json" ] || echo '{ "name": "cxr-llava-anchors", "private": true }' > "$DEST/package.json"
cd "$DEST"
npm install --no-audit --no-fund --omit=optional --ignore-scripts --save-exact \
  "node-llama-cpp@$VERSION" "$BINARY@$VERSION"
echo "anchors: installed node-llama-cpp@$VERSION ($BINARY) in $DEST"

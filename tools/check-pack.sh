#!/usr/bin/env bash
# Installs the `npm pack` tarball into an empty folder with no compiler on PATH
# and runs the CLI there: proof that a user gets the prebuilt addon from
# prebuilds/ (node-gyp-build) and never needs node-gyp, make, a C++ compiler
# or Python.
#
#   npm run prebuild && tools/check-pack.sh
#
# CXR_PACK_TARBALL=<file.tgz> checks that tarball instead of packing this tree.
# Ends with "check-pack: ok" and status 0, or "check-pack: FAILED: <why>" and 1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "check-pack: FAILED: $*" >&2; exit 1; }

if [ -n "${CXR_PACK_TARBALL:-}" ]; then
  tarball=$(cd "$(dirname "$CXR_PACK_TARBALL")" && pwd)/$(basename "$CXR_PACK_TARBALL")
else
  compgen -G 'prebuilds/linux-x64/*.node' >/dev/null || fail "no prebuilds/linux-x64/*.node: run \`npm run prebuild\` first"
  name=$(npm pack --silent --pack-destination "$work" | tail -1)
  tarball=$work/$name
fi
[ -f "$tarball" ] || fail "$tarball: no such tarball"
listing=$(tar -tzf "$tarball")
grep -qE '^package/prebuilds/linux-x64/[^/]+\.node$' <<<"$listing" || fail "the tarball has no prebuilds/linux-x64/*.node"
grep -qx 'package/dist/bin/cxr-llava.js' <<<"$listing" || fail "the tarball has no dist/bin/cxr-llava.js"
echo "check-pack: $(basename "$tarball"), $(wc -l <<<"$listing") files"

# A PATH with node, npm, npx and a shell (npm runs install scripts through sh).
bin=$work/bin
mkdir "$bin"
for tool in node npm npx sh; do ln -s "$(command -v "$tool")" "$bin/$tool"; done
clean_env=(env -i HOME="$HOME" PATH="$bin" npm_config_cache="$(npm config get cache)" npm_config_update_notifier=false)
for tool in cc gcc c++ g++ clang make cmake python python3 node-gyp; do
  if "${clean_env[@]}" sh -c "command -v $tool" >/dev/null; then fail "$tool is on the test PATH"; fi
done

app=$work/app
mkdir "$app"
echo '{ "name": "cxr-llava-pack-check", "version": "1.0.0", "private": true }' >"$app/package.json"
# --prefer-offline: the dependencies come from npm's cache when they are there.
(cd "$app" && "${clean_env[@]}" npm install --no-audit --no-fund --prefer-offline --foreground-scripts "$tarball") ||
  fail "npm install of the tarball failed without a compiler"

want=$(node -p "require('$root/package.json').version")
got=$(cd "$app" && "${clean_env[@]}" npx --no-install cxr-llava --version) || fail "npx cxr-llava --version exited $?"
[ "$got" = "$want" ] || fail "npx cxr-llava --version printed '$got', expected '$want'"
echo "check-pack: npx cxr-llava --version -> $got"

# --version does not touch the addon; loading it proves the prebuilt binary works here.
simd=$(cd "$app" && "${clean_env[@]}" node -e "import('cxr-llava').then((m) => console.log(m.simdLevel()))") ||
  fail "the installed package could not load its native addon"
echo "check-pack: addon loaded from $(cd "$app" && ls node_modules/cxr-llava/prebuilds/linux-x64/), kernels: $simd"
[ ! -d "$app/node_modules/cxr-llava/build" ] || fail "the install compiled the addon (node_modules/cxr-llava/build exists)"
echo "check-pack: ok"

#!/bin/sh
# Installs the vision benchmark's anchor: Debian's PyTorch (python3-torch) with the
# pthread build of OpenBLAS. Without OpenBLAS, Debian's torch runs its matrix products
# on the reference BLAS, which is no anchor. Outside the package's dependencies; needs
# apt-get (root). Re-running is a no-op once both are present.
set -eu

have() {
  /usr/bin/python3 -c 'import torch' 2>/dev/null && dpkg -s libopenblas0-pthread >/dev/null 2>&1
}

if have; then
  echo "anchors: python3-torch and libopenblas0-pthread already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "anchors: apt-get not found; install PyTorch for /usr/bin/python3 with an OpenBLAS BLAS by hand" >&2
  exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y python3-torch libopenblas0-pthread
echo "anchors: installed python3-torch and libopenblas0-pthread"

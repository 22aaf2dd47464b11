#!/bin/sh
# Installs the Debian 12 packages libclipn needs to build and test. Idempotent.
# wordnet-base: NegLabel's word corpus; openmpi: clipn-mpi; librsvg2-bin: the ROC plot test.
# On an x86-64 host it also sets up `make test-arm`: Debian's aarch64 cross compiler,
# qemu-user, and the arm64 (multiarch) builds of the libraries, after adding the arm64
# architecture to dpkg if it is not there yet.
set -eu
PKGS="build-essential pkg-config libopenblas-dev libstb-dev check libcjson-dev zlib1g-dev
      libutf8proc-dev libjpeg62-turbo-dev python3 python3-torch python3-numpy python3-pil
      python3-torchvision python3-sklearn python3-scipy
      wordnet-base openmpi-bin libopenmpi-dev librsvg2-bin"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if [ "$(dpkg --print-architecture)" != arm64 ]; then
    PKGS="$PKGS gcc-aarch64-linux-gnu qemu-user libc6:arm64 libc6-dev:arm64
          libopenblas-dev:arm64 check:arm64 libcjson-dev:arm64 zlib1g-dev:arm64
          libutf8proc-dev:arm64 libjpeg62-turbo-dev:arm64"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        $SUDO dpkg --add-architecture arm64
    fi
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
echo "install-deps: all packages present"

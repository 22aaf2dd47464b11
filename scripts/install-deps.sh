#!/bin/sh
# Installs the Debian 12 packages libclipn needs to build and test. Idempotent.
set -eu
PKGS="build-essential pkg-config libopenblas-dev libstb-dev check libcjson-dev zlib1g-dev
      libutf8proc-dev libjpeg62-turbo-dev python3 python3-torch python3-numpy python3-pil
      python3-torchvision python3-sklearn python3-scipy"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
echo "install-deps: all packages present"

#!/usr/bin/env bash
# Install the Debian packages the build and the tests need, when missing.
set -euo pipefail

pkgs="nginx nginx-dev libyajl-dev libhiredis-dev libcurl4-openssl-dev libwslay-dev redis-server pkg-config perl curl openssl ${WEBHOOK_SSE_EXTRA_PKGS:-}"
missing=""

for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
         | grep -q "install ok installed"
    then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages:$missing (run as root)" >&2
    exit 1
fi

echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing > /dev/null

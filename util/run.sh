#!/usr/bin/env bash
# Run nginx in the foreground with conf/nginx.conf, prefix = the repository.
# Ctrl-C stops it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
conf=${1:-conf/nginx.conf}

# started as root, nginx's workers would run as nobody, who may not read a
# checkout under /root: keep them as the user who runs this
globals='daemon off;'
if [ "$(id -u)" = 0 ]; then
    globals="$globals user root;"
fi

mkdir -p "$repo/run/tmp"
/usr/sbin/nginx -p "$repo/" -c "$conf" -g "$globals" -t -q
echo "run: nginx on http://127.0.0.1:8080/ (Ctrl-C stops it)"
exec /usr/sbin/nginx -p "$repo/" -c "$conf" -g "$globals"

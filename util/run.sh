#!/usr/bin/env bash
# Run nginx in the foreground with conf/nginx.conf, prefix = the repository.
# Ctrl-C stops it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
conf=${1:-conf/nginx.conf}

mkdir -p "$repo/run/tmp"
/usr/sbin/nginx -p "$repo/" -c "$conf" -t -q
echo "run: nginx on http://127.0.0.1:8080/ (Ctrl-C stops it)"
exec /usr/sbin/nginx -p "$repo/" -c "$conf" -g 'daemon off;'

#!/usr/bin/env bash
# Builds the soak driver (util/soak/soak.c, libc only) into build/soak/soak
# unless it is up to date, and prints its path.  No Makefile: one compiler
# call, written to a temporary name and renamed, so tests running in
# parallel may call it at the same time.
#
#   util/soak/build.sh            -> build/soak/soak
#   SOAK_BIN=/tmp/soak util/soak/build.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
src=$repo/util/soak/soak.c
bin=${SOAK_BIN:-$repo/build/soak/soak}

if [ -x "$bin" ] && [ "$bin" -nt "$src" ]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$(dirname "$bin")"
tmp=$(mktemp "$bin.XXXXXX")
trap 'rm -f "$tmp"' EXIT

# never the sanitizer flags of the module's build: the driver is not
# under test, and must keep its pace
${SOAK_CC:-cc} -O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Werror \
    -o "$tmp" "$src"
chmod 755 "$tmp"
mv -f "$tmp" "$bin"
trap - EXIT

echo "$bin"

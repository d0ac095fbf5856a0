#!/usr/bin/env bash
# Build build/ngx_http_webhook_sse_module.so against Debian's packaged nginx
# (nginx-dev), binary compatible through --with-compat.
# WEBHOOK_SSE_CC_OPT replaces the cc options, WEBHOOK_SSE_BUILDDIR the build
# directory (default <repo>/build), e.g. for the ASan copy (util/test-asan.sh).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
src=/usr/share/nginx/src
build=${WEBHOOK_SSE_BUILDDIR:-$repo/build}
case $build in /*) ;; *) build=$PWD/$build ;; esac
cc_opt=${WEBHOOK_SSE_CC_OPT:--g -O2 -fPIC -Wall -Werror}

if [ ! -x "$src/configure" ]; then
    echo "build: $src/configure not found; run 'make deps' (nginx-dev)" >&2
    exit 1
fi

# shellcheck disable=SC1091
. "$src/conf_flags"

stamp="$build/.configured"
want="$cc_opt $(cat "$repo/config" | md5sum | cut -d' ' -f1)"

if [ ! -f "$build/Makefile" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]
then
    rm -rf "$build"
    mkdir -p "$build"
    (cd "$src" && ./configure "${NGX_CONF_FLAGS[@]}" \
        --with-cc-opt="$cc_opt" \
        --add-dynamic-module="$repo" \
        --builddir="$build" > "$build/configure.log" 2>&1) || {
        tail -30 "$build/configure.log" >&2
        exit 1
    }
    echo "$want" > "$stamp"
fi

make -s -f "$build/Makefile" -C "$src" modules
echo "build: $build/ngx_http_webhook_sse_module.so"

#!/usr/bin/env bash
# Build ngx_http_webhook_sse_module.so, binary compatible with an nginx
# through --with-compat.
#
# Default: against Debian's packaged nginx (nginx-dev: its sources in
# /usr/share/nginx/src and the packaged nginx's configure flags) into
# build/ (<repo>/build).
#
# NGINX_SRC=/path/to/nginx-1.x.y: against that nginx source tree (an
# nginx.org release, or the one your nginx was built from), configured
# with --with-compat only, plus NGINX_CONFIGURE_ARGS if given, into
# build/nginx-1.x.y/.  The nginx that loads the module must be the same
# version and must itself have been configured --with-compat
# (docs/install.md).
#
# WEBHOOK_SSE_CC_OPT replaces the cc options, WEBHOOK_SSE_BUILDDIR the build
# directory, e.g. for the ASan copy (util/test-asan.sh) or the Debian
# package (debian/rules).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cc_opt=${WEBHOOK_SSE_CC_OPT:--g -O2 -fPIC -Wall -Werror}
ld_opt=${WEBHOOK_SSE_LD_OPT:-}

if [ -n "${NGINX_SRC:-}" ]; then
    src=$(cd "$NGINX_SRC" && pwd)
    if [ ! -x "$src/configure" ] || [ ! -f "$src/src/core/nginx.h" ]; then
        echo "build: NGINX_SRC=$NGINX_SRC is not an nginx source tree" \
             "(no configure, src/core/nginx.h)" >&2
        exit 1
    fi
    version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"$/\1/p' \
                  "$src/src/core/nginx.h")
    # shellcheck disable=SC2206
    flags=(--with-compat ${NGINX_CONFIGURE_ARGS:-})
    build=${WEBHOOK_SSE_BUILDDIR:-$repo/build/nginx-$version}
else
    src=/usr/share/nginx/src
    if [ ! -x "$src/configure" ]; then
        echo "build: $src/configure not found; run 'make deps' (nginx-dev)" >&2
        exit 1
    fi
    # shellcheck disable=SC1091
    . "$src/conf_flags"
    flags=("${NGX_CONF_FLAGS[@]}")
    build=${WEBHOOK_SSE_BUILDDIR:-$repo/build}
fi

case $build in /*) ;; *) build=$PWD/$build ;; esac

stamp="$build/.configured"
want="$src ${flags[*]} $cc_opt $ld_opt"
want="$want $(cat "$repo/config" "$repo/VERSION" | md5sum | cut -d' ' -f1)"

if [ ! -f "$build/Makefile" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]
then
    rm -rf "$build"
    mkdir -p "$build"
    (cd "$src" && ./configure "${flags[@]}" \
        --with-cc-opt="$cc_opt" \
        ${ld_opt:+--with-ld-opt="$ld_opt"} \
        --add-dynamic-module="$repo" \
        --builddir="$build" > "$build/configure.log" 2>&1) || {
        tail -30 "$build/configure.log" >&2
        exit 1
    }
    echo "$want" > "$stamp"
fi

make -s -f "$build/Makefile" -C "$src" modules
so=$build/ngx_http_webhook_sse_module.so
built=$(LC_ALL=C grep -aoE -m1 \
            'webhook-sse/[0-9A-Za-z.+~-]+ \(built for nginx/[0-9.]+\)' "$so")
signature=$(LC_ALL=C grep -aoE -m1 '[0-9]+,[0-9]+,[0-9]+,[01]{20,}' "$so")
echo "build: $so: $built, module signature $signature"

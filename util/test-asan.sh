#!/usr/bin/env bash
# make test-asan: builds a second copy of the module with AddressSanitizer
# (build/asan/), runs the t/ suite (or the tests given as arguments) with it,
# and fails when any ASan report was written, printing them.
#
# The packaged /usr/sbin/nginx is not instrumented: the harness starts it
# with LD_PRELOAD=libasan.so so the instrumented module can be loaded, and
# with ASAN_OPTIONS log_path=build/asan/reports/<servroot>.asan, so reports
# from daemonized workers land in files (t/lib/WebhookSSE/Test.pm fails the
# server's test when one appears; this script checks the whole directory
# again at the end).  detect_leaks=0: nginx never frees its pools and
# cycles at exit, by design, so LeakSanitizer would only report those.
# fast_unwind_*=0: the packaged nginx has no frame pointers, the fast
# unwinder would print empty stacks.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

build=${WEBHOOK_SSE_ASAN_BUILDDIR:-$repo/build/asan}
case $build in /*) ;; *) build=$repo/$build ;; esac
module=$build/ngx_http_webhook_sse_module.so
reports=$build/reports

WEBHOOK_SSE_BUILDDIR=$build \
WEBHOOK_SSE_CC_OPT="-g -O1 -fsanitize=address -fno-omit-frame-pointer -fPIC -Wall -Werror" \
    util/build.sh

lib=$(readlink -f "$(${CC:-gcc} -print-file-name=libasan.so)")
if [ ! -f "$lib" ]; then
    echo "test-asan: libasan not found ($lib); install libasan8 (gcc 12)" >&2
    exit 1
fi

# a run that cannot see a bug is worse than none: make sure the module is
# instrumented and the runtime really gets into the packaged nginx
if ! grep -q '__asan_report' <<< "$(nm -D "$module")"; then
    echo "test-asan: $module is not instrumented" >&2
    exit 1
fi
probe=$(LD_PRELOAD=$lib ASAN_OPTIONS=help=1 /usr/sbin/nginx -v 2>&1 || true)
if ! grep -q 'AddressSanitizer' <<< "$probe"; then
    echo "test-asan: LD_PRELOAD=$lib does not load ASan into nginx" >&2
    exit 1
fi

rm -rf "$reports"
mkdir -p "$reports"

export TEST_WEBHOOK_SSE_MODULE=$module
export TEST_WEBHOOK_SSE_ASAN_DIR=$reports
export TEST_WEBHOOK_SSE_ASAN_PRELOAD=$lib
export TEST_WEBHOOK_SSE_ASAN_OPTIONS=${WEBHOOK_SSE_ASAN_OPTIONS:-detect_leaks=0:fast_unwind_on_fatal=0:fast_unwind_on_malloc=0}

echo "test-asan: module $module"
echo "test-asan: LD_PRELOAD=$lib ASAN_OPTIONS=$TEST_WEBHOOK_SSE_ASAN_OPTIONS"

start=$(date +%s)
rc=0
if [ $# -gt 0 ]; then
    prove "$@" || rc=$?
else
    prove -r t || rc=$?
fi
echo "test-asan: prove took $(( $(date +%s) - start )) s"

found=$(find "$reports" -type f | sort)
if [ -n "$found" ]; then
    echo "test-asan: AddressSanitizer reports:" >&2
    for f in $found; do
        echo "==== $f" >&2
        cat "$f" >&2
    done
    echo "test-asan: FAIL: $(echo "$found" | wc -l) ASan report(s)" \
         "in $reports" >&2
    exit 1
fi

if [ "$rc" != 0 ]; then
    echo "test-asan: FAIL: prove failed (rc $rc), no ASan reports" >&2
    exit "$rc"
fi

echo "test-asan: PASS, no AddressSanitizer reports"

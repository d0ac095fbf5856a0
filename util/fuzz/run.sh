#!/bin/sh

# Builds the libFuzzer harness of the pure JSON logic into build/fuzz/ and
# runs it.  FUZZ_TIME: seconds to run (default 120); FUZZ_JOBS: fuzzing
# processes in libFuzzer's fork mode (default 1); extra arguments go to
# libFuzzer.
# New inputs collect in build/fuzz/corpus, crashes in build/fuzz/crash-*.
# FUZZ_COVERAGE=1: no fuzzing; runs both corpora once through a build with
# source coverage and prints llvm-cov's report of the JSON code.

set -e

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

CC=${FUZZ_CC:-clang}
FUZZ_TIME=${FUZZ_TIME:-120}
FUZZ_JOBS=${FUZZ_JOBS:-1}
out=build/fuzz

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "util/fuzz/run.sh: $CC not found (apt-get install clang)" >&2
    exit 1
fi

yajl=$(pkg-config --cflags --libs yajl 2>/dev/null || echo -lyajl)

mkdir -p "$out/corpus"

# shellcheck disable=SC2086
"$CC" -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Werror -Isrc -It/unit \
    -o "$out/json_fuzz" \
    util/fuzz/json_fuzz.c src/ngx_http_webhook_sse_json.c $yajl

if [ -n "$FUZZ_COVERAGE" ]; then
    # shellcheck disable=SC2086
    "$CC" -g -O0 -fsanitize=fuzzer -fprofile-instr-generate \
        -fcoverage-mapping -Isrc -It/unit -o "$out/json_fuzz_cov" \
        util/fuzz/json_fuzz.c src/ngx_http_webhook_sse_json.c $yajl

    rm -f "$out"/cov.profraw
    LLVM_PROFILE_FILE="$out/cov.profraw" "$out/json_fuzz_cov" -runs=0 \
        "$out/corpus" util/fuzz/corpus >/dev/null 2>&1

    llvm-profdata merge -sparse -o "$out/cov.profdata" "$out/cov.profraw"
    exec llvm-cov report "$out/json_fuzz_cov" \
        -instr-profile="$out/cov.profdata" src/ngx_http_webhook_sse_json.c
fi

echo "util/fuzz/run.sh: built $out/json_fuzz, fuzzing for ${FUZZ_TIME}s"

if [ "$FUZZ_JOBS" -gt 1 ]; then
    set -- -fork="$FUZZ_JOBS" "$@"
fi

exec "$out/json_fuzz" \
    -max_total_time="$FUZZ_TIME" \
    -dict=util/fuzz/json.dict \
    -max_len=4096 \
    -timeout=10 \
    -print_final_stats=1 \
    -artifact_prefix="$out/" \
    "$@" \
    "$out/corpus" util/fuzz/corpus

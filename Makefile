# nginx-webhook-sse: build, run and test on Debian 12 (run as root for the
# package installs).

MODULE = build/ngx_http_webhook_sse_module.so

.PHONY: all build deps run test test-asan bench fuzz clean

all: build

deps:
	@util/deps.sh

build: deps
	@util/build.sh

run: build
	@util/run.sh

test: build
	prove -r t

# the module and the t/ suite under AddressSanitizer (build/asan/)
test-asan: deps
	@util/test-asan.sh

# libFuzzer on the JSON code (clang; FUZZ_TIME seconds, default 120)
fuzz:
	@WEBHOOK_SSE_EXTRA_PKGS="clang libyajl-dev" util/deps.sh
	@util/fuzz/run.sh

# builds util/sse-bench, runs our module and nchan side by side (needs
# wrk and libnginx-mod-nchan; BENCH_QUICK=1 for a one-minute smoke run)
bench: build
	@WEBHOOK_SSE_EXTRA_PKGS="wrk libnginx-mod-nchan" util/deps.sh
	@util/bench

clean:
	rm -rf build run t/servroot*

# nginx-webhook-sse: build, run and test on Debian 12 (run as root for the
# package installs).

MODULE = build/ngx_http_webhook_sse_module.so

.PHONY: all build deps run test test-asan test-repeat test-browser bench fuzz \
        clean

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

# the suite N times in a row (default 20), a CPU hog (stress-ng) on every
# core in half of the runs (HOG=half|all|none), ASAN=1 under
# util/test-asan.sh, TESTS="t/a.t .." only those; prints the runs and the
# failures per test file
test-repeat: build
	@WEBHOOK_SSE_EXTRA_PKGS=stress-ng util/deps.sh
	@N=$(or $(N),20) util/test-repeat.sh $(TESTS)

# the demo page (conf/html) in headless Debian Chromium, driven by
# playwright-core (t/browser); nodejs and npm from Debian only where no npm
# is on the machine (a NodeSource nodejs carries its own npm)
test-browser: build
	@pkgs=chromium; command -v npm > /dev/null || pkgs="$$pkgs nodejs npm"; \
	    WEBHOOK_SSE_EXTRA_PKGS="$$pkgs" util/deps.sh
	cd t/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
	    npm ci --no-audit --no-fund --loglevel=error
	cd t/browser && node --test --test-concurrency=1 demo.test.js

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

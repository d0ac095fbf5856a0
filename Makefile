# nginx-webhook-sse: build, run and test on Debian 12 (run as root for the
# package installs).

MODULE = build/ngx_http_webhook_sse_module.so

.PHONY: all build deps receivers run test test-asan test-repeat test-browser \
	test-clients test-deb deb bench fuzz clean

all: build

deps:
	@util/deps.sh

build: deps
	@util/build.sh

run: build
	@util/run.sh

# what only the tests need: promtool (t/status.t checks the metrics)
TEST_PKGS = prometheus

test: build receivers test-clients
	@WEBHOOK_SSE_EXTRA_PKGS="$(TEST_PKGS)" util/deps.sh
	prove -r t

# the receivers of outbound deliveries the tests start: Flask (Debian
# python3-flask) and Express with standardwebhooks (npm, t/receivers)
receivers:
	@pkgs=python3-flask; command -v npm > /dev/null || pkgs="$$pkgs nodejs npm"; \
	    WEBHOOK_SSE_EXTRA_PKGS="$$pkgs" util/deps.sh
	cd t/receivers && npm ci --no-audit --no-fund --loglevel=error

# the module and the t/ suite under AddressSanitizer (build/asan/)
test-asan: deps receivers test-clients
	@WEBHOOK_SSE_EXTRA_PKGS="$(TEST_PKGS)" util/deps.sh
	@util/test-asan.sh

# the real clients the Perl tests drive (t/clients: the npm ws WebSocket
# client); nodejs and npm from Debian only where no npm is on the machine
test-clients:
	@command -v npm > /dev/null || \
	    WEBHOOK_SSE_EXTRA_PKGS="nodejs npm" util/deps.sh
	cd t/clients && npm ci --no-audit --no-fund --loglevel=error

# the suite N times in a row (default 20), a CPU hog (stress-ng) on every
# core in half of the runs (HOG=half|all|none), ASAN=1 under
# util/test-asan.sh, TESTS="t/a.t .." only those; prints the runs and the
# failures per test file
test-repeat: build receivers test-clients
	@WEBHOOK_SSE_EXTRA_PKGS="$(TEST_PKGS) stress-ng" util/deps.sh
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

# the Debian package build/deb/libnginx-mod-http-webhook-sse_<version>_<arch>.deb
# (debian/, dpkg-buildpackage), checked by lintian
DEB_PKGS = dpkg-dev debhelper fakeroot lintian binutils

deb:
	@WEBHOOK_SSE_EXTRA_PKGS="$(DEB_PKGS)" util/deps.sh
	@util/deb.sh

# builds the package, installs it into this machine's nginx, runs it on a
# loopback port, purges it (docs/install.md); also an NGINX_SRC build
test-deb: deb
	@util/test-deb.sh

# libFuzzer on the JSON code (clang; FUZZ_TIME seconds, default 120)
fuzz:
	@WEBHOOK_SSE_EXTRA_PKGS="clang libyajl-dev" util/deps.sh
	@util/fuzz/run.sh

# builds util/sse-bench and util/floor, runs our module, nchan, bare nginx
# and the floor server side by side (needs wrk, libnginx-mod-nchan,
# libyajl-dev; linux-perf for BENCH_PERF=1; BENCH_QUICK=1 for a smoke run);
# then outbound, two hosts on Redis, and the publish path's instructions
# under callgrind (valgrind)
bench: build
	@WEBHOOK_SSE_EXTRA_PKGS="wrk libnginx-mod-nchan libyajl-dev linux-perf valgrind" util/deps.sh
	@util/bench
	@util/bench-instructions
	@util/bench-forward
	@util/bench-cluster

clean:
	rm -rf build run t/servroot*

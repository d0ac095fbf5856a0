# nginx-webhook-sse: build, run and test on Debian 12 (run as root for the
# package installs).

MODULE = build/ngx_http_webhook_sse_module.so

.PHONY: all build deps run test clean

all: build

deps:
	@util/deps.sh

build: deps
	@util/build.sh

run: build
	@util/run.sh

test: build
	prove -r t

clean:
	rm -rf build run t/servroot*

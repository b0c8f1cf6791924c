# acv — common tasks. `make demo` runs the main job, `make test` runs every test (needs RabbitMQ and NATS on
# 127.0.0.1, see README). CARGO_TARGET_DIR is shared with CI so repeat builds are fast.
COMPONENTIZE_PY_VERSION ?= 0.25.1
CARGO_TARGET_DIR ?= /var/tmp/acv-target
export CARGO_TARGET_DIR
CARGO ?= cargo
TRANSPORT ?= amqp

.PHONY: all build demo test bench guest lint fmt check-fmt clippy ci

all: build

build:
	$(CARGO) build --workspace --bins

## guest: build the sandbox's Python guest component (filled by the sandbox work; no-op until then)
guest:
	@if [ -f sandbox/guest/Makefile ]; then $(MAKE) -C sandbox/guest COMPONENTIZE_PY_VERSION=$(COMPONENTIZE_PY_VERSION); fi

## test: unit + integration tests, including the bus suite against real RabbitMQ and NATS
test: guest
	$(CARGO) test --workspace --locked

## demo: manager -> bus -> sidecar -> bus -> manager on TRANSPORT (memory|amqp|nats)
demo:
	$(CARGO) build --locked -p acv-sidecar -p acv-manager
	TRANSPORT=$(TRANSPORT) BIN_DIR=$(CARGO_TARGET_DIR)/debug scripts/demo.sh

## bench: print round-trip latency and throughput per transport (and the other benches as they land)
bench: guest
	$(CARGO) bench --workspace --locked

fmt:
	$(CARGO) fmt --all

check-fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: check-fmt clippy

ci: lint test

# acv — common tasks. `make demo` runs the main job, `make test` runs every test (installs and starts RabbitMQ and
# NATS on 127.0.0.1 when missing: scripts/brokers.sh). CARGO_TARGET_DIR is shared with CI so repeat builds are fast.
COMPONENTIZE_PY_VERSION ?= 0.25.1
CARGO_TARGET_DIR ?= /var/tmp/acv-target
export CARGO_TARGET_DIR
CARGO ?= cargo
# Empty: amqp if RabbitMQ answers, else nats if NATS answers, else everything in one process on the in-memory bus.
TRANSPORT ?=

.PHONY: all build demo demo-local all-in-one brokers broker-users test bench bench-mitigation footprint guest lint fmt check-fmt clippy ci certs experiments

all: build

build:
	$(CARGO) build --workspace --bins

## guest: build the sandbox's Python guest component (componentize-py; cached in sandbox/guest/build)
guest:
	@python3 -m pip show componentize-py 2>/dev/null | grep -q '^Version: $(COMPONENTIZE_PY_VERSION)$$' || \
	  python3 -m pip install --quiet 'componentize-py==$(COMPONENTIZE_PY_VERSION)'
	$(MAKE) -C sandbox/guest COMPONENTIZE_PY_VERSION=$(COMPONENTIZE_PY_VERSION)

## brokers: install (Debian packages) and start RabbitMQ and NATS when they do not answer; quick when they do
brokers:
	scripts/brokers.sh

## broker-users: per-agent RabbitMQ users/permissions and a NATS users config (docs/security.md; NAMESPACE=...)
broker-users:
	BROKER_USERS_BIN="$(CARGO) run -q --locked -p acv-bus --bin acv-broker-users --" scripts/broker-users.sh

## test: unit + integration tests, including the bus suite against real RabbitMQ and NATS
test: guest brokers
	$(CARGO) test --workspace --locked

## demo: the shop on the local runtime, a sidecar maintaining catalogue, tasks over TRANSPORT (amqp|nats|memory;
## default: a broker that answers, else all in one process on the in-memory bus)
demo: guest
	$(CARGO) build --locked -p acv-sidecar -p acv-manager -p acv-e2e --bins
	TRANSPORT=$(TRANSPORT) BIN_DIR=$(CARGO_TARGET_DIR)/debug scripts/demo.sh

## demo-local: only the testbed shop on the local runtime (control API on 127.0.0.1:7070), until Ctrl-C
demo-local:
	$(CARGO) build --locked -p acv-e2e --bins
	$(CARGO_TARGET_DIR)/debug/acv-local e2e/shop.yaml

## all-in-one: the shop, the manager and a sidecar per service in one process on the in-memory bus, until Ctrl-C
all-in-one: guest
	$(CARGO) build --locked -p acv-e2e --bins
	$(CARGO_TARGET_DIR)/debug/acv-all-in-one e2e/shop.yaml --guest sandbox/guest/build/acv-guest.wasm

## experiments: the paper's L1-L5 evaluation on every case of e2e/cases (15 dataset scenarios + 4 manager tasks) with
## the agent, no agent and the classic baselines, scored by measurement, into results/<run>/ (results.json, summary.md,
## timeline-*.svg). PLANNER=rules|llm|none, RUNS=3; QUICK=1 runs each case once; EXPERIMENT_ARGS passes more options
## (e.g. --only restart,pod_failure or --acv-dataset ../shared/acv-dataset). See docs/experiments.md.
PLANNER ?= rules
RUNS ?= 3
QUICK ?=
EXPERIMENT_ARGS ?=
experiments: guest
	$(CARGO) build --locked -p acv-e2e --bins
	$(CARGO_TARGET_DIR)/debug/acv-experiment --guest sandbox/guest/build/acv-guest.wasm --planner $(PLANNER) \
	  $(if $(QUICK),--quick,--runs $(RUNS)) $(EXPERIMENT_ARGS)

## bench: print round-trip latency and throughput per transport (and the other benches as they land)
bench: guest
	$(CARGO) bench --workspace --locked
	$(MAKE) footprint
	$(MAKE) bench-mitigation

## bench-mitigation: time-to-detect and time-to-mitigate per fault on the local shop (e2e/tests/mitigation.rs)
bench-mitigation: guest
	CARGO=$(CARGO) scripts/bench-mitigation.sh

## footprint: resident memory of a release acv-sidecar idle, after a task and after its sandbox was released (NATS)
footprint: guest
	$(CARGO) build --locked --release -p acv-sidecar
	$(CARGO) build --locked -p acv-manager -p acv-e2e --bins
	SIDECAR_BIN=$(CARGO_TARGET_DIR)/release/acv-sidecar BIN_DIR=$(CARGO_TARGET_DIR)/debug scripts/footprint.sh

## certs: development CA + peer certificates for the shop's components in ./certs (COMPONENTS=..., NAMESPACE=...)
COMPONENTS ?= front-end catalogue carts orders payment shipping user
NAMESPACE ?= default
certs:
	$(CARGO) run --locked -p acv-pki --bin acv-certs -- --dir certs --namespace $(NAMESPACE) $(COMPONENTS)

fmt:
	$(CARGO) fmt --all

check-fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: check-fmt clippy

ci: lint test

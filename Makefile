# Herald: the two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test bench bench-emergency bench-sla bench-trail bench-cluster lint fmt build deps clean

## Start the whole system on this machine and send a first notification.
run:
	@deploy/local/run.sh

## Install what the tests need, then run every test.
test: deps
	$(CARGO) test --workspace --no-fail-fast

## The property tests of everything a stranger can send Herald (each
## crate's tests/fuzz_*.rs), with far more cases than `make test` gives them.
FUZZ_CASES ?= 100000
.PHONY: fuzz
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --workspace --test 'fuzz_*'

## End-to-end throughput and latency against a raw JetStream baseline, then
## the emergency lane under a flood (bench-emergency) and the SLA clocks
## (bench-sla).
bench: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p herald-testkit --bin herald-bench -- $(BENCH_ARGS)
	$(CARGO) run --release -p herald-testkit --bin herald-bench -- --shipped-defaults 1 $(BENCH_ARGS)
	$(CARGO) run --release -p herald-testkit --bin herald-bench-emergency -- $(BENCH_EMERGENCY_ARGS)
	$(CARGO) run --release -p herald-testkit --bin herald-bench-sla -- $(BENCH_SLA_ARGS)
	$(CARGO) run --release -p herald-testkit --bin herald-bench-trail -- $(BENCH_TRAIL_ARGS)

## A broadcast to 1,000 people on an idle system and under a backlog of
## 100,000+ ordinary notifications: p50/p99/last, and the ratio.
bench-emergency: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p herald-testkit --bin herald-bench-emergency -- $(BENCH_EMERGENCY_ARGS)

## How late breaches fire with a million clocks pending, and their memory.
bench-sla: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p herald-testkit --bin herald-bench-sla -- $(BENCH_SLA_ARGS)

## A client's year of history out of a million audit records.
bench-trail: deps
	$(CARGO) run --release -p herald-testkit --bin herald-bench-trail -- $(BENCH_TRAIL_ARGS)

## Herald on a three-server NATS cluster: throughput and p99 with one and
## two processes of each service on R1 and R3 streams, and the longest
## time with no arrival while the delivery stream's leader is SIGKILLed.
bench-cluster: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p herald-testkit --bin herald-bench-cluster -- $(BENCH_CLUSTER_ARGS)

## Formatting, clippy and unused dependencies, as CI checks them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@command -v cargo-machete >/dev/null || $(CARGO) install --locked cargo-machete
	cargo machete

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --workspace --bins

deps:
	@deploy/local/deps.sh

clean:
	rm -rf run
	$(CARGO) clean

# pgwarden — the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Where cargo puts binaries (honours CARGO_TARGET_DIR).
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
# The pgwarden binary `make bench` measures: the profile-guided build (`make build-pgo`, made
# first), the one to deploy; BENCH_PGO=0 measures the usual release build instead, and
# BENCH_PGWARDEN=path any binary (nothing is built for it).
BENCH_PGO ?= 1
ifdef BENCH_PGWARDEN
bench_bin := $(BENCH_PGWARDEN)
bench_build := true
else ifeq ($(BENCH_PGO),0)
bench_bin := $(TARGET_DIR)/release/pgwarden
bench_build := $(CARGO) build --quiet --release -p pgwarden --bin pgwarden
else
bench_bin := target/pgo-use/release/pgwarden
bench_build := scripts/build-pgo.sh
endif

.PHONY: demo quickstart test deps deps-bench drivers lint fmt bench bench-quick bench-pool build-pgo

deps:
	@scripts/install-deps.sh

## demo: pgwarden serve in front of a throwaway PostgreSQL (or $$PGWARDEN_UPSTREAM_URL), 200 clients
## on a cap of 3 server connections for 20 s, then left running until Ctrl+C
demo: deps
	$(CARGO) build --quiet --release -p pgwarden --bin pgwarden --example demo
	@ulimit -n 65536 2>/dev/null || true; "$(TARGET_DIR)/release/examples/demo"

## quickstart: the embeddable library in a few lines (one process-wide pool, max 3 / min 1)
quickstart: deps
	$(CARGO) run --quiet --release -p pgwarden --example quickstart

## drivers: Python asyncpg/psycopg and node-postgres for the compatibility tests (in the work tree)
drivers:
	@scripts/install-drivers.sh

## test: every test of the workspace against real, throwaway PostgreSQL and Redis servers
test: deps drivers
	@ulimit -n 65536 2>/dev/null || true; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast && $(CARGO) test --workspace --doc; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## bench-pool: acquire + release of pgwarden's pool beside deadpool and bb8
bench-pool:
	$(CARGO) bench -p pgwarden-pool --bench acquire

deps-bench:
	@scripts/install-deps.sh bench

## bench: pgbench through PgBouncer, pgwarden (the profile-guided build; BENCH_PGO=0 for the
## usual one) and directly, alternating rounds (about 45 min with the default 3 rounds, the
## build included; BENCH_ARGS='--rounds 5' for more, about 13 min per round); appends a
## summary to docs/BENCHMARKS.md and raw rows to bench/results/
bench: deps-bench
	$(bench_build)
	$(CARGO) build --quiet --release -p pgwarden-bench --bin pgwarden-bench
	@ulimit -n 65536 2>/dev/null || true; "$(TARGET_DIR)/release/pgwarden-bench" --pgwarden "$(bench_bin)" $(BENCH_ARGS)

## build-pgo: a profile-guided release build, trained on the benchmark's workloads
## (target/pgo-use/release/pgwarden, the binary `make bench` measures)
build-pgo: deps
	@scripts/build-pgo.sh

## bench-quick: the same, shortened to about two minutes
bench-quick: deps-bench
	$(CARGO) build --quiet --release -p pgwarden -p pgwarden-bench --bin pgwarden --bin pgwarden-bench
	@ulimit -n 65536 2>/dev/null || true; "$(TARGET_DIR)/release/pgwarden-bench" --quick --pgwarden "$(TARGET_DIR)/release/pgwarden"

# pgwarden — the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test deps lint fmt bench-pool

deps:
	@scripts/install-deps.sh

## demo: runs the library quickstart against a throwaway PostgreSQL cluster
demo: deps
	$(CARGO) run --quiet --release -p pgwarden --example quickstart

## test: every test of the workspace against real, throwaway PostgreSQL and Redis servers
test: deps
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

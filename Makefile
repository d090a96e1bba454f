# ticketing: developer entry points. `make` alone lists the targets.
#
# Every variable below can be overridden from the environment or the command
# line, e.g. `make run PORT=8080` or `DATABASE_URL=... make run`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
STACK := deploy/local/stack.sh

# Used by `make run` (and by `make stack` to find PostgreSQL / the broker).
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/ticketing
KAFKA_BROKERS ?= 127.0.0.1:9092
PORT ?= 3000
RUST_LOG ?= info
# Used by `make test` as DATABASE_URL: the tests create their own fresh
# databases through it, so its role must be allowed to CREATE DATABASE.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

export DATABASE_URL KAFKA_BROKERS PORT RUST_LOG

.PHONY: help stack run test stop fmt lint status

help: ## list the targets
	@echo "ticketing make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | \
		awk -F ':.*## ' '{ printf "  %-8s %s\n", $$1, $$2 }'
	@echo "variables: DATABASE_URL=$(DATABASE_URL) KAFKA_BROKERS=$(KAFKA_BROKERS) PORT=$(PORT) RUST_LOG=$(RUST_LOG)"
	@echo "           TEST_DATABASE_URL=$(TEST_DATABASE_URL)"

stack: ## start the local stack (PostgreSQL + Tansu broker), installing what is missing
	bash $(STACK) up

status: ## show whether PostgreSQL and the broker answer
	bash $(STACK) status

stop: ## stop what `make stack` started
	bash $(STACK) down

run: stack ## start the stack, then run the server in the foreground (ticketing serve)
	$(CARGO) run --release --bin ticketing -- serve

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## check formatting and run clippy (warnings are errors)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The tests (and the stack they need) get TEST_DATABASE_URL as DATABASE_URL.
test: DATABASE_URL = $(TEST_DATABASE_URL)
test: stack lint ## start the stack, lint, check the event schemas, then run every test
	$(CARGO) run --quiet --bin ticketing -- schemas check
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "+ $(CARGO) nextest run --workspace --no-fail-fast"; \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "+ $(CARGO) test --workspace --no-fail-fast (cargo-nextest not installed)"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

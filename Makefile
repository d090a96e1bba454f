# ticketing: developer entry points. `make` alone lists the targets.
#
# Every variable below can be overridden from the environment or the command
# line, e.g. `make run PORT=8080` or `DATABASE_URL=... make run`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
STACK := deploy/local/stack.sh
PROMETHEUS := deploy/local/prometheus.sh
ALERTS := deploy/observability/alerts

# Used by `make run` (and by `make stack` to find PostgreSQL / the broker).
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/ticketing
KAFKA_BROKERS ?= 127.0.0.1:9092
PORT ?= 3000
RUST_LOG ?= info
# Used by `make test` as DATABASE_URL: the tests create their own fresh
# databases through it, so its role must be allowed to CREATE DATABASE.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

export DATABASE_URL KAFKA_BROKERS PORT RUST_LOG

.PHONY: help stack run test stop fmt lint status rules bench bench-full

help: ## list the targets
	@echo "ticketing make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | \
		awk -F ':.*## ' '{ printf "  %-10s %s\n", $$1, $$2 }'
	@echo "variables: DATABASE_URL=$(DATABASE_URL) KAFKA_BROKERS=$(KAFKA_BROKERS) PORT=$(PORT) RUST_LOG=$(RUST_LOG)"
	@echo "           TEST_DATABASE_URL=$(TEST_DATABASE_URL)"

stack: ## start the local stack (PostgreSQL + Tansu broker), installing what is missing
	bash $(STACK) up

status: ## show whether PostgreSQL and the broker answer
	bash $(STACK) status

stop: ## stop what `make stack` started
	bash $(STACK) down

run: stack ## start the stack, then run the server in the foreground (ticketing serve, local payment provider)
	PAYMENT_PROVIDER=$(or $(PAYMENT_PROVIDER),local) $(CARGO) run --release --bin ticketing -- serve

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## check formatting and run clippy (warnings are errors)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

rules: ## check the alert rules with promtool (installs Prometheus if missing)
	bash $(PROMETHEUS) ensure
	promtool check rules $(ALERTS).yml
	promtool test rules $(ALERTS).test.yml

# The tests (and the stack they need) get TEST_DATABASE_URL as DATABASE_URL.
test: DATABASE_URL = $(TEST_DATABASE_URL)
test: stack lint rules ## start the stack, lint, check the alert rules, the event schemas and the OpenAPI document, validate deploy/, run schemathesis, then run every test
	$(CARGO) run --quiet --bin ticketing -- schemas check
	$(CARGO) run --quiet --bin ticketing -- openapi check
	bash schemas/tools/validate-asyncapi.sh
	bash deploy/validate.sh
	bash deploy/local/schemathesis.sh run
	bash deploy/local/netfault.sh ensure
	bash deploy/local/stunnel.sh ensure
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "+ $(CARGO) nextest run --workspace --no-fail-fast"; \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "+ $(CARGO) test --workspace --no-fail-fast (cargo-nextest not installed)"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

# Load benchmarks (benches/load): the original platform's scenarios against a
# release `ticketing serve` on a fresh database, with a pgbench insert-only
# reference; then the relay, projection and pipeline benches. The report also
# lands in .run/loadtest/. LOAD_TARGET_URL=http://... loads a running system.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
LOAD_ADMIN_DATABASE_URL ?= $(TEST_DATABASE_URL)
export LOAD_ADMIN_DATABASE_URL
BENCHES := --bench relay_throughput --bench projection_throughput --bench command_to_read_model --bench replay_rebuild

bench: DATABASE_URL = $(TEST_DATABASE_URL)
bench: stack ## short load run (all scenarios, seconds each) + pgbench reference + pipeline benches
	$(CARGO) build --release --bin ticketing
	LOAD_PROFILE=short LOAD_SERVER_BIN=$(TARGET_DIR)/release/ticketing \
		$(CARGO) run --release -p ticketing-bench --bin loadtest
	BENCH_EVENTS=10000 BENCH_BATCHES=500 BENCH_SECONDS=5 BENCH_RATE=300 \
		$(CARGO) bench -p ticketing-bench $(BENCHES)

bench-full: DATABASE_URL = $(TEST_DATABASE_URL)
bench-full: stack ## the original durations (about 20 minutes of load) + pgbench + pipeline benches
	$(CARGO) build --release --bin ticketing
	LOAD_PROFILE=full LOAD_PGBENCH_SECONDS=60 LOAD_SERVER_BIN=$(TARGET_DIR)/release/ticketing \
		$(CARGO) run --release -p ticketing-bench --bin loadtest
	$(CARGO) bench -p ticketing-bench $(BENCHES)

# The pipeline scenario alone (benches/load/pipeline.rs): create-ticket load
# with the read side watched (backlog, freshness, read-your-writes, drain,
# idle run), beside the pgbench reference. LOAD_SERVER_BIN=path/to/ticketing
# runs it against another build (nothing is built then); LOAD_PROFILE=full
# for the full durations; LOAD_PIPELINE_* as in benches/load/main.rs.
.PHONY: bench-pipeline
bench-pipeline: DATABASE_URL = $(TEST_DATABASE_URL)
bench-pipeline: stack ## the pipeline scenario alone (read side under load) + pgbench reference
	$(if $(LOAD_SERVER_BIN),,$(CARGO) build --release --bin ticketing)
	LOAD_PROFILE=$(or $(LOAD_PROFILE),short) LOAD_SCENARIOS=pipeline \
		LOAD_PGBENCH_SECONDS=$(or $(LOAD_PGBENCH_SECONDS),$(if $(filter full,$(LOAD_PROFILE)),60,10)) \
		LOAD_SERVER_BIN=$(or $(LOAD_SERVER_BIN),$(TARGET_DIR)/release/ticketing) \
		$(CARGO) run --release -p ticketing-bench --bin loadtest

# Core Voice developer entry points. `make bootstrap` once per machine (fast afterwards);
# every other target runs through `uv run` with the pinned binaries first on PATH.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CORE_VOICE_BIN_DIR ?= $(CURDIR)/.bin
export CORE_VOICE_BIN_DIR
# The bootstrap's Go builds, then a uv installed with `pip --user`, then the rest.
export PATH := $(CORE_VOICE_BIN_DIR):$(HOME)/.local/bin:$(PATH)

UV_RUN ?= uv run
PYTEST_ARGS ?=
# Test files run in parallel, one file per process (pytest-xdist): most tests wait on real
# servers and real-time audio, not on a core. PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)
BENCH ?=

.PHONY: help bootstrap up test test-unit test-integration test-e2e test-containers test-kube \
	test-cluster lint format typecheck \
	check bench schemas clean images

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-18s %s\n", $$1, $$2 }'

bootstrap: ## install Debian packages, the Python env and the pinned Go binaries
	@scripts/bootstrap.sh

up: bootstrap ## run the whole stack locally
	$(UV_RUN) corevoice up

# The suites that start many processes at once (a cluster, seven containers, an API server)
# run alone after the rest: beside them, the e2e tests' calls waited seconds for a core.
# (A PYTEST_ARGS filter may leave that second run nothing to collect: exit 5 is fine there.)
ALONE := containers or kube or cluster

test: bootstrap ## all tests (unit, integration, e2e, then containers, kube, cluster alone); PYTEST_ARGS=... to pass more
	rc=0; \
	$(UV_RUN) pytest $(PYTEST_PARALLEL) -m "not ($(ALONE))" --durations=25 $(PYTEST_ARGS) || rc=$$?; \
	$(UV_RUN) pytest -m "$(ALONE)" --durations=5 $(PYTEST_ARGS) || { r=$$?; [ $$r -eq 5 ] || rc=$$r; }; \
	exit $$rc

test-unit: bootstrap ## tests with no servers
	$(UV_RUN) pytest -m unit $(PYTEST_ARGS)

test-integration: bootstrap ## tests against real NATS / livekit-server / PostgreSQL processes
	$(UV_RUN) pytest -m integration $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-e2e: bootstrap ## the whole stack as separate processes, real audio
	$(UV_RUN) pytest -m e2e $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-containers: bootstrap ## the stack from its container images (podman, testcontainers)
	$(UV_RUN) pytest -m containers $(PYTEST_ARGS)

test-kube: bootstrap ## the chart installed into a real kube-apiserver with etcd
	$(UV_RUN) pytest -m kube $(PYTEST_ARGS)

test-cluster: bootstrap ## the stack on a NATS cluster and two LiveKit nodes, faults injected
	$(UV_RUN) pytest -m cluster $(PYTEST_ARGS)

lint: ## ruff lint + format check
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .

format: ## apply ruff fixes and formatting
	$(UV_RUN) ruff check --fix .
	$(UV_RUN) ruff format .

typecheck: ## mypy --strict over the configured files
	$(UV_RUN) mypy

check: lint typecheck test ## what CI runs

images: bootstrap ## build the service and server container images with podman (docs/containers.md)
	@scripts/images.sh

bench: bootstrap ## latency / load benchmarks; BENCH="worker density" runs only those
	$(UV_RUN) python -m core_voice_cli.bench $(BENCH)

schemas: ## regenerate the JSON schemas of the contracts
	$(UV_RUN) python -m core_voice_contracts.schema

clean: ## remove caches and build outputs (keeps .venv, .bin, .data and the machine cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache dist build
	find . \( -path ./.venv -o -path ./.git \) -prune -o -type d -name __pycache__ -prune \
		-exec rm -rf {} +

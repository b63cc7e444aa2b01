# Two commands matter: `make run` and `make test`. Everything installs itself on first use:
# `make run` only what serving needs, the targets that test or lint the dev tools on top.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_INSTALLED := $(VENV)/.installed-run
DEV_INSTALLED := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run cluster cluster-bench nginx test test-faults browser screenshots lint format eval test-coverage test-coverage-detailed \
	test-coverage-visualize bench mutation service-build service-up service-logs service-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-26s %s\n", $$1, $$2}'

# The service and its own dependencies: all that `make run` needs.
$(RUN_INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

# The dev tools on top (pytest, ruff, mypy, Playwright, schemathesis, ...).
$(DEV_INSTALLED): $(RUN_INSTALLED) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(DEV_INSTALLED) ## create the virtualenv with the service and its dev tools

# `make run ENSEMBLE=council` serves examples/council.toml; an ENSEMBLE_FILE given wins.
RUN_ENSEMBLE := $(if $(ENSEMBLE),$(if $(ENSEMBLE_FILE),,ENSEMBLE_FILE=examples/$(ENSEMBLE).toml ))
ifneq ($(RUN_ENSEMBLE),)
ifneq ($(filter run,$(MAKECMDGOALS)),)
ifeq ($(wildcard examples/$(ENSEMBLE).toml),)
$(error ENSEMBLE=$(ENSEMBLE): no examples/$(ENSEMBLE).toml (there are: $(basename $(notdir $(wildcard examples/*.toml)))))
endif
endif
endif

run: $(RUN_INSTALLED) ## serve on HTTP_ADDR (default :8080), mock LLM unless USE_LLM_MOCK=false; ENSEMBLE=NAME: examples/NAME.toml
	$(RUN_ENSEMBLE)$(BIN)/python -m service

# Independent tests run in TEST_WORKERS processes at once (pytest-xdist): most of a test's
# time is spent waiting on a server, a subprocess or a database, so more workers than cores
# pays; `worksteal` hands a waiting worker's queued tests to an idle one.
TEST_WORKERS ?= 4
# Bytecode is cached (in __pycache__, which git ignores) even where the environment sets
# PYTHONDONTWRITEBYTECODE: each test process, and each of the hundred services and commands
# the suite starts, would otherwise compile the project (and pytest rewrite every test
# module) from source, a tenth of the suite's CPU.
CACHE_BYTECODE := PYTHONDONTWRITEBYTECODE=
test: $(DEV_INSTALLED) ## run the whole test suite (in TEST_WORKERS processes; 0 runs it in one)
	$(CACHE_BYTECODE) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# PostgreSQL and Redis are required here (REQUIRE_SERVICES=0 lets their cases skip instead).
test-faults: $(DEV_INSTALLED) ## the fault suite, the cluster and the long fuzz (kills, outages, restarts, soak): a table of cases and counts
	$(CACHE_BYTECODE) REQUIRE_SERVICES=$${REQUIRE_SERVICES:-1} FAULTS_REPORT=test-artifacts/faults.md \
		$(BIN)/python -m pytest tests/faults tests/cluster tests/contract/test_fuzz.py -m faults $(PYTEST_ARGS)

nginx: ## install nginx (apt) for `make cluster`, if none is installed
	scripts/install_nginx.sh

# docker-compose.yml's shape without Docker (scripts/cluster, docs/deploy.md).
cluster: $(RUN_INSTALLED) nginx ## nginx (deploy/nginx.conf) on CLUSTER_PORT (8080), two replicas, PostgreSQL, Redis
	$(BIN)/python -m scripts.cluster

# Not in CI: a minute of load per shape (scripts/bench/cluster.py, docs/benchmarks.md).
cluster-bench: $(RUN_INSTALLED) nginx ## requests/s: one replica direct, behind nginx, two behind nginx
	$(BIN)/python -m scripts.bench.cluster $(CLUSTER_BENCH_ARGS)

browser: ## install Chromium (apt) for the page's browser tests, if none is installed
	scripts/install_chromium.sh

screenshots: $(DEV_INSTALLED) browser ## the README's pictures of the page (docs/images), made again with Playwright
	$(BIN)/python -m scripts.screenshots

lint: $(DEV_INSTALLED) ## ruff (with the ASYNC rules) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV_INSTALLED) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-coverage: $(DEV_INSTALLED) ## tests with a coverage total
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

test-coverage-detailed: $(DEV_INSTALLED) ## tests with a per-file coverage table and missed lines
	$(BIN)/python -m pytest --cov --cov-report=term-missing $(PYTEST_ARGS)

test-coverage-visualize: $(DEV_INSTALLED) ## HTML coverage report in htmlcov/, opened when a browser exists
	$(BIN)/python -m pytest --cov --cov-report=html $(PYTEST_ARGS)
	@$(BIN)/python scripts/open_report.py htmlcov/index.html

# Not in CI: each module takes minutes (its area's tests run once per mutant).
MODULES ?= service/auth/keys.py
mutation: $(DEV_INSTALLED) ## mutation score of MODULES with their area's tests (MUTATION_ARGS: --tests ...)
	$(BIN)/python -m scripts.mutation $(MODULES) $(MUTATION_ARGS)

BENCHED := $(VENV)/.bench-installed
$(BENCHED): $(DEV_INSTALLED) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

# The peer the benchmark compares with: LiteLLM's proxy, in a virtualenv of its own (its
# dependencies must not change the service's). LITELLM_BIN given wins.
PEER_VENV ?= .venv-litellm
PEER_INSTALLED := $(PEER_VENV)/.installed
$(PEER_INSTALLED):
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet 'litellm[proxy]'
	@touch $@

bench: $(BENCHED) $(if $(LITELLM_BIN),,$(PEER_INSTALLED)) ## run the benchmarks beside LiteLLM; tables here, JSON and plots in docs/benchmarks/
	LITELLM_BIN=$${LITELLM_BIN:-$(PEER_VENV)/bin/litellm} $(BIN)/python -m scripts.bench $(BENCH_ARGS)

# The sample evaluation, offline: a vote of five mock agents against each of them alone.
# scripts/make_eval_sample.py writes the sample (word problems and factual questions). Its
# 540 questions asked take the mock a third of a second each: 12 at once, about 15 s.
eval: $(RUN_INSTALLED) ## does an ensemble beat its best member? the sample set, with the mock
	USE_LLM_MOCK=true ENSEMBLE_FILE=examples/eval/ensemble.toml $(BIN)/python -m service eval \
		examples/eval/sample.jsonl --concurrency 12 --out eval-out $(EVAL_ARGS)

service-build: ## build the Docker image
	docker compose build

service-up: ## two replicas behind nginx, with PostgreSQL and Redis (docker compose, background)
	docker compose up -d

service-logs: ## follow the service's logs
	docker compose logs -f

service-down: ## stop and remove the containers
	docker compose down

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) $(PEER_VENV) .pytest_cache .mypy_cache .ruff_cache htmlcov .coverage

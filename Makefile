# One entry point for everything a developer or CI does. `make test` works on a fresh clone: it
# creates the virtualenv, builds (or reuses) the control-plane binaries and runs every check.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pip itself is pinned too; constraints.txt (the lock) pins every other package, build backends
# included (PIP_CONSTRAINT reaches pip's isolated build environments as well).
PIP_VERSION := 26.3
INSTALLED := $(VENV)/.installed
CONTROLPLANE_BUILD := tools/controlplane/build.sh
PROMTOOL_BUILD := tools/promtool/build.sh
HELM_DOCS_BUILD := tools/helm-docs/build.sh

.DEFAULT_GOAL := help
.PHONY: help venv controlplane promtool helm-docs chart-docs lint format types imports check test unit demo bench soak chaos fuzz lock clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml tools/testkit/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m pip install --quiet \
		--disable-pip-version-check -e tools/testkit -e '.[dev]'
	touch $@

venv: $(INSTALLED)  ## Create the virtualenv with the package and its development tools.

controlplane:  ## Build (or reuse from the cache) etcd, kube-apiserver, kube-controller-manager, kubectl, helm.
	bash $(CONTROLPLANE_BUILD) >/dev/null

promtool:  ## Build (or reuse from the cache) promtool, which checks and tests the alert rules.
	bash $(PROMTOOL_BUILD) >/dev/null

helm-docs:  ## Build (or reuse from the cache) helm-docs, which writes the chart's README.
	bash $(HELM_DOCS_BUILD) >/dev/null

chart-docs: venv helm-docs  ## Regenerate charts/doks-access-operator/README.md from values.yaml.
	DOKS_ACCESS_HELM_DOCS="$$(bash $(HELM_DOCS_BUILD) | tail -1)" $(BIN)/python -m tests.chart.chart_docs

lint: venv  ## ruff lint and format check.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv  ## Apply ruff's formatting and safe fixes.
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

types: venv  ## mypy --strict on the operator and the test tooling.
	$(BIN)/mypy

imports: venv  ## Import contracts (the operator never imports test tooling).
	$(BIN)/lint-imports

check: lint types imports  ## All static checks.

test: check controlplane promtool helm-docs  ## Everything: static checks, then all tests against a real control plane.
	DOKS_ACCESS_CONTROLPLANE_BIN="$$(bash $(CONTROLPLANE_BUILD))" \
	DOKS_ACCESS_PROMTOOL="$$(bash $(PROMTOOL_BUILD) | tail -1)" \
	DOKS_ACCESS_HELM_DOCS="$$(bash $(HELM_DOCS_BUILD) | tail -1)" $(BIN)/pytest

unit: venv  ## Only the tests that need no cluster.
	$(BIN)/pytest -m 'not cluster'

demo: venv controlplane  ## Offline demo: emulator + control plane + operator + a sample (Ctrl-C stops).
	DOKS_ACCESS_CONTROLPLANE_BIN="$$(bash $(CONTROLPLANE_BUILD))" $(BIN)/doks-access-demo

bench: venv controlplane  ## Benchmarks (about 30 min): prints a table, writes .bench/results.json.
	DOKS_ACCESS_CONTROLPLANE_BIN="$$(bash $(CONTROLPLANE_BUILD))" $(BIN)/python -m bench $(BENCH_ARGS)

soak: venv controlplane  ## Continuity soak (about 12 min): consumers authenticate through 10 rotations.
	DOKS_ACCESS_CONTROLPLANE_BIN="$$(bash $(CONTROLPLANE_BUILD))" $(BIN)/python -m reliability \
		--scenario soak --out .reliability/soak.json $(RELIABILITY_ARGS)

# `make chaos SCENARIO=failover` runs one of them.
SCENARIO ?= chaos
chaos: venv controlplane  ## Fault injection (about 17 min): outages, 429s, restarts, kills, failover, revoked or capped tokens.
	DOKS_ACCESS_CONTROLPLANE_BIN="$$(bash $(CONTROLPLANE_BUILD))" $(BIN)/python -m reliability \
		--scenario $(SCENARIO) --out .reliability/chaos.json $(RELIABILITY_ARGS)

fuzz: venv controlplane  ## Hostile input, long run (hypothesis profile "long"): specs, kubeconfigs, answers.
	mkdir -p .reliability
	HYPOTHESIS_PROFILE=long DOKS_ACCESS_HOSTILE_REPORT=$(CURDIR)/.reliability/hostile.json \
	DOKS_ACCESS_CONTROLPLANE_BIN="$$(bash $(CONTROLPLANE_BUILD))" $(BIN)/pytest -p no:cacheprovider tests/hostile

lock: venv  ## Re-resolve constraints.txt from the pyproject files (needs uv in the venv).
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(BIN)/uv pip compile --python-version 3.11 pyproject.toml tools/testkit/pyproject.toml \
		requirements-build.in --extra dev --no-emit-package doks-access-operator -o constraints.txt

clean:  ## Remove the virtualenv and caches (the control-plane cache lives outside the repo).
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .controlplane .demo .bench .reliability .hypothesis

# llmserve developer commands. `make test` on a fresh clone sets everything up and runs lint + tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)
# The tests run the versions production runs: requirements.lock (the image's pins) constrains the
# dev install. pip refuses hashes in a constraints file, so the pins alone are copied out of it.
CONSTRAINTS := $(VENV)/constraints.txt

CLUSTER ?= kwok
CLUSTER_FLAGS := $(if $(filter kind,$(CLUSTER)),--kind,)
# `make test` uses the cluster of `make cluster-up` when there is one, else starts its own.
KUBECONFIG_UP := $(wildcard .cluster/kubeconfig)

.PHONY: help venv lint format test unit fuzz cluster-tests tools cluster-up cluster-down crd golden demo bench-operator bench-proxy bench-autoscale clean chart-lint manifests

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing llmserve and its dev tools into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@grep -E '^[A-Za-z0-9]' requirements.lock | sed 's/ *\\$$//' > $(CONSTRAINTS)
	@$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)  ## create .venv and install llmserve with its dev extra (only when needed)

lint: $(STAMP)  ## ruff, mypy --strict, import-linter contracts, hadolint
	$(BIN)/ruff check operator tests tools
	$(BIN)/ruff format --check operator tests tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

format: $(STAMP)  ## fix what ruff can fix
	$(BIN)/ruff check --fix operator tests tools
	$(BIN)/ruff format operator tests tools

unit: $(STAMP)  ## the unit tests only
	$(BIN)/pytest -n 2 -m "not cluster"

fuzz: $(STAMP)  ## long random fuzzing (hypothesis' fuzz profile), then the proxy's hostile-input run
	LLMSERVE_HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -n 2 -m "not cluster" \
	  tests/proxy/test_fuzz.py tests/render/test_property.py
	$(BIN)/python tools/hostile.py

cluster-tests: $(STAMP) tools  ## the tests against the real control plane (serial: one cluster)
	LLMSERVE_KUBECONFIG=$(if $(KUBECONFIG_UP),$(abspath $(KUBECONFIG_UP)),) $(BIN)/pytest -m cluster

test: lint tools unit cluster-tests  ## lint, then every test (the README's test command; the chart's unit tests need helm)

tools:  ## build the control plane, kubectl, kwok and helm (~/.cache/llmserve/bin/<key>); get Prometheus
	$(PYTHON) tools/testbin.py build

cluster-up: $(STAMP)  ## start the local cluster (CLUSTER=kind for kind, needs Docker)
	$(BIN)/python tools/cluster.py up $(CLUSTER_FLAGS)

cluster-down:  ## stop the local cluster and every process it started
	$(PYTHON) tools/cluster.py down $(CLUSTER_FLAGS)

crd: $(STAMP)  ## regenerate crds/ from the pydantic models
	$(BIN)/llmserve crd > crds/llmservices.llmserve.io.yaml
	cp crds/llmservices.llmserve.io.yaml charts/llmserve/crds/llmservices.llmserve.io.yaml

HELM = $(shell $(PYTHON) tools/testbin.py dir)/helm

chart-lint: tools  ## helm lint --strict the chart with its default and its ci/ values
	$(HELM) lint --strict charts/llmserve
	for values in charts/llmserve/ci/*-values.yaml; do \
	  $(HELM) lint --strict charts/llmserve -f $$values || exit 1; done

manifests: tools  ## regenerate manifests/install.yaml from the chart (then review the diff)
	$(PYTHON) tools/chart.py manifests

.PHONY: lock
lock: $(STAMP)  ## regenerate requirements.lock (the image's pinned, hashed dependencies; review the diff)
	$(BIN)/python tools/lock.py

golden: $(STAMP)  ## regenerate tests/data/expected/ from tests/data/llmservices/ (then review the diff)
	$(BIN)/python tests/render/regenerate_golden.py

bench-operator: $(STAMP) tools  ## 1000 LLMServices: time to Ready, operator RSS, API requests, deletion
	$(BIN)/python tools/bench_operator.py

bench-proxy: $(STAMP)  ## the proxy vs direct, a raw relay and LiteLLM; then a 10x overload run
	$(BIN)/python tools/bench_proxy.py
	$(BIN)/python tools/bench_proxy.py --overload

bench-autoscale: $(STAMP)  ## llmserve's autoscaling policy vs HPA, KEDA, KPA, KubeAI, oracle (~1 min)
	$(BIN)/llmserve bench autoscale --plots bench-autoscale

demo: $(STAMP) tools  ## local cluster, the chart, its operator, a sample per engine, then traffic
	$(BIN)/python tools/demo.py

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

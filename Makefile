# One entry point for people and CI. Every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv lint test test-unit test-e2e demo demo-node bench control-plane lock chart-docs clean

help:
	@echo "make test   - lint + type-check + all tests (builds the test control plane on first run)"
	@echo "make demo   - control plane + KMS emulator + operator + a sample promotion"
	@echo "make demo-node - the same as users run it: a real node, the image built here, helm install/test (root)"
	@echo "make bench  - benchmarks against two yardsticks (raw and same-contract limits) (writes bench/results and docs/development/benchmarks.md)"
	@echo "make lint   - ruff, mypy, import contracts"
	@echo "make lock   - regenerate requirements.lock (the image's pinned, hashed dependencies) from pyproject.toml"
	@echo "make chart-docs - regenerate the chart README's values table from values.yaml (helm-docs)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

control-plane:
	hack/control-plane.sh build

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench hack
	$(BIN)/ruff format --check operator tests bench hack
	$(BIN)/mypy
	$(BIN)/lint-imports

test-unit: $(STAMP)
	$(BIN)/pytest -m "not k8s" -q

test-e2e: $(STAMP) control-plane
	$(BIN)/pytest -m k8s -q

test: lint control-plane
	$(BIN)/pytest -q -ra

demo: $(STAMP) control-plane
	$(BIN)/python hack/demo.py

demo-node: $(STAMP)
	hack/control-plane.sh build --with-node
	$(BIN)/python hack/demo_node.py

bench: $(STAMP) control-plane
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lock: $(STAMP)
	$(BIN)/pip install --quiet 'pip-tools>=7.4,<8'
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements.lock pyproject.toml

chart-docs: control-plane
	"$$(hack/control-plane.sh bin-dir)/helm-docs" --skip-version-footer --chart-search-root helm/secretstage-operator

clean:
	rm -rf $(VENV) .control-plane .demo .pytest_cache .mypy_cache .ruff_cache

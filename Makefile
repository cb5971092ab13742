# vae_lab: `make help` lists the targets. `make train` and `make test` each set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help install data train classifier test test-slow lint format tensorboard bench slurm slurm-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv with the package (editable) and dev tools; no-op when up to date

data: ## make Fashion-MNIST available (Debian's dataset-fashion-mnist, else torchvision's download)
	@if [ -f $(SYSTEM_DATA) ] || ls data/FashionMNIST/raw/train-images-idx3-ubyte* >/dev/null 2>&1; then \
		echo "Fashion-MNIST is available."; \
	elif command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get update -qq \
		&& $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null; then \
		echo "Installed Debian's dataset-fashion-mnist."; \
	else \
		$(MAKE) --no-print-directory install && $(PY) -m vae_lab.data.files data; \
	fi

train: install data ## train the default model on Fashion-MNIST (extra Hydra overrides: ARGS="model=conv")
	$(PY) -m vae_lab.train $(ARGS)

classifier: install data ## train the Fashion-MNIST classifier FID and KID use; writes outputs/classifier/ (ARGS="epochs=5")
	$(PY) -m vae_lab.classifier $(ARGS)

test: install ## the fast tier, for every commit: maths, configs, errors, checkpoints, one tiny training
	@$(MAKE) --no-print-directory data || echo "Fashion-MNIST unavailable: the tests that read it will skip."
	$(PY) -m pytest -q

test-slow: install data ## the rest: command-line processes, the training matrix, long runs, SLURM (root)
	$(PY) -m pytest -q -n 2 -m "(slow or cli) and not slurm"
	$(PY) -m pytest -q -m slurm  # the private cluster is one per session: serially, not under xdist

test-modules: install ## the fast tier, failing unless it called a function of every module of vae_lab (4x slower)
	@$(MAKE) --no-print-directory data || echo "Fashion-MNIST unavailable: the tests that read it will skip."
	$(PY) -m pytest -q --check-modules

test-all: ## every test: `make test`, then `make test-slow`; what .ci/run runs
	@$(MAKE) --no-print-directory test
	@$(MAKE) --no-print-directory test-slow

lint: install ## ruff (lint and format check) and mypy
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

tensorboard: install ## serve TensorBoard for every run under outputs/, on localhost only
	$(VENV)/bin/tensorboard --logdir outputs --host 127.0.0.1

bench: install data ## epoch time against a plain PyTorch loop, the IW bound against the decoder alone, two runs side by side; writes outputs/bench.json
	$(PY) benchmarks/epoch_time.py --out outputs/bench.json
	$(PY) benchmarks/iw_eval.py --out outputs/bench.json
	$(PY) benchmarks/side_by_side.py --out outputs/bench.json

slurm: ## start a private single-node SLURM here (root; installs Debian's slurm and munge): scripts/slurm.sh
	$(SUDO) scripts/slurm.sh up

slurm-down: ## stop the private SLURM that `make slurm` started
	$(SUDO) scripts/slurm.sh down

DOCS_STAMP := $(VENV)/.installed-docs
MKDOCS := NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs
.PHONY: docs docs-serve

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP) ## build the documentation site from docs/ into site/ (mkdocs build --strict: a broken link fails it)
	$(MKDOCS) build --strict --site-dir site

docs-serve: $(DOCS_STAMP) ## serve the documentation site on http://127.0.0.1:8000, rebuilt on every change
	$(MKDOCS) serve --dev-addr 127.0.0.1:8000

clean: ## remove caches (keeps .venv, data and outputs)
	rm -rf .pytest_cache .mypy_cache .ruff_cache

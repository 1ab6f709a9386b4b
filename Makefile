# DeforHMR stack. `make help` lists the targets; every target that needs Python
# depends on `setup`, so a fresh clone needs nothing but `make test` / `make demo`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= data/synthetic
ASSETS ?=
RAW ?=

.DEFAULT_GOAL := help
.PHONY: help setup test assets-check synthetic

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@echo "== setup: creating $(VENV) (CPU torch from the local wheel; CUDA users: see README)"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project (re-runs only when pyproject.toml changes)

test: setup ## run the whole test suite (what .ci/run calls); "no tests collected" fails
	@$(BIN)/python -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi; exit $$rc

assets-check: setup ## which external assets are present / missing / synthetic (ASSETS=, RAW= override)
	$(BIN)/python -m datasets.assets $(if $(ASSETS),--assets $(ASSETS)) $(if $(RAW),--raw $(RAW))

synthetic: setup ## synthetic stand-ins in the real layouts under OUT (default data/synthetic; SEED=, SCALE= optional)
	$(BIN)/python -m datasets.synthetic --out $(OUT) $(if $(SEED),--seed $(SEED)) $(if $(SCALE),--scale $(SCALE))

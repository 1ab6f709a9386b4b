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

synthetic: setup ## synthetic assets + raw datasets in the real layouts under OUT (default data/synthetic; SEED=, SCALE=, PEOPLE= optional)
	$(BIN)/python -m datasets.synthetic --out $(OUT) $(if $(SEED),--seed $(SEED)) $(if $(SCALE),--scale $(SCALE)) \
		$(if $(PEOPLE),--people $(PEOPLE))

# ---- image shards: raw datasets -> 256x192 WebDataset shards + manifest (pipelines/shards.py) ----
# RAW= defaults to the synthetic tree of `make synthetic`, OUT= to data/shards.
SHARDS_RAW = $(or $(RAW),data/synthetic/raw)
SHARDS_OUT = $(if $(filter command line environment,$(origin OUT)),$(OUT),data/shards)
SHARDS_ARGS ?=
.PHONY: shards bench-shards

shards: setup ## crop every dataset found under RAW into shards under OUT (default data/synthetic/raw -> data/shards; DATASETS=, MAX_SAMPLES=, JPEG_QUALITY=, EXPAND=, SHARDS_ARGS=)
	$(BIN)/python -m pipelines.shards --raw $(SHARDS_RAW) --out $(SHARDS_OUT) $(if $(DATASETS),--datasets $(DATASETS)) \
		$(if $(MAX_SAMPLES),--max-samples $(MAX_SAMPLES)) $(if $(JPEG_QUALITY),--jpeg-quality $(JPEG_QUALITY)) \
		$(if $(EXPAND),--expand $(EXPAND)) $(SHARDS_ARGS)

bench: bench-shards

bench-shards: setup ## shard pipeline crops/s against decode+warp+encode in a tight loop on all cores (synthetic data)
	$(BIN)/python -m pipelines.bench_shards

# ---- feature cache: frozen ViTPose encoder over the image shards (pipelines/features.py) ----
SHARDS ?= data/shards
ENCODER ?= vitpose-h
CKPT ?=
VIEWS ?= 1
FEATURES_OUT = $(if $(filter command line environment,$(origin OUT)),$(OUT),data/features)
.PHONY: features bench bench-features

features: setup ## encoder features of every shard set under SHARDS into OUT/<ENCODER> (default data/features; ENCODER=vitpose-h|tiny, CKPT=, VIEWS=)
	$(BIN)/python -m pipelines.features --shards $(SHARDS) --out $(FEATURES_OUT) --encoder $(ENCODER) \
		$(if $(CKPT),--ckpt $(CKPT)) --views $(VIEWS)

# `make bench` gathers every throughput figure: each bench-<name> target adds itself with a
# plain `bench: bench-<name>` line.
bench: bench-features ## throughput figures against limits measured in the same run (BENCHMARKS.md)

bench-features: setup ## ViT-H crops/s on this machine (random weights) and the feature pipeline's rate against it
	$(BIN)/python -m pipelines.bench_features

# ---- training: the decoder over a feature cache, Lightning DDP (train/) ----
CONFIG ?= train/configs/demo-cpu.yaml
RUN ?= runs/demo
FEATURES ?= data/features
RESUME ?=
SET ?=
.PHONY: train bench-train

# RESUME=1 reads RUN/config.yaml; a CONFIG given with it must match that file.
TRAIN_CONFIG = $(if $(RESUME),$(if $(filter command line environment,$(origin CONFIG)),--config $(CONFIG)),--config $(CONFIG))

train: setup ## train CONFIG on FEATURES into RUN (RESUME=1 continues from RUN's last.ckpt; SET="optim.epochs=5 data.mix.coco=0"; ASSETS=)
	$(BIN)/python -m train $(TRAIN_CONFIG) --features $(FEATURES) --run $(RUN) $(if $(RESUME),--resume) \
		$(if $(ASSETS),--assets $(ASSETS)) $(foreach s,$(SET),--set $(s))

bench: bench-train
bench-train: setup ## training loader samples/s against `cat` of the same shards; def-m training samples/s on this CPU
	$(BIN)/python -m train.bench_loader

# ---- evaluation: standardized protocols, tables, figures (eval/) ----
RUN ?= runs/demo
FEATURES ?= data/features
EVAL_ARGS ?=
.PHONY: eval

eval: setup ## score RUN on 3DPW/RICH -> RUN/eval/results.{md,json}, per_sequence.csv, figures/ (RUN=, FEATURES=, CKPT= decoder ckpt, ASSETS=, RAW=, EVAL_ARGS=)
	$(BIN)/python -m eval.evaluate --run $(RUN) --features $(FEATURES) $(if $(CKPT),--ckpt $(CKPT)) \
		$(if $(ASSETS),--assets $(ASSETS)) $(if $(RAW),--raw $(RAW)) --shards $(or $(SHARDS),data/shards) $(EVAL_ARGS)

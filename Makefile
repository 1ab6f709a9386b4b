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

# mutation testing (tests/mutate.py, docs/testing.md): slow, not part of `make test` nor CI
MODULES ?=
JOBS ?=
.PHONY: mutate
mutate: setup ## mutmut over the core modules, each against its own tests: score per module, surviving mutants -> build/mutate/report.md (MODULES=joints,crop JOBS=2)
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install -q -c constraints.txt -e '.[mutate]'
	$(BIN)/python tests/mutate.py $(if $(MODULES),--modules $(MODULES)) $(if $(JOBS),--jobs $(JOBS))

assets-check: setup ## which external assets are present / missing / synthetic (ASSETS=, RAW= override)
	$(BIN)/python -m datasets.assets $(if $(ASSETS),--assets $(ASSETS)) $(if $(RAW),--raw $(RAW))

synthetic: setup ## synthetic assets + raw datasets in the real layouts under OUT (default data/synthetic; SEED=, SCALE=, PEOPLE= optional)
	$(BIN)/python -m datasets.synthetic --out $(OUT) $(if $(SEED),--seed $(SEED)) $(if $(SCALE),--scale $(SCALE)) \
		$(if $(PEOPLE),--people $(PEOPLE))

# ---- image shards: raw datasets -> 256x192 WebDataset shards + manifest (pipelines/shards.py) ----
# RAW= defaults to the synthetic tree of `make synthetic`, OUT= to data/shards; either may be an
# s3:// URI, and RAY_ADDRESS= runs the tasks on a cluster (docs/scale-out.md). A RAW in an object
# store is mirrored for the readers into RAW_STAGE (default data/raw-stage).
SHARDS_RAW = $(or $(RAW),data/synthetic/raw)
SHARDS_OUT = $(if $(filter command line environment,$(origin OUT)),$(OUT),data/shards)
SHARDS_ARGS ?=
RAW_STAGE ?=
.PHONY: shards bench-shards check-shards

shards: setup ## crop every dataset found under RAW into shards under OUT (default data/synthetic/raw -> data/shards; DATASETS=, MAX_SAMPLES=, JPEG_QUALITY=, EXPAND=, RAW_STAGE=, SHARDS_ARGS=)
	$(BIN)/python -m pipelines.shards --raw $(SHARDS_RAW) --out $(SHARDS_OUT) $(if $(DATASETS),--datasets $(DATASETS)) \
		$(if $(MAX_SAMPLES),--max-samples $(MAX_SAMPLES)) $(if $(JPEG_QUALITY),--jpeg-quality $(JPEG_QUALITY)) \
		$(if $(EXPAND),--expand $(EXPAND)) $(if $(RAW_STAGE),--raw-stage $(RAW_STAGE)) $(SHARDS_ARGS)

bench: bench-shards

bench-shards: setup ## shard pipeline crops/s against decode+warp+encode in a tight loop on all cores (synthetic data)
	$(BIN)/python -m pipelines.bench_shards

check-shards: setup ## read every shard under SHARDS and FEATURES whole against its index (sizes, counts, checksums)
	$(BIN)/python -m pipelines.shard_index check $(SHARDS) $(FEATURES) --checksums

# ---- labels vs images on the user's data, before sharding (datasets/check.py) ----
# RAW= defaults to the synthetic tree of `make synthetic`, OUT= to data/check.
CHECK_OUT = $(if $(filter command line environment,$(origin OUT)),$(OUT),data/check)
CHECK_ARGS ?=
.PHONY: check-data

check-data: setup ## coverage, GT body vs independent 2D/3D labels and contact sheets of every dataset under RAW -> OUT (default data/synthetic/raw -> data/check; DATASETS=, N=16, CHECK_ARGS=)
	$(BIN)/python -m datasets.check --raw $(SHARDS_RAW) --out $(CHECK_OUT) $(if $(DATASETS),--datasets $(DATASETS)) \
		$(if $(N),-n $(N)) $(CHECK_ARGS)

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

.PHONY: bench-gpu
bench: bench-gpu
bench-gpu: setup ## one table on a GPU (< 8 min): matmul peak, ViT-H crops/s vs it, def-m / reg-s training at batch 200 (memory, loader wait), eval; tiny shapes without a GPU
	$(BIN)/python -m pipelines.bench_gpu

# ---- training: the decoder over a feature cache, Lightning DDP (train/) ----
CONFIG ?= train/configs/demo-cpu.yaml
RUN ?= runs/demo
FEATURES ?= data/features
RESUME ?=
SET ?=
.PHONY: train bench-train

# RESUME=1 reads RUN/config.yaml; a CONFIG given with it must match that file.
TRAIN_CONFIG = $(if $(RESUME),$(if $(filter command line environment,$(origin CONFIG)),--config $(CONFIG)),--config $(CONFIG))

train: setup ## train CONFIG on FEATURES into RUN (RESUME=1 continues from RUN's last.ckpt; SET="optim.epochs=5 data.mix.coco=0"; ASSETS=, default for synthetic data: its own stand-ins)
	$(BIN)/python -m train $(TRAIN_CONFIG) --features $(FEATURES) --run $(RUN) $(if $(RESUME),--resume) \
		$(if $(ASSETS),--assets $(ASSETS)) $(foreach s,$(SET),--set $(s))

bench: bench-train
bench-train: setup ## training loader samples/s against `cat` of the same shards; def-m training samples/s and op calls / host syncs per step on this CPU
	$(BIN)/python -m train.bench_loader

# ---- evaluation: standardized protocols, tables, figures (eval/) ----
RUN ?= runs/demo
FEATURES ?= data/features
EVAL_ARGS ?=
PRED ?=
PROTOCOL ?=
EVAL_OUT = $(if $(filter command line environment,$(origin OUT)),--out $(OUT))
.PHONY: eval eval-export bench-render

bench: bench-render
bench-render: setup ## seconds per 512 px frame of the numpy mesh renderer (figures, eval.predict overlays)
	$(BIN)/python -m model.bench_render

# PRED=FILE scores a predictions file (docs/evaluation.md) instead of a run
eval: setup ## score RUN on 3DPW/RICH/EMDB/3DHP -> RUN/eval/results.{md,json}, per_sequence.csv, figures/ (RUN=, FEATURES=, CKPT=, ASSETS= as for train, RAW=, EVAL_ARGS=); or PRED=FILE PROTOCOL=3dpw|rich|emdb|3dhp [OUT=DIR]: score any method's predictions
	$(BIN)/python -m eval.evaluate $(if $(PRED),--pred $(PRED) --protocol $(PROTOCOL) $(EVAL_OUT),--run $(RUN) \
		--features $(FEATURES) $(if $(CKPT),--ckpt $(CKPT))) \
		$(if $(ASSETS),--assets $(ASSETS)) $(if $(RAW),--raw $(RAW)) --shards $(or $(SHARDS),data/shards) $(EVAL_ARGS)

eval-export: setup ## a protocol's exact test set (keys, images, boxes, crop affine, intrinsics) -> OUT.parquet + OUT.json (PROTOCOL=, OUT=, SHARDS=)
	$(BIN)/python -m eval.export --protocol $(PROTOCOL) --out $(or $(OUT),data/export/$(PROTOCOL)) \
		--shards $(or $(SHARDS),data/shards)

# ---- the demo and the ablation: the whole chain on synthetic data, on CPU -----------------
# Every stage writes a stamp or a file that the next stage depends on, so a second
# `make demo` reuses what is built. DEMO_SCALE / DEMO_SCALE_FOR size the synthetic data;
# the small encoder is first fitted on the training crops' 2D keypoints
# (train/pretrain_encoder.py: a random-weight encoder carries too little pose information).
DEMO ?= data/demo
DEMO_SCALE ?= 3
DEMO_SCALE_FOR ?= coco=300,mpii=300,h36m=150,3dpw=80
DEMO_ENCODER ?= tiny
DEMO_PRETRAIN_EPOCHS ?= 12
DEMO_EPOCHS ?= 10
# the decoders' optimiser at demo scale (train/configs/demo-cpu.yaml otherwise): the tiny
# decoders underfit here (training error close to val), so a higher rate, a cosine schedule
# and gradient clipping (val curves that no longer jump back up): docs/demo.md, "How the settings were reached"
DEMO_OPTIM ?= optim.lr=3e-3 optim.schedule=cosine optim.warmup_steps=100 optim.grad_clip=1.0
DEMO_RUNS ?= runs/demo
DEMO_TRAIN = $(BIN)/python -m train --features $(DEMO)/features --assets $(DEMO)/synthetic/assets
DEMO_EVAL = $(BIN)/python -m eval.evaluate --features $(DEMO)/features --assets $(DEMO)/synthetic/assets \
	--raw $(DEMO)/synthetic/raw --shards $(DEMO)/shards
ABLATION_PRESETS := reg-s reg-m def-s def-m
.PHONY: demo ablation
.PRECIOUS: $(DEMO_RUNS)/%/checkpoints/last.ckpt $(DEMO_RUNS)/%/eval/results.json

$(DEMO)/synthetic/.done: | $(STAMP)
	@echo "== demo 1/6: synthetic assets and raw datasets -> $(DEMO)/synthetic"
	$(BIN)/python -m datasets.synthetic --out $(DEMO)/synthetic --scale $(DEMO_SCALE) \
		--scale-for $(DEMO_SCALE_FOR) --workers 2
	touch $@

$(DEMO)/shards/.done: $(DEMO)/synthetic/.done
	@echo "== demo 2/6: image shards -> $(DEMO)/shards"
	$(BIN)/python -m pipelines.shards --raw $(DEMO)/synthetic/raw --out $(DEMO)/shards
	touch $@

$(DEMO)/encoder.pth: $(DEMO)/shards/.done
	@echo "== demo 3/6: fit the small $(DEMO_ENCODER) encoder on the training crops' 2D keypoints"
	$(BIN)/python -m train.pretrain_encoder --shards $(DEMO)/shards --encoder $(DEMO_ENCODER) \
		--out $@ --epochs $(DEMO_PRETRAIN_EPOCHS)

$(DEMO)/features/.done: $(DEMO)/encoder.pth
	@echo "== demo 4/6: frozen encoder features -> $(DEMO)/features"
	$(BIN)/python -m pipelines.features --shards $(DEMO)/shards --out $(DEMO)/features \
		--encoder $(DEMO_ENCODER) --ckpt $(DEMO)/encoder.pth
	touch $@

# a run is complete when its last checkpoint exists; an interrupted one resumes
$(DEMO_RUNS)/%/checkpoints/last.ckpt: $(DEMO)/features/.done
	@echo "== demo 5/6: train $* ($(DEMO_EPOCHS) epochs) -> $(DEMO_RUNS)/$*"
	if [ -f $(DEMO_RUNS)/$*/config.yaml ]; then $(DEMO_TRAIN) --run $(DEMO_RUNS)/$* --resume; \
	else $(DEMO_TRAIN) --run $(DEMO_RUNS)/$* --config train/configs/demo-cpu.yaml \
		--set model.preset=$*-tiny --set optim.epochs=$(DEMO_EPOCHS) $(foreach o,$(DEMO_OPTIM),--set $(o)); fi

$(DEMO_RUNS)/%/eval/results.json: $(DEMO_RUNS)/%/checkpoints/last.ckpt
	@echo "== demo 6/6: evaluate $* -> $(DEMO_RUNS)/$*/eval"
	$(DEMO_EVAL) --run $(DEMO_RUNS)/$*

demo: $(DEMO_RUNS)/def-m/eval/results.json $(DEMO_RUNS)/reg-s/eval/results.json ## the whole chain on synthetic data on CPU (minutes): DeforHMR vs HMR2.0-style reg-s vs the mean pose
	$(BIN)/python -m eval.tables --runs $(DEMO_RUNS)/def-m $(DEMO_RUNS)/reg-s --table1

ablation: $(foreach p,$(ABLATION_PRESETS),$(DEMO_RUNS)/$(p)/eval/results.json) ## Table 2 (Reg-S = HMR2.0†, Reg-M, Def-S, Def-M) with equal budgets on the demo data, and each row's parameter count
	$(BIN)/python -m eval.tables --runs $(foreach p,$(ABLATION_PRESETS),$(DEMO_RUNS)/$(p)) --table2

# Two commands for a newcomer: `make eval` (the main job) and `make test`. Both create .venv/ on first use.
# Data is read from ../shared/data unless BLINKSTACK_DATA_DIR points elsewhere.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEFAULT_MODEL := small
EPOCHS ?= 18

.PHONY: venv eval test lint format train-family bench

# torch is installed first and pinned to the CPU build that pip finds on this machine's disk; the
# `train` extra's range is then already satisfied, so no multi-GB CUDA build is downloaded.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[train,dev]'
	touch $(STAMP)

venv: $(STAMP)

# Main job (until the services land): evaluate the committed model on held-out people in the real data.
eval: venv
	$(VENV)/bin/blinkstack-train evaluate --model model_repository/eye_state --out runs/eval

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Heavy: reproduces the committed model and its card (about 40 minutes on 2 CPU cores).
train-family: venv
	$(VENV)/bin/blinkstack-train prepare --json runs/split.json
	for m in tiny small medium; do \
	  $(VENV)/bin/blinkstack-train train --model $$m --epochs $(EPOCHS) && \
	  $(VENV)/bin/blinkstack-train export --checkpoint runs/$$m/best.pt --int8 \
	    $$([ $$m = $(DEFAULT_MODEL) ] && echo --repository model_repository --version 1) && \
	  $(VENV)/bin/blinkstack-train evaluate --model runs/$$m/model.onnx --out runs/$$m/eval || exit 1; \
	done
	$(MAKE) bench
	$(VENV)/bin/blinkstack-train card

bench: venv
	$(PY) bench/bench_eye_state_models.py runs/tiny/model.onnx runs/small/model.onnx runs/medium/model.onnx --json runs/bench_family.json

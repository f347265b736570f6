# The toolkit's entry points. `make test` and `make train` work on a fresh clone:
# they make the virtual environment from setup.cfg first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ifeq ($(origin TRAIN_DIR),undefined)
TRAIN_DIR := runs/$(or $(DATASET),cifar10)
endif
# Not given: the dataset of the run already in TRAIN_DIR (its config.json), else CIFAR-10.
ifeq ($(DATASET),)
DATASET := $(or $(shell $(PYTHON) -m trainkit.rundir dataset "$(TRAIN_DIR)" 2>/dev/null),cifar10)
endif
DATA_DIR ?= data/$(DATASET)
ARGS ?=
# Paths reach the commands through the environment, quoted: spaces, [ ] * ? stay literal.
export TRAIN_DIR DATA_DIR
# The preset `make train` runs: CIFAR-10's short one, 40 epochs (docs/results.md has how
# long it takes), as the quick start must finish on a CPU; `python -m cifar10.train` keeps
# the tutorial's default, as the tutorial's command did. PRESET=tutorial is its 1,000,000 steps.
PRESET ?= $(if $(filter cifar10,$(DATASET)),short)
PRESET_FLAG = $(if $(PRESET),--preset=$(PRESET))
# The commands word their hints as make commands ("make resume ...", not "--resume").
RUN := TRAINKIT_VIA=make $(PY)

DATASETS := $(shell $(PYTHON) -m trainkit.registry)
ifeq ($(filter $(DATASET),$(DATASETS)),)
$(error DATASET=$(DATASET): expected one of $(DATASETS))
endif

.PHONY: venv test test-lab data train eval resume bench tensorboard clean constraints

# The stamp is remade whenever setup.cfg, pyproject.toml or constraints.txt changes. The
# versions installed are the ones the tests passed with (constraints.txt); setup.cfg's
# requirements stay ranges for those who install the package themselves.
$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,report]'
	touch $@

# Refreshes constraints.txt to the newest versions setup.cfg allows (then run make test,
# and commit it if the tests pass).
constraints:
	rm -rf .venv-constraints && $(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --quiet --upgrade pip
	.venv-constraints/bin/python -m pip install --quiet -e '.[test,report]'
	.venv-constraints/bin/python -m pip freeze --exclude-editable > constraints.txt
	rm -rf .venv-constraints
	@echo "constraints.txt refreshed: run make test before committing it"

venv: $(VENV)/.installed

# Two test processes: most of the suite's time is TensorFlow starting up in the
# subprocesses the tests run, one core each. `make test` checks the toolkit; `make
# test-lab` the bench and measurement rigs of benchmarks/ (tests marked bench).
TEST_WORKERS ?= 2
test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not bench" $(ARGS)

test-lab: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m bench $(ARGS)

# Download (if missing) and verify the data, without training.
data: $(VENV)/.installed
	$(RUN) -m trainkit.prepare_data --dataset=$(DATASET) --data_dir="$$DATA_DIR"

# A new run: refused (nothing deleted) if TRAIN_DIR already holds checkpoints.
train: $(VENV)/.installed
	$(RUN) -m $(DATASET).train --train_dir="$$TRAIN_DIR" --data_dir="$$DATA_DIR" $(PRESET_FLAG) $(ARGS)

# The evaluator beside a running (or finished) trainer.
eval: $(VENV)/.installed
	$(RUN) -m $(DATASET).eval --train_dir="$$TRAIN_DIR" $(ARGS)

# Continue the run in TRAIN_DIR from its newest checkpoint, with its own settings.
resume: $(VENV)/.installed
	$(RUN) -m $(DATASET).train --train_dir="$$TRAIN_DIR" --resume $(if $(filter command line environment,$(origin DATA_DIR)),--data_dir="$$DATA_DIR") $(ARGS)

# TensorBoard on TRAIN_DIR's train/ and eval/ summaries side by side, on this machine only.
PORT ?= 6006
tensorboard: $(VENV)/.installed
	@test -d "$$TRAIN_DIR" || { echo "make tensorboard: $$TRAIN_DIR does not exist; pass TRAIN_DIR=runs/..." >&2; exit 2; }
	@$(PY) -c "import tensorboard" 2>/dev/null || { echo "Installing TensorBoard into $(VENV)"; $(PY) -m pip install --quiet -e '.[tensorboard]'; }
	$(VENV)/bin/tensorboard --logdir="$$TRAIN_DIR" --host=127.0.0.1 --port=$(PORT)

# The benchmark (README "Speed"): ours vs keras.Model.fit and more, into bench/results.json.
# ARGS="--quick" for a smoke check (under 3 minutes, nothing written); ARGS="--cifar10_data=...
# --mnist_data=..." to use real data instead of synthetic files of the same size.
bench: $(VENV)/.installed
	$(PY) benchmarks/bench.py $(ARGS)

# Build outputs only; train dirs (runs/) and downloaded data are never touched.
clean:
	rm -rf build dist *.egg-info .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

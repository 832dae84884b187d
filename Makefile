# Two commands on a fresh machine with Python 3.11 and make: `make train` (the main job for now:
# train, export and evaluate the default Omniglot model) and `make test`. Both create .venv first.
# Outside this project's machines, get the lean CPU build of torch from PyTorch's own index:
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make test
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXPERIMENT ?= experiments/omniglot_best.toml
RUN ?= runs/$(shell sed -n 's/^name *= *"\(.*\)"/\1/p' $(EXPERIMENT))
ARTIFACT ?= omniglot

.PHONY: install train test lint format bench-omniglot clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "siamface needs Python 3.11, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) -m training train --config $(EXPERIMENT)
	$(PY) -m training export --run $(RUN) --name $(ARTIFACT) --tta-shift 2
	$(PY) -m training evaluate --artifact model/artifacts/$(ARTIFACT)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-omniglot: $(STAMP)
	$(PY) bench/omniglot.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache

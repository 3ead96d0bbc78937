# fastnn: `make train` sets everything up and trains the default network;
# `make test` runs the test suite (what CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastnn-installed
ARGS ?=

.PHONY: train test install data bench clean

train: data
	$(PY) -m fastnn train $(ARGS)

test: install
	$(PY) -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[fast,test]'
	touch $(STAMP)

data: install
	@PY=$(PY) sh scripts/get-data.sh

bench: install
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) -m pytest bench --benchmark-enable

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info

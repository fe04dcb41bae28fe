# Two commands do everything on a fresh machine:
#   make demo   set up (first time only) and run the main job on the embedded defaults
#   make test   set up (first time only) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,dagster,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/policyeval demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/respond_bench.py
	$(PY) bench/refusal_grader_dev.py

clean:
	rm -rf $(VENV) .cache data .pytest_cache

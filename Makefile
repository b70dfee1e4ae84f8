# Every chore is one target. `make serve` and `make test` work on a fresh machine (Python 3.11 + PyPI).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
INDEX_ROOT ?= indexes/demo
PORT   ?= 5000
WORKERS ?= 2

.PHONY: install lint fmt test test-all demo-data demo-index serve bench bench-smoke clean docker

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install
	OMP_NUM_THREADS=1 $(BIN)/pytest -m "not slow"

test-all: install
	OMP_NUM_THREADS=1 $(BIN)/pytest

demo-data: install
	$(BIN)/python data/make_demo.py --out data/demo

$(INDEX_ROOT)/current: data/demo/products.jsonl data/demo/queries.npy | install
	$(BIN)/index-builder build data/demo/products.jsonl --queries data/demo/queries.npy --out $(INDEX_ROOT) --keep 3

demo-index: $(INDEX_ROOT)/current

serve: $(INDEX_ROOT)/current
	OMP_NUM_THREADS=1 $(BIN)/recsys-serve --index-root $(INDEX_ROOT) --port $(PORT) --workers $(WORKERS)

bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.ann --out benchmarks/results

bench-smoke: install
	$(BIN)/pytest tests/test_benchmarks_smoke.py

clean:
	rm -rf indexes build .pytest_cache .mypy_cache .ruff_cache

docker:
	docker build -t recsys-retrieval .

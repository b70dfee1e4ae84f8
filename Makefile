# Every chore is one target. `make serve` and `make test` work on a fresh machine (Python 3.11 + PyPI).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
INDEX_ROOT ?= indexes/demo
PORT   ?= 5000
WORKERS ?= 2

.PHONY: install install-runtime docker-test lint fmt test test-all demo-data demo-index serve bench bench-smoke clean docker

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Runtime dependencies only (what `make serve` needs); the dev extras (pytest, mypy, schemathesis, matplotlib...)
# only for the targets that test, lint or benchmark. Stamps re-install only when pyproject.toml changes.
$(VENV)/.runtime-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.runtime-installed

install-runtime: $(VENV)/.runtime-installed

install: $(VENV)/.dev-installed

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

demo-data: install-runtime
	$(BIN)/python data/make_demo.py --out data/demo

# The demo is pinned to HNSW and one build thread: `auto` picks the kind by timing (on 5,000 items hnsw, ivf and
# flat are close) and a multi-threaded HNSW build is not reproducible; the docs' examples show its answers.
$(INDEX_ROOT)/current: data/demo/products.jsonl data/demo/queries.npy | install-runtime
	OMP_NUM_THREADS=1 $(BIN)/index-builder build data/demo/products.jsonl --queries data/demo/queries.npy --kind hnsw --out $(INDEX_ROOT) --keep 3

demo-index: $(INDEX_ROOT)/current

serve: install-runtime $(INDEX_ROOT)/current
	OMP_NUM_THREADS=1 $(BIN)/recsys-serve --index-root $(INDEX_ROOT) --port $(PORT) --workers $(WORKERS)

DATA_DIR    ?= ../shared/data
GLOVE_ITEMS ?= /tmp/glove/items.npy
BENCH_LOCK  ?= /tmp/recsys-bench.lock

bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.ann --dataset gowalla_als --data-dir $(DATA_DIR) --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.ann --dataset instacart_products --data-dir $(DATA_DIR) --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.ann --dataset glove6b50 --data-dir $(DATA_DIR) --glove-items $(GLOVE_ITEMS) --ref-builds 16:100,32:400 --budget 1.0 --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.ann --dataset synthetic --n 200000 --d 64 --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.ann --dataset synthetic --n 1000000 --d 64 --kinds flat,pruned,hnsw,ivf,ivfpq,ivffs --ref-builds 32:100 --budget 1.0 --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.ann --dataset synthetic --n 40981 --d 64 --refs "" --out benchmarks/results
	$(BIN)/python -m benchmarks.plots compare benchmarks/results/ann_gowalla_als.json benchmarks/results/ann_synthetic_40981x64.json --out benchmarks/results/synthetic_vs_gowalla.png
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.scale --sizes 100000,300000,1000000 --dims 64,128 --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.scale --sizes 3000000 --dims 64,128 --auto-kinds pruned,flat,hnsw,ivf --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.http_load --dataset gowalla_als --data-dir $(DATA_DIR) --workers 1,2,4 --concurrency 16,64 --duration 10 --batch-sizes 1000,100,10 --flask-reference --filter '{"popularity": ["tail"]}' --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.http_load --dataset gowalla_als --data-dir $(DATA_DIR) --workers 2 --concurrency 16,64 --duration 10 --batch-sizes 1000 --http h11 --loop asyncio --tag gowalla_als_h11 --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.asgi_cost --index-root indexes/bench/gowalla_als --queries $(DATA_DIR)/gowalla_als/queries.npy --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.memory --dataset gowalla_als --data-dir $(DATA_DIR) --workers 1,4 --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.memory --dataset synthetic --synthetic 3000000,64 --kind pruned --workers 1,4 --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.build_report --data-dir $(DATA_DIR) --glove-items $(GLOVE_ITEMS) --synthetic 1000000x128 --out benchmarks/results
	flock $(BENCH_LOCK) $(BIN)/python -m benchmarks.build_scale --n 1000000 --d 128 --work-dir /tmp/build_scale --out benchmarks/results
	$(BIN)/python -m benchmarks.build_scale --n 10000000 --d 64 --work-dir /tmp/build_scale --nice 19 --no-eval --out benchmarks/results

bench-smoke: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'   # without hnswlib/usearch the smoke test skips the references
	OMP_NUM_THREADS=1 $(BIN)/pytest tests/test_benchmarks_smoke.py tests/test_http_bench_smoke.py

clean:
	rm -rf indexes build .pytest_cache .mypy_cache .ruff_cache

docker:
	docker build -t recsys-retrieval .

# Build the image and smoke-test it on a private Docker daemon (what CI runs; root, apt-get; see deploy/README.md).
docker-test:
	bash docker/ci_docker_test.sh

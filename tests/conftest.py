"""Shared fixtures: small seeded catalogues, built once per session with the real builder, and API clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import Catalogue, make_catalogue

from index_builder.build import BuildOptions, build
from index_builder.embeddings import Embeddings


def pytest_configure(config: pytest.Config) -> None:
    # starlette 1.x warns that its TestClient prefers the `httpx2` package; `httpx` (our dev dependency) works.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`:UserWarning")


def build_index(catalogue: Catalogue, root: Path, kind: str) -> Path:
    embeddings = Embeddings(
        ids=catalogue.ids, vectors=catalogue.vectors, metadata={"category": list(catalogue.categories)}
    )
    build(embeddings, root, catalogue.train_queries, BuildOptions(kind=kind))
    return root


@pytest.fixture(scope="session")
def str_catalogue() -> Catalogue:
    return make_catalogue(seed=1338, string_ids=True)


@pytest.fixture(scope="session")
def int_catalogue() -> Catalogue:
    return make_catalogue(seed=2024, string_ids=False)


@pytest.fixture(scope="session")
def hnsw_root(str_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HNSW index over the string-id catalogue (approximate search, per-request efSearch)."""
    return build_index(str_catalogue, tmp_path_factory.mktemp("hnsw"), "hnsw")


@pytest.fixture(scope="session")
def ivf_root(str_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IVF index over the same catalogue (per-request nprobe; exact search scans its norm-ordered raw copy)."""
    return build_index(str_catalogue, tmp_path_factory.mktemp("ivf"), "ivf")


@pytest.fixture(scope="session")
def ivfpq_root(str_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IVF-PQ re-ranked by exact inner products (per-request nprobe and k_factor)."""
    return build_index(str_catalogue, tmp_path_factory.mktemp("ivfpq"), "ivfpq")


@pytest.fixture(scope="session")
def pruned_root(int_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exact (norm-ordered scan) index over the integer-id catalogue."""
    return build_index(int_catalogue, tmp_path_factory.mktemp("pruned"), "pruned")


@pytest.fixture(scope="session")
def client_factory() -> Iterator[object]:
    """`make(root, **settings)` → a started TestClient (lifespan run); all are closed at the end of the session."""
    from starlette.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    opened: list[TestClient] = []

    def make(root: Path, **overrides: object) -> TestClient:
        client = TestClient(create_app(Settings(index_root=root, **overrides)))  # type: ignore[arg-type]
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)

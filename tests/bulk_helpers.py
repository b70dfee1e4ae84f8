"""Users files for the recsys-score tests, and the Python API's answers to compare the job's output with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from index_format import Searcher

F32 = npt.NDArray[np.float32]


def users_table(vectors: F32, exclude: list[list[Any]] | None = None, prefix: str = "u") -> pa.Table:
    columns: dict[str, Any] = {
        "user_id": [f"{prefix}{i}" for i in range(len(vectors))],
        "vector": pa.array(list(vectors), type=pa.list_(pa.float32())),
    }
    if exclude is not None:
        columns["exclude"] = exclude
    return pa.table(columns)


def write_users(path: Path, table: pa.Table, files: int = 1) -> Path:
    """One parquet file, or a directory of `files` files (small row groups, so chunks cross them)."""
    if files == 1:
        pq.write_table(table, path, row_group_size=37)
        return path
    path.mkdir()
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for i in range(files):
        pq.write_table(
            table.slice(bounds[i], bounds[i + 1] - bounds[i]), path / f"users-{i:03d}.parquet", row_group_size=37
        )
    return path


def read_output(out: Path) -> dict[Any, tuple[list[Any], list[float]]]:
    table = pq.read_table(out)
    users = table.column("user_id").to_pylist()
    assert len(users) == len(set(users)), "a user was written twice"
    return dict(
        zip(
            users,
            zip(table.column("item_ids").to_pylist(), table.column("scores").to_pylist(), strict=True),
            strict=True,
        )
    )


def assert_matches_api(
    out: Path,
    searcher: Searcher,
    users: pa.Table,
    k: int,
    exact: bool = False,
    filter: dict[str, list[str]] | None = None,
) -> None:
    """Every user's item ids and scores equal `Searcher.search` for that user's vector (and exclusions)."""
    got = read_output(out)
    assert pq.read_schema(next(out.glob("part-*.parquet"))).field("scores").type == pa.list_(pa.float32())
    vectors = np.stack(users.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    exclude = users.column("exclude").to_pylist() if "exclude" in users.column_names else None
    expected = searcher.search(vectors, k, exact=exact, filter=filter, exclude=exclude)
    assert set(got) == set(users.column("user_id").to_pylist())
    for user, result in zip(users.column("user_id").to_pylist(), expected, strict=True):
        ids, scores = got[user]
        assert ids == result.ids, user
        assert np.array_equal(np.array(scores, dtype=np.float32), result.scores), user

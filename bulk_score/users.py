"""The users to score: parquet files (user_id, vector, optional exclude) or a .npy matrix with an ids file, read in
fixed-size chunks, each the input of one output part.

Chunks are cut the same way on every run (file by file, `batch_size` rows each, the last one of a file shorter), so
a part name (`part-<file>-<chunk>`) always holds the same users and a re-run can skip the parts already written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from index_builder.embeddings import InputError
from index_builder.inputs import _load_ids

F32 = npt.NDArray[np.float32]

USER_ID, VECTOR, EXCLUDE = "user_id", "vector", "exclude"


class BadInput(Exception):
    """The users input cannot be scored as given (missing file or column, wrong type); the message says where."""


@dataclass(frozen=True)
class Chunk:
    """Raw users of one output part: vectors are a list column (parquet) or an (n, d) array (.npy)."""

    part: str
    user_ids: pa.Array
    vectors: pa.Array | F32
    exclude: pa.Array | None  # list of item ids per user, or None

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True)
class Vectors:
    """Parsed vectors of a chunk: rows that are bad hold zeros, and `problems` says why, by position."""

    matrix: F32  # (n, dim)
    problems: dict[int, str]

    @property
    def good(self) -> npt.NDArray[np.bool_]:
        mask = np.ones(self.matrix.shape[0], dtype=bool)
        mask[list(self.problems)] = False
        return mask


def parse_vectors(vectors: pa.Array | pa.ChunkedArray | F32, dim: int) -> Vectors:
    """(n, dim) float32 matrix of a chunk's vectors, with the bad rows (missing, wrong length, NaN or inf) named."""
    problems: dict[int, str] = {}
    if isinstance(vectors, np.ndarray):
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.shape[1] != dim:
            raise BadInput(f"the user vectors have dimension {matrix.shape[1]}, the index {dim}")
    else:
        array = vectors.combine_chunks() if isinstance(vectors, pa.ChunkedArray) else vectors
        n = len(array)
        lengths = array.value_lengths().fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        values = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        if (lengths == dim).all():
            matrix = np.ascontiguousarray(values.reshape(n, dim))
        else:
            matrix = np.zeros((n, dim), dtype=np.float32)
            starts = np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))[:-1]])
            fits = lengths == dim
            matrix[fits] = values[starts[fits, None] + np.arange(dim)]
            for row in np.flatnonzero(~fits).tolist():
                length = int(lengths[row])
                problems[row] = (
                    "no vector" if length < 0 else f"vector of {length} numbers, the index dimension is {dim}"
                )
    nonfinite = ~np.isfinite(matrix).all(axis=1)
    if nonfinite.any() and not matrix.flags.writeable:  # a zero-copy view of arrow's buffer
        matrix = matrix.copy()
    for row in np.flatnonzero(nonfinite).tolist():
        problems.setdefault(row, "vector holds NaN or inf")
        matrix[row] = 0.0
    return Vectors(matrix, problems)


def exclusions(chunk: Chunk) -> list[list[Any]] | None:
    if chunk.exclude is None:
        return None
    return [ids or [] for ids in chunk.exclude.to_pylist()]


@dataclass(frozen=True)
class UserSource:
    """Parquet files (sorted, when USERS is a directory), or one .npy matrix with the user ids file."""

    files: tuple[Path, ...]
    ids_file: Path | None = None

    @classmethod
    def open(cls, users: Path, user_ids: Path | None) -> UserSource:
        if not users.exists():
            raise BadInput(f"{users}: no such file or directory")
        if users.suffix.lower() == ".npy":
            if user_ids is None:
                raise BadInput(f"{users}: .npy vectors need --user-ids FILE (.npy array, or one id per line)")
            return cls((users,), user_ids)
        if user_ids is not None:
            raise BadInput("--user-ids goes with .npy vectors; parquet input carries a user_id column")
        files = tuple(sorted(users.rglob("*.parquet"))) if users.is_dir() else (users,)
        files = tuple(f for f in files if not any(part.startswith((".", "_")) for part in f.relative_to(users).parts))
        if users.is_dir() and not files:
            raise BadInput(f"{users}: no .parquet files in this directory")
        if users.is_file() and users.suffix.lower() != ".parquet":
            raise BadInput(f"{users}: expected a .parquet file or directory, or .npy vectors with --user-ids")
        return cls(files)

    @property
    def is_npy(self) -> bool:
        return self.ids_file is not None

    def describe(self) -> list[dict[str, Any]]:
        """What the manifest records to recognise the same input on a re-run."""
        paths = [*self.files, *([self.ids_file] if self.ids_file else [])]
        return [{"path": str(p.resolve()), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in paths]

    def has_exclude(self) -> bool:
        return not self.is_npy and EXCLUDE in pq.read_schema(self.files[0]).names

    def check_schema(self, id_type: str) -> None:
        """Columns and types of every parquet file, before anything is read or written."""
        if self.is_npy:
            return
        for path in self.files:
            try:
                schema = pq.read_schema(path)
            except (OSError, pa.ArrowInvalid) as exc:
                raise BadInput(f"{path}: not a readable parquet file ({exc})") from exc
            for name in (USER_ID, VECTOR):
                if name not in schema.names:
                    raise BadInput(f"{path}: no {name!r} column (columns: {', '.join(schema.names)})")
            user_type, vector_type = schema.field(USER_ID).type, schema.field(VECTOR).type
            if not (
                pa.types.is_string(user_type) or pa.types.is_large_string(user_type) or pa.types.is_integer(user_type)
            ):
                raise BadInput(f"{path}: column 'user_id' must hold strings or integers, not {user_type}")
            if not _is_list_of(vector_type, lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)):
                raise BadInput(f"{path}: column 'vector' must be a list of numbers, not {vector_type}")
            if EXCLUDE in schema.names:
                wanted = pa.types.is_integer if id_type == "int" else _is_text
                if not _is_list_of(schema.field(EXCLUDE).type, wanted):
                    raise BadInput(
                        f"{path}: column 'exclude' must be a list of {id_type} item ids (the index has {id_type} ids), "
                        f"not {schema.field(EXCLUDE).type}"
                    )

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        if self.is_npy:
            yield from self._npy_chunks(batch_size)
            return
        for file_index, path in enumerate(self.files):
            yield from _parquet_chunks(path, file_index, batch_size)

    def _npy_chunks(self, batch_size: int) -> Iterator[Chunk]:
        path = self.files[0]
        try:
            matrix = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise BadInput(f"{path}: cannot read it as .npy ({exc})") from exc
        if matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
            raise BadInput(f"{path}: expected a 2-D matrix of numbers, got shape {matrix.shape} dtype {matrix.dtype}")
        assert self.ids_file is not None
        try:
            ids = _load_ids(self.ids_file)
        except InputError as exc:
            raise BadInput(str(exc)) from exc
        if len(ids) != matrix.shape[0]:
            raise BadInput(f"{self.ids_file}: {len(ids)} user ids for {matrix.shape[0]} vectors in {path.name}")
        for index, start in enumerate(range(0, matrix.shape[0], batch_size)):
            stop = min(start + batch_size, matrix.shape[0])
            user_ids = pa.array(ids[start:stop])
            yield Chunk(part_name(0, index), user_ids, np.asarray(matrix[start:stop], dtype=np.float32), None)

    def count(self) -> int:
        if self.is_npy:
            return int(np.load(self.files[0], mmap_mode="r").shape[0])
        return sum(pq.ParquetFile(path).metadata.num_rows for path in self.files)


def part_name(file_index: int, chunk_index: int) -> str:
    return f"part-{file_index:05d}-{chunk_index:06d}.parquet"


def _parquet_chunks(path: Path, file_index: int, batch_size: int) -> Iterator[Chunk]:
    """Exactly batch_size rows per chunk (the file's last one shorter), whatever the file's row groups."""
    handle = pq.ParquetFile(path)
    columns = [USER_ID, VECTOR, *([EXCLUDE] if EXCLUDE in handle.schema_arrow.names else [])]
    pending: list[pa.RecordBatch] = []
    held = 0
    index = 0
    for batch in handle.iter_batches(batch_size=batch_size, columns=columns):
        pending.append(batch)
        held += batch.num_rows
        while held >= batch_size:
            table = pa.Table.from_batches(pending)
            yield _chunk(path, file_index, index, index * batch_size, table.slice(0, batch_size))
            rest = table.slice(batch_size)
            pending, held, index = rest.to_batches(), rest.num_rows, index + 1
    if held:
        yield _chunk(path, file_index, index, index * batch_size, pa.Table.from_batches(pending))


def _chunk(path: Path, file_index: int, index: int, first_row: int, table: pa.Table) -> Chunk:
    user_ids = table.column(USER_ID).combine_chunks()
    if user_ids.null_count:
        row = first_row + int(np.flatnonzero(user_ids.is_null().to_numpy(zero_copy_only=False))[0])
        raise BadInput(f"{path}: row {row}: user_id is missing")
    exclude = table.column(EXCLUDE).combine_chunks() if EXCLUDE in table.column_names else None
    return Chunk(part_name(file_index, index), user_ids, table.column(VECTOR).combine_chunks(), exclude)


def _is_text(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(data_type) or pa.types.is_large_string(data_type))


def _is_list_of(data_type: pa.DataType, check: Any) -> bool:
    listy = pa.types.is_list(data_type) or pa.types.is_large_list(data_type) or pa.types.is_fixed_size_list(data_type)
    return bool(listy and check(data_type.value_type))

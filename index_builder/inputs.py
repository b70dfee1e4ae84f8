"""Read product embeddings (.npy + ids, .parquet, .jsonl) and query vectors into validated float32 matrices.

Every problem raises one InputError naming the file and the place: rows are 0-based, JSON lines are 1-based.
Ids keep their type: all strings give list[str], all integers give an int64 array, and nothing converts between them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from index_builder.embeddings import Embeddings, InputError
from index_builder.memory import release_pages

LOG = logging.getLogger(__name__)

Progress: TypeAlias = Callable[[str, int, int], None]
Ids: TypeAlias = npt.NDArray[np.int64] | list[str]
Float32Matrix: TypeAlias = npt.NDArray[np.float32]

EMBEDDING_FORMATS = (".npy", ".parquet", ".jsonl")
QUERY_FORMATS = (".npy", ".jsonl")
_BLOCK_VALUES = 1 << 22  # floats converted and checked per block: 16 MiB of float32
_JSONL_PROGRESS_EVERY = 10_000  # lines
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NUMBER_TYPES = frozenset({int, float})  # exact types: bool is not a number here


def load_embeddings(
    path: Path,
    *,
    ids_path: Path | None = None,
    id_field: str = "id",
    vector_field: str = "vector",
    metadata_fields: list[str] | None = None,
    progress: Progress | None = None,
) -> Embeddings:
    """Read and validate a catalogue of product embeddings; the format is chosen by the suffix of `path`.

    Parameters:
        path: `.npy` (N, d) float16/32/64 matrix, `.parquet` (id, vector and metadata columns) or `.jsonl`
            (one `{"id": ..., "vector": [...], "category": ...}` object per line).
        ids_path: only with `.npy`: a `.npy` array of ints or strings, or any other file read as UTF-8 text with
            one id per line (text ids are always strings). Without it, ids are the row numbers (int64).
        id_field, vector_field: column (parquet) or key (jsonl) names.
        metadata_fields: categorical fields to keep. None keeps every other string/integer column (parquet) or
            every other key whose values are all strings, integers or null (jsonl). Values become str, null None.
        progress: called as progress("load", done, total); rows for .npy/.parquet, bytes for .jsonl.
    """
    fmt = _format_of(path, EMBEDDING_FORMATS)
    if ids_path is not None and fmt != ".npy":
        raise InputError(f"{path.name}: an ids file is only used with .npy vectors; {fmt} files carry an id column")
    if metadata_fields and fmt == ".npy":
        raise InputError(f"{path.name}: a .npy matrix has no metadata columns (asked for {metadata_fields})")
    sha256 = _sha256(path)
    metadata: dict[str, list[str | None]] = {}
    if fmt == ".npy":
        ids, vectors = _load_npy(path, ids_path, progress)
    elif fmt == ".parquet":
        ids, vectors, metadata = _load_parquet(path, id_field, vector_field, metadata_fields, progress)
    else:
        ids, vectors, metadata = _load_jsonl(path, id_field, vector_field, metadata_fields, progress)
    LOG.info("loaded %d vectors of dimension %d from %s", vectors.shape[0], vectors.shape[1], path.name)
    embeddings = Embeddings(ids=ids, vectors=vectors, metadata=metadata, source_name=path.name, source_sha256=sha256)
    if ids_path is not None:
        embeddings.ids_source_name, embeddings.ids_source_sha256 = ids_path.name, _sha256(ids_path)
    return embeddings


def load_queries(path: Path, dim: int) -> Float32Matrix:
    """Read query vectors as an (nq, dim) float32 matrix from a `.npy` matrix or a `.jsonl` file whose lines are
    `{"vector": [...]}` objects or plain JSON arrays. Same checks as the embeddings (finite, not ragged, not empty)."""
    fmt = _format_of(path, QUERY_FORMATS)
    _require_file(path)
    if fmt == ".npy":
        n, d = _npy_matrix_header(path)
        if d != dim:
            raise InputError(f"{path.name}: queries have dimension {d}, expected {dim} (the index dimension)")
        return _npy_vectors(path, n, d, None, None)
    rows = [_query_row(path.name, line_no, row, obj, dim) for row, (line_no, obj) in enumerate(_json_lines(path))]
    if not rows:
        raise InputError(f"{path.name}: no queries (the file is empty)")
    return _to_float32(np.stack(rows), path.name, None)


#### shared helpers


def _format_of(path: Path, allowed: tuple[str, ...]) -> str:
    fmt = path.suffix.lower()
    if fmt not in allowed:
        raise InputError(
            f"{path.name}: unsupported format {fmt or '(no suffix)'!r}; expected one of {', '.join(allowed)}"
        )
    return fmt


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")


def _sha256(path: Path) -> str:
    _require_file(path)
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def _at(row: int, ident: str | int | None = None, line: int | None = None) -> str:
    """Where a row is, for messages: "row 5 (0-based), id 'p5'" or "line 7 (row 5, 0-based), id 'p5'"."""
    where = f"row {row} (0-based)" if line is None else f"line {line} (row {row}, 0-based)"
    return where if ident is None else f"{where}, id {ident!r}"


def _id_of(ids: Ids | None, row: int) -> str | int | None:
    if ids is None:
        return None
    return ids[row] if isinstance(ids, list) else int(ids[row])


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress("load", done, total)


def _check_dim(d: int, name: str) -> None:
    if d == 0:
        raise InputError(f"{name}: vectors have dimension 0")


class _Float32Sink:
    """Fills an (n, d) float32 matrix block by block; remembers the first bad row so the message can give totals."""

    def __init__(self, n: int, d: int) -> None:
        self.out: Float32Matrix = np.empty((n, d), dtype=np.float32)
        self.filled = 0
        self.nonfinite_rows = 0
        self.first_nonfinite: int | None = None
        self.overflow: tuple[int, int, float] | None = None  # (row, entry, value) of a float64 too large for float32

    def add(self, block: npt.NDArray[np.floating[Any]]) -> None:
        start = self.filled
        dest = self.out[start : start + block.shape[0]]
        with np.errstate(over="ignore"):
            dest[...] = block
        self.filled += block.shape[0]
        bad = np.flatnonzero(~np.isfinite(dest).all(axis=1))
        if bad.size:
            self._note(block[bad], bad + start)

    def _note(self, src: npt.NDArray[np.floating[Any]], rows: npt.NDArray[np.intp]) -> None:
        finite_in_source = np.isfinite(src).all(axis=1)  # finite before the cast: too large for float32
        if finite_in_source.any() and self.overflow is None:
            i = int(np.flatnonzero(finite_in_source)[0])
            entry = int(np.flatnonzero(~np.isfinite(self.out[rows[i]]))[0])
            self.overflow = (int(rows[i]), entry, float(src[i, entry]))
        nonfinite = rows[~finite_in_source]
        if nonfinite.size:
            self.nonfinite_rows += int(nonfinite.size)
            if self.first_nonfinite is None:
                self.first_nonfinite = int(nonfinite[0])

    def check(self, name: str, ids: Ids | None) -> Float32Matrix:
        if self.overflow is not None:
            row, entry, value = self.overflow
            limit = float(np.finfo(np.float32).max)
            raise InputError(
                f"{name}: {_at(row, _id_of(ids, row))}: value {value:.6g} at entry {entry} (0-based) "
                f"does not fit in float32 (max {limit:.6g})"
            )
        if self.first_nonfinite is not None:
            row = self.first_nonfinite
            raise InputError(
                f"{name}: {self.nonfinite_rows} row(s) contain NaN or Inf; the first is {_at(row, _id_of(ids, row))}"
            )
        return self.out


def _to_float32(matrix: npt.NDArray[np.floating[Any]], name: str, ids: Ids | None) -> Float32Matrix:
    sink = _Float32Sink(*matrix.shape)
    step = max(1, _BLOCK_VALUES // matrix.shape[1])
    for start in range(0, matrix.shape[0], step):
        sink.add(matrix[start : start + step])
    return sink.check(name, ids)


#### ids


def _first_duplicate(ids: Ids) -> tuple[int, int, int] | None:
    """(first row, second row, number of rows repeating an earlier id) of the earliest repeated id, or None."""
    if isinstance(ids, list):
        seen: dict[str, int] = {}
        pair: tuple[int, int] | None = None
        repeats = 0
        for row, ident in enumerate(ids):
            first = seen.setdefault(ident, row)
            if first != row:
                repeats += 1
                pair = pair or (first, row)
        return None if pair is None else (*pair, repeats)
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order[1:]] == ids[order[:-1]])
    if dup.size == 0:
        return None
    later = order[dup + 1]
    i = int(np.argmin(later))
    return int(order[dup[i]]), int(later[i]), int(dup.size)


def _check_unique(ids: Ids, name: str) -> None:
    """Also refuses empty ids and NUL characters: string ids are stored as fixed-width bytes, which drop trailing
    NULs, so such ids could not come back unchanged."""
    if isinstance(ids, list):
        for row, ident in enumerate(ids):
            if ident == "" or "\x00" in ident:
                raise InputError(f"{name}: {_at(row)}: id {ident!r} is empty or contains a NUL character")
    duplicate = _first_duplicate(ids)
    if duplicate is not None:
        first, second, repeats = duplicate
        raise InputError(
            f"{name}: duplicate id {_id_of(ids, first)!r} at rows {first} and {second} (0-based); "
            f"{repeats} row(s) repeat an earlier id"
        )


def _int64_ids(values: npt.NDArray[np.integer[Any]], name: str) -> npt.NDArray[np.int64]:
    if values.dtype == np.uint64 and values.size and int(values.max()) > _INT64_MAX:
        row = int(np.argmax(values > _INT64_MAX))
        raise InputError(f"{name}: {_at(row)}: id {int(values[row])} does not fit in int64")
    return np.ascontiguousarray(values, dtype=np.int64)


def _load_ids(path: Path) -> Ids:
    _require_file(path)
    return _npy_ids(path) if path.suffix.lower() == ".npy" else _text_ids(path)


def _npy_ids(path: Path) -> Ids:
    shape, dtype = _npy_header(path)
    if len(shape) != 1:
        raise InputError(f"{path.name}: expected a 1-D array of ids, got shape {shape}")
    if dtype.kind not in "iuUS":
        raise InputError(
            f"{path.name}: ids of dtype {dtype} are not supported; expected integers or strings (dtype U or S)"
        )
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path.name}: cannot read the ids ({exc})") from exc
    if dtype.kind in "iu":
        return _int64_ids(values, path.name)
    if dtype.kind == "U":
        return cast(list[str], values.tolist())
    return _decode_ids(cast(list[bytes], values.tolist()), path.name)


def _decode_ids(raw: list[bytes], name: str) -> list[str]:
    ids: list[str] = []
    for row, value in enumerate(raw):
        try:
            ids.append(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: {_at(row)}: id {value!r} is not valid UTF-8") from exc
    return ids


def _text_ids(path: Path) -> list[str]:
    """One id per line, taken verbatim as a string (a trailing "\\r" is dropped); empty lines are an error."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name}: not UTF-8 text (bad byte at offset {exc.start})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    ids = [line.removesuffix("\r") for line in lines]
    for line_no, ident in enumerate(ids, start=1):
        if not ident.strip():
            raise InputError(f"{path.name}: line {line_no} is empty; expected one id per line")
    return ids


#### .npy


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from the header alone, so object arrays are refused without unpickling anything."""
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise InputError(f"{path.name}: not a valid .npy file ({exc})") from exc
    return tuple(shape), dtype


def _npy_matrix_header(path: Path) -> tuple[int, int]:
    shape, dtype = _npy_header(path)
    if len(shape) != 2:
        raise InputError(f"{path.name}: expected a 2-D (rows, dim) matrix, got shape {shape}")
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise InputError(f"{path.name}: dtype {dtype} is not supported; expected float32, float16 or float64")
    n, d = shape
    if n == 0:
        raise InputError(f"{path.name}: no rows (shape {shape})")
    _check_dim(d, path.name)
    return n, d


def _npy_vectors(
    path: Path, n: int, d: int, ids: Ids | None, progress: Progress | None, copy: bool = True
) -> Float32Matrix:
    """The matrix as float32. A float32 file is used in place when `copy` is False: checked block by block and
    returned memory-mapped (read-only), so a 10M × 64 catalogue is never held twice; its pages are released after
    each block. Other dtypes are converted block by block into one float32 copy in RAM."""
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:  # e.g. shorter than its header says
        raise InputError(f"{path.name}: cannot map the matrix ({exc})") from exc
    step = max(1, _BLOCK_VALUES // d)
    _report(progress, 0, n)
    if not copy and mapped.dtype == np.float32 and mapped.flags.c_contiguous:
        bad_rows, first_bad = 0, -1
        for start in range(0, n, step):
            bad = np.flatnonzero(~np.isfinite(mapped[start : start + step]).all(axis=1))
            release_pages(mapped, start, start + step)
            if bad.size:
                bad_rows += int(bad.size)
                first_bad = int(bad[0]) + start if first_bad < 0 else first_bad
            _report(progress, min(start + step, n), n)
        if bad_rows:
            where = _at(first_bad, _id_of(ids, first_bad))
            raise InputError(f"{path.name}: {bad_rows} row(s) contain NaN or Inf; the first is {where}")
        vectors: Float32Matrix = mapped
        return vectors
    sink = _Float32Sink(n, d)
    for start in range(0, n, step):
        sink.add(mapped[start : start + step])
        release_pages(mapped, start, start + step)
        _report(progress, sink.filled, n)
    return sink.check(path.name, ids)


def _load_npy(path: Path, ids_path: Path | None, progress: Progress | None) -> tuple[Ids, Float32Matrix]:
    n, d = _npy_matrix_header(path)
    if ids_path is None:
        ids: Ids = np.arange(n, dtype=np.int64)
    else:
        ids = _load_ids(ids_path)
        if len(ids) != n:
            raise InputError(f"{ids_path.name} has {len(ids)} ids but {path.name} has {n} rows")
        _check_unique(ids, ids_path.name)
    return ids, _npy_vectors(path, n, d, ids, progress, copy=False)


#### .parquet


def _is_categorical(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t))


def _parquet_metadata_fields(
    schema: pa.Schema, name: str, id_field: str, vector_field: str, metadata_fields: list[str] | None
) -> list[str]:
    if metadata_fields is None:
        return [f.name for f in schema if f.name not in (id_field, vector_field) and _is_categorical(f.type)]
    for field_name in metadata_fields:
        _parquet_column(schema, name, field_name, "metadata")
        t = schema.field(field_name).type
        if not _is_categorical(t):
            raise InputError(
                f"{name}: metadata column {field_name!r} has type {t}; expected strings, integers or a dictionary"
            )
    return list(metadata_fields)


def _parquet_column(schema: pa.Schema, name: str, column: str, role: str) -> None:
    if schema.get_field_index(column) < 0:
        raise InputError(f"{name}: no {role} column {column!r} (columns: {', '.join(schema.names)})")


def _parquet_vector_type(schema: pa.Schema, name: str, column: str) -> None:
    _parquet_column(schema, name, column, "vector")
    t = schema.field(column).type
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    if not (is_list and pa.types.is_floating(t.value_type)):
        raise InputError(
            f"{name}: vector column {column!r} has type {t}; expected list<float> or fixed_size_list<float>"
        )
    if pa.types.is_fixed_size_list(t):
        _check_dim(t.list_size, name)


def _first_null(values: Any) -> int:
    return int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])


def _arrow_ids(col: pa.ChunkedArray, name: str, column: str) -> Ids:
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if col.null_count:
        raise InputError(f"{name}: {_at(_first_null(col))}: id column {column!r} is null")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return cast(list[str], col.to_pylist())
    if pa.types.is_integer(col.type):
        return _int64_ids(col.to_numpy(), name)
    raise InputError(f"{name}: id column {column!r} has type {col.type}; expected strings or integers")


def _arrow_strings(col: pa.ChunkedArray) -> list[str | None]:
    return cast(list[str | None], col.cast(pa.string()).to_pylist())


def _flatten_vectors(
    arr: Any, name: str, column: str, start: int, ids: Ids, d: int | None
) -> npt.NDArray[np.floating[Any]]:
    """One row group's list column as an (rows, d) array, checked through the offsets instead of row by row.
    `d` is the dimension found so far (None for the first row group)."""
    if arr.null_count:
        row = start + _first_null(arr)
        raise InputError(f"{name}: {_at(row, _id_of(ids, row))}: vector column {column!r} is null")
    if pa.types.is_fixed_size_list(arr.type):
        dim = int(arr.type.list_size)
    else:
        lengths = np.diff(arr.offsets.to_numpy())
        dim = int(lengths[0]) if d is None else d
        bad = np.flatnonzero(lengths != dim)
        if bad.size and dim > 0:
            row = start + int(bad[0])
            raise InputError(
                f"{name}: {_at(row, _id_of(ids, row))}: vector has {lengths[bad[0]]} values, "
                f"expected {dim} (the length of row 0)"
            )
    _check_dim(dim, name)
    flat = arr.flatten()
    if flat.null_count:
        i = _first_null(flat)
        row = start + i // dim
        raise InputError(f"{name}: {_at(row, _id_of(ids, row))}: vector entry {i % dim} (0-based) is null")
    values: npt.NDArray[np.floating[Any]] = flat.to_numpy(zero_copy_only=False)
    return values.reshape(-1, dim)


def _parquet_vectors(pf: pq.ParquetFile, name: str, column: str, ids: Ids, progress: Progress | None) -> Float32Matrix:
    n = len(ids)
    _report(progress, 0, n)
    sink: _Float32Sink | None = None
    for group in range(pf.num_row_groups):
        arr = pf.read_row_group(group, columns=[column]).column(0).combine_chunks()
        if len(arr) == 0:
            continue
        start = 0 if sink is None else sink.filled
        block = _flatten_vectors(arr, name, column, start, ids, None if sink is None else sink.out.shape[1])
        sink = sink or _Float32Sink(n, block.shape[1])
        sink.add(block)
        _report(progress, sink.filled, n)
    assert sink is not None and sink.filled == n
    return sink.check(name, ids)


def _load_parquet(
    path: Path, id_field: str, vector_field: str, metadata_fields: list[str] | None, progress: Progress | None
) -> tuple[Ids, Float32Matrix, dict[str, list[str | None]]]:
    name = path.name
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        _parquet_column(schema, name, id_field, "id")
        _parquet_vector_type(schema, name, vector_field)
        fields = _parquet_metadata_fields(schema, name, id_field, vector_field, metadata_fields)
        if pf.metadata.num_rows == 0:
            raise InputError(f"{name}: no rows")
        table = pf.read(columns=[id_field, *fields])
        ids = _arrow_ids(table.column(id_field), name, id_field)
        _check_unique(ids, name)
        metadata = {f: _arrow_strings(table.column(f)) for f in fields}
        del table
        return ids, _parquet_vectors(pf, name, vector_field, ids, progress), metadata
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{name}: cannot read the parquet file ({exc})") from exc


#### .jsonl


def _json_lines(path: Path, progress: Progress | None = None) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line."""
    done = 0
    try:
        total = path.stat().st_size
        _report(progress, 0, total)
        with path.open("rb") as f:
            for line_no, raw in enumerate(f, start=1):
                done += len(raw)
                if line_no % _JSONL_PROGRESS_EVERY == 0:
                    _report(progress, done, total)
                if raw.strip():
                    yield line_no, _parse_json_line(raw, path.name, line_no)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    _report(progress, done, total)


def _parse_json_line(raw: bytes, name: str, line_no: int) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: line {line_no}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: line {line_no}: not valid UTF-8") from exc


def _json_vector(value: Any, where: str, key: str, dim: int | None, dim_origin: str) -> npt.NDArray[np.float64]:
    """A JSON list of numbers (ints or floats, not bools or strings) of length `dim` as float64."""
    if not isinstance(value, list):
        raise InputError(f"{where}: {key!r} must be a list of numbers, got {type(value).__name__}")
    if not set(map(type, value)) <= _NUMBER_TYPES:
        entry = next(j for j, x in enumerate(value) if type(x) not in _NUMBER_TYPES)
        raise InputError(f"{where}: vector entry {entry} (0-based) is {value[entry]!r}, not a number")
    if dim is not None and len(value) != dim:
        raise InputError(f"{where}: vector has {len(value)} values, expected {dim} ({dim_origin})")
    try:
        return np.array(value, dtype=np.float64)
    except OverflowError as exc:
        raise InputError(f"{where}: vector has an integer too large for a float") from exc


def _query_row(name: str, line_no: int, row: int, obj: Any, dim: int) -> npt.NDArray[np.float64]:
    where = f"{name}: {_at(row, line=line_no)}"
    if isinstance(obj, dict):
        if "vector" not in obj:
            raise InputError(f"{where}: missing key 'vector'")
        obj = obj["vector"]
    return _json_vector(obj, where, "vector", dim, "the index dimension")


def _json_id(obj: dict[str, Any], where: str, key: str) -> str | int:
    if key not in obj:
        raise InputError(f"{where}: missing key {key!r}")
    ident = obj[key]
    if ident is None:
        raise InputError(f"{where}: id is null")
    if type(ident) is str:
        return ident
    if type(ident) is int:
        if not _INT64_MIN <= ident <= _INT64_MAX:
            raise InputError(f"{where}: id {ident} does not fit in int64")
        return ident
    raise InputError(f"{where}: id {ident!r} is a {type(ident).__name__}; ids must be strings or integers")


def _kind(ident: str | int) -> str:
    return "a string" if isinstance(ident, str) else "an integer"


class _JsonlCatalogue:
    """Accumulates rows of a .jsonl catalogue, checking each line as it comes."""

    def __init__(self, name: str, id_field: str, vector_field: str, metadata_fields: list[str] | None) -> None:
        self.name, self.id_field, self.vector_field = name, id_field, vector_field
        self.fields = metadata_fields  # None: discover
        self.ids: list[str | int] = []
        self.rows: list[npt.NDArray[np.float64]] = []
        self.metadata: dict[str, list[str | None]] = {f: [] for f in metadata_fields or []}
        self.seen: set[str] = set()  # explicit fields present in at least one row
        self.skipped: set[str] = set()  # discovered keys with a value that is not a string, integer or null

    def add(self, line_no: int, obj: Any) -> None:
        row = len(self.ids)
        if not isinstance(obj, dict):
            raise InputError(f"{self.name}: {_at(row, line=line_no)}: expected a JSON object, got {type(obj).__name__}")
        ident = _json_id(obj, f"{self.name}: {_at(row, line=line_no)}", self.id_field)
        where = f"{self.name}: {_at(row, ident, line_no)}"
        if self.ids and type(ident) is not type(self.ids[0]):
            raise InputError(
                f"{where}: id is {_kind(ident)} but row 0's id {self.ids[0]!r} is {_kind(self.ids[0])}; "
                "ids must be all strings or all integers"
            )
        if self.vector_field not in obj:
            raise InputError(f"{where}: missing key {self.vector_field!r}")
        dim = self.rows[0].shape[0] if self.rows else None
        vector = _json_vector(obj[self.vector_field], where, self.vector_field, dim, "the length of row 0")
        if not self.rows:
            _check_dim(vector.shape[0], f"{self.name}: {_at(row, ident, line_no)}")
        self.ids.append(ident)
        self.rows.append(vector)
        if self.fields is None:
            self._discover_metadata(obj, row)
        else:
            self._explicit_metadata(obj, where)

    def _explicit_metadata(self, obj: dict[str, Any], where: str) -> None:
        for field_name, values in self.metadata.items():
            value = obj.get(field_name)
            if field_name in obj:
                self.seen.add(field_name)
            if value is not None and type(value) not in (str, int):
                raise InputError(
                    f"{where}: metadata field {field_name!r} is {value!r}; expected a string, an integer or null"
                )
            values.append(None if value is None else str(value))

    def _discover_metadata(self, obj: dict[str, Any], row: int) -> None:
        for key, value in obj.items():
            if key in (self.id_field, self.vector_field) or key in self.skipped:
                continue
            if value is not None and type(value) not in (str, int):
                self.skipped.add(key)
                self.metadata.pop(key, None)
                continue
            if key not in self.metadata:
                self.metadata[key] = [None] * row
            self.metadata[key].append(None if value is None else str(value))
        for values in self.metadata.values():
            if len(values) == row:
                values.append(None)

    def finish(self) -> tuple[Ids, Float32Matrix, dict[str, list[str | None]]]:
        if not self.rows:
            raise InputError(f"{self.name}: no rows (the file is empty)")
        missing = sorted(set(self.metadata) - self.seen) if self.fields is not None else []
        if missing:
            raise InputError(f"{self.name}: metadata field(s) {missing} appear in no row")
        if self.skipped:
            LOG.info("%s: keys %s are not categorical (strings/integers) and are not kept", self.name, self.skipped)
        ids: Ids = cast(list[str], self.ids) if type(self.ids[0]) is str else np.array(self.ids, dtype=np.int64)
        _check_unique(ids, self.name)
        return ids, _to_float32(np.stack(self.rows), self.name, ids), self.metadata


def _load_jsonl(
    path: Path, id_field: str, vector_field: str, metadata_fields: list[str] | None, progress: Progress | None
) -> tuple[Ids, Float32Matrix, dict[str, list[str | None]]]:
    catalogue = _JsonlCatalogue(path.name, id_field, vector_field, metadata_fields)
    for line_no, obj in _json_lines(path, progress):
        catalogue.add(line_no, obj)
    return catalogue.finish()

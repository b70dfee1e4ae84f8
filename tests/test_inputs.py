from __future__ import annotations

import hashlib
import json
import os
import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from index_builder import inputs
from index_builder.embeddings import InputError
from index_builder.inputs import load_embeddings, load_queries

N, D = 6, 4
STR_IDS = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture
def xb() -> npt.NDArray[np.float32]:
    return np.random.default_rng(1338).standard_normal((N, D)).astype(np.float32)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def jsonl_rows(xb: npt.NDArray[np.float32], ids: list[Any] = STR_IDS) -> list[dict[str, Any]]:
    return [{"id": i, "vector": v.tolist()} for i, v in zip(ids, xb, strict=True)]


def write_parquet(path: Path, columns: dict[str, Any], row_group_size: int | None = None) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def vector_column(xb: npt.NDArray[np.floating[Any]], value_type: pa.DataType, fixed: bool = False) -> pa.Array:
    list_type = pa.list_(value_type, xb.shape[1]) if fixed else pa.list_(value_type)
    return pa.array(xb.tolist(), type=list_type)


def raises(message: str) -> pytest.RaisesExc[InputError]:
    return pytest.raises(InputError, match=re.escape(message))


#### round trips


def test_npy_without_ids_uses_row_numbers(tmp_path: Path, xb: npt.NDArray[np.float32]) -> None:
    np.save(tmp_path / "xb.npy", xb)
    emb = load_embeddings(tmp_path / "xb.npy")
    assert isinstance(emb.ids, np.ndarray) and emb.ids.dtype == np.int64
    np.testing.assert_array_equal(emb.ids, np.arange(N))
    np.testing.assert_array_equal(emb.vectors, xb)
    assert emb.vectors.dtype == np.float32 and emb.vectors.flags.c_contiguous
    assert emb.source_name == "xb.npy"
    assert emb.source_sha256 == hashlib.sha256((tmp_path / "xb.npy").read_bytes()).hexdigest()
    assert emb.metadata == {}


@pytest.mark.parametrize("dtype", ["float16", "float64", ">f4"])
def test_npy_float_widths(tmp_path: Path, xb: npt.NDArray[np.float32], dtype: str) -> None:
    np.save(tmp_path / "xb.npy", xb.astype(dtype))
    emb = load_embeddings(tmp_path / "xb.npy")
    np.testing.assert_array_equal(emb.vectors, xb.astype(dtype).astype(np.float32))


def test_npy_fortran_order_in_small_blocks(
    tmp_path: Path, xb: npt.NDArray[np.float32], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "_BLOCK_VALUES", D)  # one row per block
    np.save(tmp_path / "xb.npy", np.asfortranarray(xb))
    seen: list[tuple[str, int, int]] = []
    emb = load_embeddings(tmp_path / "xb.npy", progress=lambda *a: seen.append(a))
    np.testing.assert_array_equal(emb.vectors, xb)
    assert seen == [("load", i, N) for i in range(0, N + 1)]  # 0 first: the stage clock starts before any row


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (np.arange(10, 16, dtype=np.int32), list(range(10, 16))),
        (np.arange(10, 16, dtype=np.uint64), list(range(10, 16))),
        (np.array(STR_IDS), STR_IDS),
        (np.array([s.encode() for s in STR_IDS]), STR_IDS),
    ],
    ids=["int32", "uint64", "str", "bytes"],
)
def test_npy_with_npy_ids(tmp_path: Path, xb: npt.NDArray[np.float32], ids: Any, expected: list[Any]) -> None:
    np.save(tmp_path / "xb.npy", xb)
    np.save(tmp_path / "ids.npy", ids)
    emb = load_embeddings(tmp_path / "xb.npy", ids_path=tmp_path / "ids.npy")
    if isinstance(expected[0], str):
        assert emb.ids == expected
    else:
        assert isinstance(emb.ids, np.ndarray) and emb.ids.dtype == np.int64
        assert emb.ids.tolist() == expected


def test_npy_with_text_ids_keeps_strings(tmp_path: Path, xb: npt.NDArray[np.float32]) -> None:
    np.save(tmp_path / "xb.npy", xb)
    (tmp_path / "ids.txt").write_bytes(b"007\r\n12\np 3\nd\ne\nf\n")
    emb = load_embeddings(tmp_path / "xb.npy", ids_path=tmp_path / "ids.txt")
    assert emb.ids == ["007", "12", "p 3", "d", "e", "f"]
    assert emb.id_type == "str"


@pytest.mark.parametrize(
    ("value_type", "fixed"),
    [(pa.float32(), False), (pa.float64(), False), (pa.float16(), True), (pa.float32(), True)],
    ids=["list<float32>", "list<float64>", "fixed<float16>", "fixed<float32>"],
)
def test_parquet_vector_types(
    tmp_path: Path, xb: npt.NDArray[np.float32], value_type: pa.DataType, fixed: bool
) -> None:
    src = xb.astype(value_type.to_pandas_dtype())
    write_parquet(tmp_path / "xb.parquet", {"id": STR_IDS, "vector": vector_column(src, value_type, fixed)})
    emb = load_embeddings(tmp_path / "xb.parquet")
    assert emb.ids == STR_IDS
    np.testing.assert_array_equal(emb.vectors, src.astype(np.float32))


def test_parquet_int_ids_metadata_and_row_groups(tmp_path: Path, xb: npt.NDArray[np.float32]) -> None:
    columns = {
        "sku": pa.array([5, 3, 9, 1, 7, 2], type=pa.int32()),
        "emb": vector_column(xb, pa.float32()),
        "category": pa.array(["x", "y", None, "x", "y", "x"]).dictionary_encode(),
        "brand": pa.array(["b1", None, "b2", "b3", "b1", "b2"], type=pa.large_string()),
        "shelf": pa.array([1, 2, 3, None, 5, 6]),
        "price": pa.array([1.5] * N),  # float: not categorical
    }
    path = write_parquet(tmp_path / "xb.parquet", columns, row_group_size=4)
    seen: list[tuple[str, int, int]] = []
    emb = load_embeddings(path, id_field="sku", vector_field="emb", progress=lambda *a: seen.append(a))
    assert isinstance(emb.ids, np.ndarray) and emb.ids.dtype == np.int64
    assert emb.ids.tolist() == [5, 3, 9, 1, 7, 2]
    np.testing.assert_array_equal(emb.vectors, xb)
    assert emb.metadata == {
        "category": ["x", "y", None, "x", "y", "x"],
        "brand": ["b1", None, "b2", "b3", "b1", "b2"],
        "shelf": ["1", "2", "3", None, "5", "6"],
    }
    assert seen == [("load", 0, N), ("load", 4, N), ("load", N, N)]
    only = load_embeddings(path, id_field="sku", vector_field="emb", metadata_fields=["shelf"])
    assert list(only.metadata) == ["shelf"]


def test_jsonl_str_ids_and_metadata(tmp_path: Path, xb: npt.NDArray[np.float32]) -> None:
    rows: list[Any] = jsonl_rows(xb)
    rows[0]["category"] = "desserts"
    rows[1]["category"] = None
    rows[2]["shelf"] = 3
    rows[3]["tags"] = ["not", "categorical"]
    rows[4]["price"] = 2.5
    rows[5]["category"] = "drinks"
    rows[2]["vector"] = [1, 2, 3, 4]  # JSON integers are numbers too
    rows.insert(3, "   ")
    path = write_jsonl(tmp_path / "xb.jsonl", rows)
    seen: list[tuple[str, int, int]] = []
    emb = load_embeddings(path, progress=lambda *a: seen.append(a))
    assert emb.ids == STR_IDS
    expected = xb.copy()
    expected[2] = [1, 2, 3, 4]
    np.testing.assert_array_equal(emb.vectors, expected)
    assert emb.metadata == {
        "category": ["desserts", None, None, None, None, "drinks"],
        "shelf": [None, None, "3", None, None, None],
    }
    size = path.stat().st_size
    assert seen[-1] == ("load", size, size)
    explicit = load_embeddings(path, metadata_fields=["shelf"])
    assert explicit.metadata == {"shelf": [None, None, "3", None, None, None]}


def test_jsonl_int_ids_and_custom_keys(tmp_path: Path, xb: npt.NDArray[np.float32]) -> None:
    rows = [{"item": i * 10, "emb": v.tolist()} for i, v in enumerate(xb)]
    emb = load_embeddings(write_jsonl(tmp_path / "xb.jsonl", rows), id_field="item", vector_field="emb")
    assert isinstance(emb.ids, np.ndarray) and emb.ids.dtype == np.int64
    assert emb.ids.tolist() == [0, 10, 20, 30, 40, 50]
    np.testing.assert_array_equal(emb.vectors, xb)


def test_queries_npy_and_jsonl(tmp_path: Path, xb: npt.NDArray[np.float32]) -> None:
    np.save(tmp_path / "q.npy", xb.astype(np.float64))
    np.testing.assert_array_equal(load_queries(tmp_path / "q.npy", D), xb)
    lines: list[Any] = [{"name": "mike", "vector": xb[0].tolist()}, "", xb[1].tolist()]
    q = load_queries(write_jsonl(tmp_path / "q.jsonl", lines), D)
    assert q.dtype == np.float32 and q.shape == (2, D)
    np.testing.assert_array_equal(q, xb[:2])


#### bad inputs: each message names the file and the place

Case = Callable[[Path, npt.NDArray[np.float32]], Path]


def npy(xb: Any, name: str = "xb.npy") -> Case:
    def make(tmp: Path, _: npt.NDArray[np.float32]) -> Path:
        np.save(tmp / name, xb)
        return tmp / name

    return make


def jsonl(edit: Callable[[list[Any]], object], ids: list[Any] = STR_IDS) -> Case:
    def make(tmp: Path, xb: npt.NDArray[np.float32]) -> Path:
        rows: list[Any] = jsonl_rows(xb, ids)
        edit(rows)
        return write_jsonl(tmp / "xb.jsonl", rows)

    return make


def parquet(
    edit: Callable[[dict[str, Any], npt.NDArray[np.float32]], object], row_group_size: int | None = None
) -> Case:
    def make(tmp: Path, xb: npt.NDArray[np.float32]) -> Path:
        columns: dict[str, Any] = {"id": STR_IDS, "vector": vector_column(xb, pa.float32())}
        edit(columns, xb)
        return write_parquet(tmp / "xb.parquet", columns, row_group_size)

    return make


def raw(name: str, content: bytes) -> Case:
    def make(tmp: Path, _: npt.NDArray[np.float32]) -> Path:
        (tmp / name).write_bytes(content)
        return tmp / name

    return make


def set_row(rows: list[Any], row: int, **values: Any) -> None:
    rows[row].update(values)


def nan_rows(xb: npt.NDArray[np.float32], *rows: int) -> npt.NDArray[np.float32]:
    out = xb.copy()
    out[list(rows), 1] = [np.nan, np.inf, -np.inf][: len(rows)]
    return out


def overflow(xb: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    out = xb.astype(np.float64)
    out[3, 2] = 1e39
    return out


def ragged_parquet(columns: dict[str, Any], xb: npt.NDArray[np.float32]) -> None:
    lists = xb.tolist()
    lists[5] = lists[5][:3]
    columns["vector"] = pa.array(lists, type=pa.list_(pa.float32()))


def null_entry(columns: dict[str, Any], xb: npt.NDArray[np.float32]) -> None:
    lists: list[list[float | None]] = xb.tolist()
    lists[4][1] = None
    columns["vector"] = pa.array(lists, type=pa.list_(pa.float32()))


BAD_INPUTS: dict[str, tuple[Case, str]] = {
    "unknown suffix": (raw("xb.csv", b"1,2\n"), "xb.csv: unsupported format '.csv'"),
    "no suffix": (raw("xb", b""), "xb: unsupported format '(no suffix)'"),
    "not npy": (raw("xb.npy", b"hello"), "xb.npy: not a valid .npy file"),
    "truncated npy": (
        lambda tmp, xb: raw("xb.npy", (npy(xb)(tmp, xb).read_bytes())[:-5])(tmp, xb),
        "xb.npy: cannot map the matrix",
    ),
    "not parquet": (raw("xb.parquet", b"PAR1 nope"), "xb.parquet: cannot read the parquet file"),
    "empty npy": (npy(np.zeros((0, D), np.float32)), "xb.npy: no rows"),
    "empty jsonl": (raw("xb.jsonl", b"\n  \n"), "xb.jsonl: no rows"),
    "empty parquet": (
        parquet(lambda c, xb: c.update(id=STR_IDS[:0], vector=vector_column(xb[:0], pa.float32()))),
        "xb.parquet: no rows",
    ),
    "npy 1-D": (npy(np.zeros(D, np.float32)), "xb.npy: expected a 2-D (rows, dim) matrix, got shape (4,)"),
    "npy int dtype": (npy(np.zeros((N, D), np.int64)), "xb.npy: dtype int64 is not supported"),
    "npy object dtype": (npy(np.array([[1, "x"]], dtype=object)), "xb.npy: dtype object is not supported"),
    "malformed json": (
        jsonl(lambda rows: rows.insert(2, '{"id": "x", "vector": [1, 2')),
        "xb.jsonl: line 3: malformed JSON",
    ),
    "bad utf-8": (raw("xb.jsonl", b'{"id": "\xff"}\n'), "xb.jsonl: line 1: not valid UTF-8"),
    "not an object": (jsonl(lambda rows: rows.insert(1, "[1, 2, 3, 4]")), "line 2 (row 1, 0-based): expected a JSON"),
    "missing id key": (jsonl(lambda rows: rows[1].pop("id")), "xb.jsonl: line 2 (row 1, 0-based): missing key 'id'"),
    "missing vector key": (
        jsonl(lambda rows: rows[2].pop("vector")),
        "xb.jsonl: line 3 (row 2, 0-based), id 'c': missing key 'vector'",
    ),
    "null id": (jsonl(lambda rows: set_row(rows, 1, id=None)), "xb.jsonl: line 2 (row 1, 0-based): id is null"),
    "bool id": (jsonl(lambda rows: set_row(rows, 0, id=True)), "line 1 (row 0, 0-based): id True is a bool"),
    "float id": (jsonl(lambda rows: set_row(rows, 3, id=1.5)), "line 4 (row 3, 0-based): id 1.5 is a float"),
    "huge int id": (jsonl(lambda rows: None, ids=[2**63, 1, 2, 3, 4, 5]), "row 0, 0-based): id 9223372036854775808"),
    "mixed id types": (
        jsonl(lambda rows: set_row(rows, 4, id=17)),
        "xb.jsonl: line 5 (row 4, 0-based), id 17: id is an integer but row 0's id 'a' is a string",
    ),
    "string in vector": (
        jsonl(lambda rows: rows[2]["vector"].__setitem__(1, "0.5")),
        "xb.jsonl: line 3 (row 2, 0-based), id 'c': vector entry 1 (0-based) is '0.5', not a number",
    ),
    "bool in vector": (
        jsonl(lambda rows: rows[2]["vector"].__setitem__(3, False)),
        "id 'c': vector entry 3 (0-based) is False, not a number",
    ),
    "null in vector": (jsonl(lambda rows: rows[1]["vector"].__setitem__(0, None)), "id 'b': vector entry 0 (0-based)"),
    "vector not a list": (jsonl(lambda rows: set_row(rows, 1, vector="1 2 3 4")), "id 'b': 'vector' must be a list"),
    "ragged jsonl": (
        jsonl(lambda rows: rows[2]["vector"].pop()),
        "xb.jsonl: line 3 (row 2, 0-based), id 'c': vector has 3 values, expected 4 (the length of row 0)",
    ),
    "ragged parquet": (
        parquet(ragged_parquet),
        "xb.parquet: row 5 (0-based), id 'f': vector has 3 values, expected 4 (the length of row 0)",
    ),
    "ragged parquet later row group": (
        parquet(ragged_parquet, row_group_size=2),
        "xb.parquet: row 5 (0-based), id 'f': vector has 3 values, expected 4",
    ),
    "null parquet vector": (
        parquet(lambda c, xb: c.update(vector=pa.array([*xb.tolist()[:2], None, *xb.tolist()[3:]]))),
        "xb.parquet: row 2 (0-based), id 'c': vector column 'vector' is null",
    ),
    "null parquet vector entry": (parquet(null_entry), "xb.parquet: row 4 (0-based), id 'e': vector entry 1"),
    "parquet vector of strings": (
        parquet(lambda c, xb: c.update(vector=[str(v) for v in xb])),
        "xb.parquet: vector column 'vector' has type string",
    ),
    "parquet vector of ints": (
        parquet(lambda c, xb: c.update(vector=pa.array([[1, 2]] * N))),
        "xb.parquet: vector column 'vector' has type list<",
    ),
    "parquet missing id column": (parquet(lambda c, xb: c.pop("id")), "xb.parquet: no id column 'id'"),
    "parquet missing vector column": (parquet(lambda c, xb: c.pop("vector")), "xb.parquet: no vector column 'vector'"),
    "parquet null id": (
        parquet(lambda c, xb: c.update(id=["a", None, "c", "d", "e", "f"])),
        "xb.parquet: row 1 (0-based): id column 'id' is null",
    ),
    "parquet bool id": (parquet(lambda c, xb: c.update(id=[True] * N)), "xb.parquet: id column 'id' has type bool"),
    "nan npy": (
        lambda tmp, xb: npy(nan_rows(xb, 2, 4))(tmp, xb),
        "xb.npy: 2 row(s) contain NaN or Inf; the first is row 2 (0-based), id 2",
    ),
    "inf float16 npy": (
        lambda tmp, xb: npy(nan_rows(xb, 1, 3, 5).astype(np.float16))(tmp, xb),
        "xb.npy: 3 row(s) contain NaN or Inf; the first is row 1 (0-based), id 1",
    ),
    "nan jsonl": (
        jsonl(lambda rows: rows[3]["vector"].__setitem__(0, float("nan"))),
        "xb.jsonl: 1 row(s) contain NaN or Inf; the first is row 3 (0-based), id 'd'",
    ),
    "inf parquet": (
        parquet(lambda c, xb: c.update(vector=vector_column(nan_rows(xb, 5, 0), pa.float64()))),
        "xb.parquet: 2 row(s) contain NaN or Inf; the first is row 0 (0-based), id 'a'",
    ),
    "float64 overflow": (
        lambda tmp, xb: npy(overflow(xb))(tmp, xb),
        "xb.npy: row 3 (0-based), id 3: value 1e+39 at entry 2 (0-based) does not fit in float32",
    ),
    "duplicate jsonl ids": (
        jsonl(lambda rows: None, ids=["a", "b", "c", "b", "e", "b"]),
        "xb.jsonl: duplicate id 'b' at rows 1 and 3 (0-based); 2 row(s) repeat an earlier id",
    ),
    "duplicate parquet int ids": (
        parquet(lambda c, xb: c.update(id=[9, 4, 7, 9, 4, 1])),
        "xb.parquet: duplicate id 9 at rows 0 and 3 (0-based); 2 row(s)",
    ),
    "dimension 0 npy": (npy(np.zeros((N, 0), np.float32)), "xb.npy: vectors have dimension 0"),
    "dimension 0 jsonl": (
        jsonl(lambda rows: [r.update(vector=[]) for r in rows]),
        "xb.jsonl: line 1 (row 0, 0-based), id 'a': vectors have dimension 0",
    ),
    "dimension 0 parquet": (
        parquet(lambda c, xb: c.update(vector=pa.array([[]] * N, type=pa.list_(pa.float32())))),
        "xb.parquet: vectors have dimension 0",
    ),
    "dimension 0 fixed parquet": (
        parquet(lambda c, xb: c.update(vector=pa.array([[]] * N, type=pa.list_(pa.float32(), 0)))),
        "xb.parquet: vectors have dimension 0",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_embeddings(tmp_path: Path, xb: npt.NDArray[np.float32], case: tuple[Case, str]) -> None:
    make, message = case
    with raises(message):
        load_embeddings(make(tmp_path, xb))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with raises(f"{tmp_path / 'nope.npy'}: file not found"):
        load_embeddings(tmp_path / "nope.npy")
    (tmp_path / "dir.jsonl").mkdir()
    with raises("dir.jsonl: not a regular file"):
        load_embeddings(tmp_path / "dir.jsonl")
    with raises("nope.txt: file not found"):
        np.save(tmp_path / "xb.npy", np.ones((2, 2), np.float32))
        load_embeddings(tmp_path / "xb.npy", ids_path=tmp_path / "nope.txt")
    with raises("q.npy: file not found"):
        load_queries(tmp_path / "q.npy", 2)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "xb.jsonl", [{"id": "a", "vector": [1.0]}])
    path.chmod(0)
    with raises("xb.jsonl: cannot read the file"):
        load_embeddings(path)


BAD_IDS: dict[str, tuple[Case, str]] = {
    "count mismatch": (npy(np.arange(N - 1), "ids.npy"), "ids.npy has 5 ids but xb.npy has 6 rows"),
    "duplicate": (
        npy(np.array(["a", "b", "a", "c", "d", "e"]), "ids.npy"),
        "ids.npy: duplicate id 'a' at rows 0 and 2",
    ),
    "bool": (npy(np.ones(N, bool), "ids.npy"), "ids.npy: ids of dtype bool are not supported"),
    "float": (npy(np.ones(N), "ids.npy"), "ids.npy: ids of dtype float64 are not supported"),
    "object": (npy(np.array(STR_IDS, dtype=object), "ids.npy"), "ids.npy: ids of dtype object are not supported"),
    "2-D": (npy(np.arange(N).reshape(2, 3), "ids.npy"), "ids.npy: expected a 1-D array of ids, got shape (2, 3)"),
    "uint64 overflow": (
        npy(np.array([1, 2, 2**64 - 1, 3, 4, 5], np.uint64), "ids.npy"),
        "ids.npy: row 2 (0-based): id 18446744073709551615 does not fit in int64",
    ),
    "bytes not utf-8": (
        npy(np.array([b"a", b"\xff", b"c", b"d", b"e", b"f"]), "ids.npy"),
        "ids.npy: row 1 (0-based): id b'\\xff' is not valid UTF-8",
    ),
    "text empty line": (raw("ids.txt", b"a\n\nc\nd\ne\nf\n"), "ids.txt: line 2 is empty"),
    "text duplicate": (raw("ids.txt", b"a\nb\nc\nd\nc\nf\n"), "ids.txt: duplicate id 'c' at rows 2 and 4 (0-based)"),
    "text not utf-8": (raw("ids.txt", b"a\nb\xff\n"), "ids.txt: not UTF-8 text (bad byte at offset 3)"),
}


@pytest.mark.parametrize("case", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_ids(tmp_path: Path, xb: npt.NDArray[np.float32], case: tuple[Case, str]) -> None:
    make, message = case
    np.save(tmp_path / "xb.npy", xb)
    with raises(message):
        load_embeddings(tmp_path / "xb.npy", ids_path=make(tmp_path, xb))


def test_bad_options(tmp_path: Path, xb: npt.NDArray[np.float32]) -> None:
    jsonl_path = write_jsonl(tmp_path / "xb.jsonl", jsonl_rows(xb))
    with raises("xb.jsonl: an ids file is only used with .npy vectors"):
        load_embeddings(jsonl_path, ids_path=tmp_path / "ids.txt")
    np.save(tmp_path / "xb.npy", xb)
    with raises("xb.npy: a .npy matrix has no metadata columns"):
        load_embeddings(tmp_path / "xb.npy", metadata_fields=["category"])


def test_bad_metadata(tmp_path: Path, xb: npt.NDArray[np.float32]) -> None:
    rows: list[Any] = jsonl_rows(xb)
    rows[2]["category"] = ["a", "b"]
    path = write_jsonl(tmp_path / "xb.jsonl", rows)
    with raises("xb.jsonl: line 3 (row 2, 0-based), id 'c': metadata field 'category' is ['a', 'b']"):
        load_embeddings(path, metadata_fields=["category"])
    with raises("xb.jsonl: metadata field(s) ['brand'] appear in no row"):
        load_embeddings(path, metadata_fields=["brand"])
    columns = {"id": STR_IDS, "vector": vector_column(xb, pa.float32()), "price": [1.0] * N}
    pq_path = write_parquet(tmp_path / "xb.parquet", columns)
    with raises("xb.parquet: no metadata column 'brand' (columns: id, vector, price)"):
        load_embeddings(pq_path, metadata_fields=["brand"])
    with raises("xb.parquet: metadata column 'price' has type double"):
        load_embeddings(pq_path, metadata_fields=["price"])


BAD_QUERIES: dict[str, tuple[Case, str]] = {
    "wrong dim npy": (npy(np.ones((3, D + 1), np.float32), "q.npy"), "q.npy: queries have dimension 5, expected 4"),
    "wrong dim jsonl": (
        raw("q.jsonl", b"[1, 2, 3, 4]\n\n[1, 2, 3]\n"),
        "q.jsonl: line 3 (row 1, 0-based): vector has 3 values, expected 4 (the index dimension)",
    ),
    "nan npy": (
        lambda tmp, xb: npy(nan_rows(xb, 4), "q.npy")(tmp, xb),
        "q.npy: 1 row(s) contain NaN or Inf; the first is row 4 (0-based)",
    ),
    "infinity jsonl": (
        raw("q.jsonl", b'{"vector": [1, 2, 3, 4]}\n{"vector": [1, Infinity, 3, 4]}\n'),
        "q.jsonl: 1 row(s) contain NaN or Inf; the first is row 1 (0-based)",
    ),
    "missing vector key": (raw("q.jsonl", b'{"name": "mike"}\n'), "q.jsonl: line 1 (row 0, 0-based): missing key"),
    "non-numeric": (raw("q.jsonl", b'["1", 2, 3, 4]\n'), "q.jsonl: line 1 (row 0, 0-based): vector entry 0 (0-based)"),
    "malformed": (raw("q.jsonl", b"[1, 2, 3, 4]\n[1, 2,\n"), "q.jsonl: line 2: malformed JSON"),
    "empty jsonl": (raw("q.jsonl", b"\n"), "q.jsonl: no queries"),
    "empty npy": (npy(np.ones((0, D), np.float32), "q.npy"), "q.npy: no rows"),
    "int npy": (npy(np.ones((2, D), np.int32), "q.npy"), "q.npy: dtype int32 is not supported"),
    "parquet": (raw("q.parquet", b""), "q.parquet: unsupported format '.parquet'; expected one of .npy, .jsonl"),
}


@pytest.mark.parametrize("case", BAD_QUERIES.values(), ids=BAD_QUERIES.keys())
def test_bad_queries(tmp_path: Path, xb: npt.NDArray[np.float32], case: tuple[Case, str]) -> None:
    make, message = case
    with raises(message):
        load_queries(make(tmp_path, xb), D)


def test_nonfinite_counted_across_blocks(
    tmp_path: Path, xb: npt.NDArray[np.float32], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "_BLOCK_VALUES", 2 * D)  # two rows per block
    np.save(tmp_path / "xb.npy", nan_rows(xb, 3, 4, 5))
    with raises("xb.npy: 3 row(s) contain NaN or Inf; the first is row 3 (0-based), id 3"):
        load_embeddings(tmp_path / "xb.npy")


def test_unreadable_file_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jsonl(tmp_path / "xb.jsonl", [{"id": "a", "vector": [1.0]}])

    def denied(*args: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(hashlib, "file_digest", denied)
    with raises("xb.jsonl: cannot read the file (Permission denied)"):
        load_embeddings(path)


def test_npy_conversion_needs_one_float32_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n, d = 20_000, 64
    np.save(tmp_path / "xb.npy", np.random.default_rng(1338).standard_normal((n, d)))  # float64, 10 MB
    monkeypatch.setattr(inputs, "_BLOCK_VALUES", 1 << 16)
    tracemalloc.start()
    try:
        emb = load_embeddings(tmp_path / "xb.npy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert emb.vectors.nbytes == n * d * 4
    assert peak < 1.2 * emb.vectors.nbytes


@pytest.mark.parametrize("bad_id", ["", "a\x00"])
def test_empty_or_nul_string_id_rejected(tmp_path: Path, bad_id: str) -> None:
    path = tmp_path / "e.jsonl"
    rows = [{"id": "ok", "vector": [1.0, 2.0]}, {"id": bad_id, "vector": [1.0, 3.0]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match="row 1"):
        load_embeddings(path)

"""The on-disk index format shared by `index_builder` (writer) and `api` (reader).

A published index is a directory ``ROOT/<version>/`` holding the files named in `layout`, and
``ROOT/current`` is a symlink to the version being served.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Result", "SearchError", "Searcher"]


def __getattr__(name: str) -> Any:
    """`from index_format import Searcher` without importing faiss for users of the file layout alone."""
    if name in __all__:
        from index_format import searcher

        return getattr(searcher, name)
    raise AttributeError(f"module 'index_format' has no attribute {name!r}")

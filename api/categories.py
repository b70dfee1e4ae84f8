"""Item counts per category of each metadata field (GET /index `categories`)."""

from __future__ import annotations

import numpy as np

from index_format.reader import IndexReader


def category_counts(reader: IndexReader) -> dict[str, dict[str, int]]:
    """field -> {category name: number of products}; products without a value for the field are not counted."""
    out = {}
    for field_name, names in reader.manifest.metadata.items():
        codes = np.asarray(reader.metadata_codes[field_name])
        counts = np.bincount(codes[codes >= 0], minlength=len(names))
        out[field_name] = {name: int(count) for name, count in zip(names, counts.tolist(), strict=True)}
    return out

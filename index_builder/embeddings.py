"""The in-memory catalogue the builder works on, whatever file format it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


class InputError(Exception):
    """Bad input: the message names the problem and where (file, row, id or column). CLI exit code 2."""


@dataclass
class Embeddings:
    """ids: int64 array or list of str (unique); vectors: (N, d) float32, C-contiguous, finite;
    metadata: categorical field -> one value per row (str, or None when missing)."""

    ids: npt.NDArray[np.int64] | list[str]
    vectors: npt.NDArray[np.float32]
    metadata: dict[str, list[str | None]] = field(default_factory=dict)
    source_name: str = ""
    source_sha256: str = ""
    ids_source_name: str = ""  # a separate ids file (.npy vectors only), recorded next to the vectors' file
    ids_source_sha256: str = ""

    @property
    def id_type(self) -> str:
        return "str" if isinstance(self.ids, list) else "int"

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

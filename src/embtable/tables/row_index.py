"""`RowIndex`: where the latest logged value of each row lies — a growable hash map from
row numbers to byte offsets (the numba open-addressing kernels), kept at most half full."""

from __future__ import annotations

from typing import Any

import numpy as np


def _hashing() -> Any:
    from ..kernels.cpu import hashing

    return hashing


class RowIndex:
    """Row number (int64 >= 0) -> byte offset, for the rows put so far."""

    def __init__(self, capacity: int = 8) -> None:
        self._bits = max(3, int(2 * capacity - 1).bit_length())
        self._keys = np.full(1 << self._bits, -1, np.int64)
        self._values = np.zeros(1 << self._bits, np.int64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._keys.nbytes + self._values.nbytes

    def find(self, rows: np.ndarray) -> np.ndarray:
        """The offset of each of `rows` (int64), -1 where the row was never put."""
        out = np.empty(rows.shape[0], np.int64)
        _hashing().find(self._keys, self._values, self._bits, rows, out)
        return out

    def put(self, rows: np.ndarray, offsets: np.ndarray) -> None:
        """Map each of `rows` (int64, distinct) to its offset, replacing earlier ones."""
        if 2 * (self._count + rows.shape[0]) > self._keys.shape[0]:
            self._grow(self._count + rows.shape[0])
        self._count += _hashing().upsert(self._keys, self._values, self._bits, rows, offsets)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row put, ascending, and its offset."""
        present = self._keys >= 0
        rows, offsets = self._keys[present], self._values[present]
        order = np.argsort(rows)
        return rows[order], offsets[order]

    def _grow(self, count: int) -> None:
        present = self._keys >= 0  # inserted in the map's own order: no sort
        rows, offsets = self._keys[present], self._values[present]
        bigger = RowIndex(2 * count)
        _hashing().insert(bigger._keys, bigger._values, bigger._bits, rows, offsets)
        bigger._count = rows.shape[0]
        self._bits, self._keys, self._values, self._count = bigger._bits, bigger._keys, bigger._values, bigger._count

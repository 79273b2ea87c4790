"""Copying table rows between the files' mappings, a file-backed table's cache and the
blocks written back: the threaded row-copy kernels over each array's rows seen as machine
words, for any dtype, and for a field of a record array (a column slice of its bytes).
NumPy's fancy indexing copies such rows one element at a time, several times slower."""

from __future__ import annotations

from typing import Any

import numpy as np


def _kernels() -> Any:
    """The numba row kernels, imported (and numba with them) on first use."""
    from ..kernels.cpu import rows

    return rows


def row_units(array: np.ndarray) -> np.ndarray:
    """`array`'s rows (its first axis) as a 2-D view of the widest unsigned words that tile
    them: ``[rows, words]``, sharing memory. Each row's values must be contiguous."""
    rows = array.reshape(array.shape[0], -1)
    data = rows.view(np.uint8)
    for size in (8, 4, 2):
        if data.shape[1] % size == 0 and rows.strides[0] % size == 0 and rows.ctypes.data % size == 0:
            return data.view(f"u{size}")
    return data


def copy_rows(source: np.ndarray, source_rows: np.ndarray, target: np.ndarray, target_rows: np.ndarray) -> None:
    """``target[target_rows] = source[source_rows]`` (int64 row numbers; rows of one size)."""
    if source_rows.shape[0]:
        _kernels().copy_rows(row_units(source), source_rows, row_units(target), target_rows)


def zero_rows(target: np.ndarray, rows: np.ndarray) -> None:
    """``target[rows] = 0``."""
    if rows.shape[0]:
        _kernels().zero_rows(row_units(target), rows)


def taken(source: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``source[rows]`` as a new C-contiguous array."""
    out = np.empty((rows.shape[0], *source.shape[1:]), source.dtype)
    copy_rows(source, rows, out, np.arange(rows.shape[0], dtype=np.int64))
    return out

"""The CPU backend: NumPy arrays.

Every backend module offers these names, over its own array type: ``xp`` (an array
namespace with NumPy's names, for element-wise math and reductions), ``device``,
``to_host``, ``from_host``, ``dtype_of``, ``astype``, ``zeros``, ``ones``, ``concat``,
``take_rows``, ``add_rows_``, ``coalesce_rows``, ``unique``, ``occurrences``, ``row_norms``,
``renorm_rows_``, ``out_of_range``.
Arguments are already validated (dtypes, shapes, index ranges) by the caller.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..device import Device
from ..dtype import DType

xp = np
device = Device.CPU


def to_host(array: np.ndarray) -> np.ndarray:
    """A NumPy array with `array`'s values (the array itself: it already lives on the host)."""
    return array


def from_host(array: np.ndarray) -> np.ndarray:
    """`array` as this backend's array, without copying when possible."""
    return array


def dtype_of(array: np.ndarray) -> DType:
    return DType.from_numpy(array.dtype)


def astype(array: np.ndarray, dtype: DType, copy: bool = False) -> np.ndarray:
    return array.astype(dtype.numpy, copy=copy)


def zeros(shape: Sequence[int], dtype: DType) -> np.ndarray:
    return np.zeros(shape, dtype.numpy)


def ones(shape: Sequence[int], dtype: DType) -> np.ndarray:
    return np.ones(shape, dtype.numpy)


def concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays)


def take_rows(table: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``table[indices]``: rows gathered into a new array of shape ``[*indices.shape, dim]``."""
    return np.take(table, indices, axis=0)


def add_rows_(table: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``table[rows[i]] += values[i]`` for every i, in order (repeated rows add up)."""
    np.add.at(table, rows, values)


def coalesce_rows(rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct `rows` (ascending, int64) and, for each, the sum of its `values`."""
    distinct, inverse = np.unique(rows, return_inverse=True)
    sums = np.zeros((len(distinct),) + values.shape[1:], values.dtype)
    np.add.at(sums, inverse, values)
    return distinct.astype(np.int64, copy=False), sums


def unique(indices: np.ndarray) -> np.ndarray:
    """The distinct values of `indices`, ascending."""
    return np.unique(indices)


def occurrences(indices: np.ndarray) -> np.ndarray:
    """For each element of the 1-D `indices`, how often its value occurs in `indices`."""
    _, inverse, counts = np.unique(indices, return_inverse=True, return_counts=True)
    return counts[inverse]


def row_norms(rows: np.ndarray, norm_type: float) -> np.ndarray:
    """The `norm_type`-norm of each row (last axis), in at least float32."""
    acc = np.promote_types(rows.dtype, np.float32)
    magnitudes = np.abs(rows.astype(acc, copy=False))
    if norm_type == np.inf:
        return magnitudes.max(axis=-1, initial=0)
    if norm_type == 1:
        return magnitudes.sum(axis=-1)
    if norm_type == 2:
        return np.sqrt(np.einsum("...d,...d->...", magnitudes, magnitudes))
    return (magnitudes**norm_type).sum(axis=-1) ** (1.0 / norm_type)


def renorm_rows_(table: np.ndarray, rows: np.ndarray, max_norm: float, norm_type: float) -> None:
    """Rescale, in place, each listed row whose norm exceeds `max_norm` to norm `max_norm`."""
    norms = row_norms(table[rows], norm_type)
    too_long = norms > max_norm
    rows, norms = rows[too_long], norms[too_long]
    scale = max_norm / (norms + 1e-7)
    table[rows] = (table[rows] * scale[:, None]).astype(table.dtype)


def out_of_range(indices: np.ndarray, limit: int) -> tuple[tuple[int, ...], int] | None:
    """The position and value of the first index outside ``[0, limit)``, or None."""
    if indices.size == 0 or (indices.min() >= 0 and indices.max() < limit):
        return None
    flat = int(np.flatnonzero((indices < 0) | (indices >= limit))[0])
    position = tuple(int(i) for i in np.unravel_index(flat, indices.shape))
    return position, int(indices.reshape(-1)[flat])

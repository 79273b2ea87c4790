"""The CPU backend: NumPy arrays.

Every backend module offers these names, over its own array type:
``to_host``, ``from_host``, ``astype``, ``take_rows``, ``unique``, ``row_norms``,
``renorm_rows_``, ``clip_rows``, ``out_of_range``, ``matmul``, ``dtype_of``.
Arguments are already validated (dtypes, shapes, index ranges) by the caller.
"""

from __future__ import annotations

import numpy as np

from ..device import Device
from ..dtype import DType

device = Device.CPU


def to_host(array: np.ndarray) -> np.ndarray:
    """A NumPy array with `array`'s values (the array itself: it already lives on the host)."""
    return array


def from_host(array: np.ndarray) -> np.ndarray:
    """`array` as this backend's array, without copying when possible."""
    return array


def astype(array: np.ndarray, dtype: DType, copy: bool = False) -> np.ndarray:
    return array.astype(dtype.numpy, copy=copy)


def take_rows(table: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``table[indices]``: rows gathered into a new array of shape ``[*indices.shape, dim]``."""
    return np.take(table, indices, axis=0)


def unique(indices: np.ndarray) -> np.ndarray:
    """The distinct values of `indices`, ascending."""
    return np.unique(indices)


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


def clip_rows(rows: np.ndarray, max_norm: float, norm_type: float) -> np.ndarray:
    """`rows` with each row longer than `max_norm` scaled by ``max_norm / (norm + 1e-7)``."""
    scale = np.minimum(1.0, max_norm / (row_norms(rows, norm_type) + 1e-7))
    return (rows * scale[..., None]).astype(rows.dtype, copy=False)


def out_of_range(indices: np.ndarray, limit: int) -> tuple[tuple[int, ...], int] | None:
    """The position and value of the first index outside ``[0, limit)``, or None."""
    if indices.size == 0 or (indices.min() >= 0 and indices.max() < limit):
        return None
    flat = int(np.flatnonzero((indices < 0) | (indices >= limit))[0])
    position = tuple(int(i) for i in np.unravel_index(flat, indices.shape))
    return position, int(indices.reshape(-1)[flat])


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b


def dtype_of(array: np.ndarray) -> DType:
    return DType.from_numpy(array.dtype)

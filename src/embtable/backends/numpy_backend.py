"""The CPU backend: NumPy arrays.

Every backend module offers these names, over its own array type: ``xp`` (an array
namespace with NumPy's names, for element-wise math and reductions), ``owns``, ``to_host``,
``from_host``, ``dtype_of``, ``astype``, ``zeros``, ``ones``, ``concat``, ``index_array``,
``bincount``, ``take_rows``, ``distinct``, ``group_rows``, ``scatter_sum``, ``add_rows_``,
``renorm_rows_``, ``out_of_range``, ``fused_step``.
Arguments are already validated (dtypes, shapes, index ranges) by the caller.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..dtype import DType
from ..norms import p_norm
from .host_cache import host_cache

xp = np


def to_host(array: np.ndarray) -> np.ndarray:
    """A NumPy array with `array`'s values (the array itself: it already lives on the host)."""
    return array


def from_host(array: np.ndarray) -> np.ndarray:
    """`array` as this backend's array, without copying when possible."""
    return array


def owns(array: object) -> bool:
    """Whether `array` is this backend's (a NumPy array)."""
    return isinstance(array, np.ndarray)


def dtype_of(array: np.ndarray) -> DType:
    return DType.from_numpy(array.dtype)


def astype(array: np.ndarray, dtype: DType, copy: bool = False) -> np.ndarray:
    """`array` as `dtype`, row-major (C order); a copy only when needed or asked."""
    return array.astype(dtype.numpy, order="C", copy=copy)


def zeros(shape: Sequence[int], dtype: DType) -> np.ndarray:
    return np.zeros(shape, dtype.numpy)


def ones(shape: Sequence[int], dtype: DType) -> np.ndarray:
    return np.ones(shape, dtype.numpy)


def concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays)


def _kernels():
    """The numba kernels, imported (and so numba itself) on first use only."""
    from . import kernels_cpu

    return kernels_cpu


_KERNEL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: Below this many output bytes NumPy's ``take`` beats waking the gather kernel's threads
#: (64 rows of 64 floats: 2 us against 20 us; even at 1 MiB on 2 cores).
SMALL_GATHER_BYTES = 2**20


def _raw(array: np.ndarray) -> np.ndarray:
    """A 2-D `array` viewed as the widest unsigned integers that tile its rows: numba copies
    any dtype that way, and wide words copy faster."""
    row_bytes = array.shape[1] * array.dtype.itemsize
    return array.view(f"u{next(w for w in (8, 4, 2, 1) if row_bytes % w == 0)}")


def take_rows(table: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``table[indices]``: rows gathered into a new array of shape ``[*indices.shape, dim]``."""
    small = indices.size * table.shape[1] * table.itemsize < SMALL_GATHER_BYTES
    if small or not table.flags.c_contiguous:  # (a view, e.g. a transposed weight: rare)
        return np.take(table, indices, axis=0)
    out = host_cache.empty((indices.size, table.shape[1]), table.dtype)
    _kernels().gather(_raw(table), indices.reshape(-1), _raw(out))
    return out.reshape(indices.shape + (table.shape[1],))


def index_array(indices: np.ndarray) -> np.ndarray:
    """Validated `indices` as int64 (one kernel specialisation for every index dtype)."""
    return indices.astype(np.int64, copy=False)


def bincount(indices: np.ndarray, length: int) -> np.ndarray:
    """How often each value in ``[0, length)`` occurs in the int64 `indices`."""
    return np.bincount(indices.reshape(-1), minlength=length)


def distinct(indices: np.ndarray, num_rows: int) -> np.ndarray:
    """The distinct values of `indices` (all in ``[0, num_rows)``), in no particular order."""
    return _kernels().distinct(indices.reshape(-1), num_rows)


def group_rows(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flat `indices` grouped by value: ``(rows, counts, slots)`` — the distinct values
    ascending (int64), how often each occurs, and for each position the number of its value
    among `rows`. Memory is O(len(indices)), whatever the values."""
    indices = indices.reshape(-1)
    shift = max(int(indices.size).bit_length(), 1)
    if indices.size == 0 or int(indices.max()) >= 1 << (63 - shift):  # keys would overflow
        rows, slots, counts = np.unique(indices, return_inverse=True, return_counts=True)
        return rows.astype(np.int64), counts, slots.reshape(-1)
    kernels = _kernels()
    keys = kernels.sort_keys(indices, shift)
    keys.sort()
    return kernels.split_keys(keys, shift)


def scatter_sum(values: np.ndarray, slots: np.ndarray, rows: int, targets: np.ndarray | None = None,
                counts: np.ndarray | None = None) -> np.ndarray:
    """A new ``[rows, dim]`` array whose row ``targets[slots[i]]`` sums ``values[i]`` over
    every i (``slots[i]`` itself when `targets` is None; a negative target drops i), in
    position order; with `counts`, each row is then divided by its slot's count. Rows that
    get nothing are zero. Deterministic whatever the number of threads."""
    none = np.empty(0, np.int64)
    targets = none if targets is None else targets
    counts = none if counts is None else counts
    if values.dtype in _KERNEL_FLOATS:
        import numba

        out = host_cache.empty((rows, values.shape[1]), values.dtype)
        _kernels().scatter_sum(values, slots, targets, counts, out, numba.get_num_threads())
        return out
    out = np.zeros((rows, values.shape[1]), values.dtype)  # other dtypes: rare, plain NumPy
    destinations = slots if targets.size == 0 else targets[slots]
    keep = destinations >= 0
    np.add.at(out, destinations[keep], values[keep])
    if counts.size:
        touched = np.flatnonzero(counts)
        destinations = touched if targets.size == 0 else targets[touched]
        keep = destinations >= 0
        out[destinations[keep]] /= counts[touched[keep], None]
    return out


def add_rows_(table: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``table[rows[i]] += values[i]`` for distinct `rows`."""
    table[rows] += values


def renorm_rows_(table: np.ndarray, rows: np.ndarray, max_norm: float, norm_type: float) -> None:
    """Rescale, in place, each listed (distinct) row whose norm exceeds `max_norm` by
    ``max_norm / (norm + 1e-7)``."""
    if table.dtype in _KERNEL_FLOATS:
        _kernels().renorm(table, rows, float(max_norm), float(norm_type))
        return
    norms = p_norm(np, table[rows].astype(np.float32), norm_type, (1,))[:, 0]  # half precision
    too_long = norms > max_norm
    rows, norms = rows[too_long], norms[too_long]
    table[rows] = (table[rows] * (max_norm / (norms + 1e-7))[:, None]).astype(table.dtype)


def out_of_range(indices: np.ndarray, limit: int) -> tuple[tuple[int, ...], int] | None:
    """The position and value of the first index outside ``[0, limit)``, or None."""
    if indices.size == 0 or (indices.min() >= 0 and indices.max() < limit):
        return None
    flat = int(np.flatnonzero((indices < 0) | (indices >= limit))[0])
    position = tuple(int(i) for i in np.unravel_index(flat, indices.shape))
    return position, int(indices.reshape(-1)[flat])


def fused_step(kind: str, param: np.ndarray, rows: np.ndarray | None, grad: np.ndarray,
               buffers: Sequence[np.ndarray], scalars: Sequence[float]) -> bool:
    """Run optimizer `kind`'s fused kernel on a float32/float64 parameter in place (every
    element, or the listed `rows` of a row-sparse gradient); False when there is none."""
    if param.dtype not in _KERNEL_FLOATS or not all(a.flags.c_contiguous for a in (param, *buffers)):
        return False
    kernels = _kernels()
    grad = np.ascontiguousarray(grad)
    if rows is None:
        flat = [a.reshape(-1) for a in (param, grad, *buffers)]
        getattr(kernels, f"{kind}_dense")(*flat, *scalars)
    else:
        getattr(kernels, f"{kind}_rows")(param, rows, grad, *buffers, *scalars)
    return True

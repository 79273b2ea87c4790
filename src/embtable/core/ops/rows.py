"""Rows of a table: checked indices, and looked-up rows whose gradient flows into the table.

These are the array-level halves of a lookup; `embtable.nn.lookup` holds its semantics,
and a table storage (`embtable.tables`) gathers the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backends import BagGradient, Backend
from ...dtype import accumulation_dtype
from ...errors import DeviceError, DTypeError, IndexOutOfRangeError
from ...interop import host_array
from ...norms import p_norm, p_norm_grad
from ..autograd import is_grad_enabled, record
from ..ieee import ieee
from ..sparse_grad import RowSparseGrad
from ..tensor import Tensor, wrap


def checked_indices(indices: Any, limit: int, backend: Backend, what: str, name: str = "index") -> Tensor:
    """`indices` (a tensor on `backend`'s device, a NumPy array, a list or any array
    object) as an int64 tensor there, checked in one pass to be integers in ``[0, limit)``;
    otherwise `DTypeError`, or `IndexOutOfRangeError` naming the first bad position and
    value (an "index", or `name`) and `what` they point into (a phrase in which
    ``{limit}`` stands for `limit`), before anything is computed."""
    if isinstance(indices, Tensor):
        if indices._backend is not backend:
            raise DeviceError(f"indices are on {indices.device} but {what.format(limit=limit)} is on "
                              f"{backend.device}")
        array = indices._data
    else:
        host = host_array(indices)
        if host.size == 0 and isinstance(indices, (list, tuple)):
            host = host.astype(np.int64)  # [] reads as float64; an empty list is no float
        array = backend.from_host(host)
    dtype = backend.dtype_of(array)
    if not dtype.is_integer:
        raise DTypeError(f"indices must have an integer dtype (I8-I64, U8-U64), got {dtype.name}")
    bad = backend.first_out_of_range(array, limit)
    if bad >= 0:
        position = tuple(int(i) for i in np.unravel_index(bad, tuple(array.shape)))
        value = int(backend.to_host(array).reshape(-1)[bad])
        raise IndexOutOfRangeError(f"{name} {value} at position {position} is out of range for "
                                   f"{what.format(limit=limit)}")
    return wrap(backend.index_array(array), backend)


def gathered(rows: Tensor, table: Tensor, indices: Tensor, *, padding_idx: int | None,
             scale_grad_by_freq: bool, sparse: bool) -> Tensor:
    """`rows` (``table[indices]``, gathered by the table's storage) as the result of a lookup
    whose gradient flows into `table`: summed per row; divided by the row's count in
    `indices` when `scale_grad_by_freq` (padding positions counted); none for the
    `padding_idx` row; dense, or a `RowSparseGrad` when `sparse` (`table_grad`)."""
    if not (table._requires_grad and is_grad_enabled()):
        return rows
    backend = table._backend

    def backward(g: Any) -> tuple[Any]:
        return (table_grad(g, indices._data, table, padding_idx, scale_grad_by_freq, sparse),)

    return record(rows._data, backend, (table,), backward, saves=())


def table_grad(g: Any, indices: Any, table: Tensor, padding_idx: int | None, scale_grad_by_freq: bool,
               sparse: bool, bags: BagGradient | None = None) -> Any:
    """The gradient of `table` from that of its looked-up rows (`g`, ``[*indices.shape,
    dim]``) or, with `bags`, of a pooled lookup's bags (``[bags, dim]``, shared out to the
    positions as `bags` says): summed per row in position order, divided by the row's
    count in `indices` when `scale_grad_by_freq` (padding positions counted), none for
    the `padding_idx` row; dense, or a `RowSparseGrad` when `sparse` (never allocating the
    table's shape)."""
    backend = table._backend
    num_rows, dim = table.shape
    g = backend.astype(g, accumulation_dtype(table.dtype)).reshape(-1, dim)
    flat = indices.reshape(-1)
    if not sparse:
        counts = backend.bincount(flat, num_rows) if scale_grad_by_freq else None
        out = backend.scatter_sum(g, flat, num_rows, counts=counts, bags=bags)
        if padding_idx is not None:
            out[padding_idx] = 0
        return out
    xp = backend.xp
    rows, counts, slots = backend.group_rows(flat, num_rows)
    kept = rows != (-1 if padding_idx is None else padding_idx)
    targets = xp.where(kept, xp.cumsum(kept) - 1, -1)
    values = backend.scatter_sum(g, slots, int(kept.sum()), targets, counts if scale_grad_by_freq else None,
                                 bags=bags)
    return RowSparseGrad.from_arrays(rows[kept], values, table.shape, backend)


@ieee
def clipped(rows: Tensor, max_norm: float, norm_type: float) -> Tensor:
    """Each row of `rows` (the last axis) scaled by ``min(1, max_norm / (norm + 1e-7))`` of
    its `norm_type`-norm, computed in the accumulation dtype, and differentiated through
    that scale: ``max_norm_mode="clip"``, which never changes the table."""
    backend = rows._backend
    xp, last = backend.xp, (rows.ndim - 1,)
    wide = backend.astype(rows._data, accumulation_dtype(rows.dtype))
    norms = p_norm(xp, wide, norm_type, last)
    shrink = max_norm / (norms + 1e-7)
    clip = shrink < 1
    scale = xp.where(clip, shrink, 1)

    def backward(g: Any) -> tuple[Any]:
        along = xp.sum(g * wide, axis=-1, keepdims=True)
        d_scale = xp.where(clip, -shrink / (norms + 1e-7), 0)
        return (g * scale + along * d_scale * p_norm_grad(xp, wide, norms, norm_type, last),)

    return record(backend.astype(wide * scale, rows.dtype), backend, (rows,), backward, saves=())

"""The embedding lookup shared by `Embedding` and `functional.embedding`: index validation,
``max_norm`` (renorm or clip), the gather, and the table's gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import accumulation_dtype, record
from ..errors import DeviceError, DTypeError, IndexOutOfRangeError
from ..interop import host_array
from ..norms import p_norm, p_norm_grad
from ..sparse import RowSparseGrad
from ..tensor import Tensor
from .options import EmbeddingOptions

def checked_indices(indices: Any, weight: Tensor) -> Any:
    """`indices` as a backend array on `weight`'s device, checked to be integers in
    ``[0, rows)``; raises before anything is computed."""
    if isinstance(indices, Tensor):
        if indices.device != weight.device:
            raise DeviceError(f"indices are on {indices.device} but the embedding table is on {weight.device}")
        array = indices._data
    else:
        host = host_array(indices)
        if host.size == 0 and isinstance(indices, (list, tuple)):
            host = host.astype(np.int64)  # [] reads as float64; an empty list is no float
        array = weight._backend.from_host(host)
    dtype = weight._backend.dtype_of(array)
    if not dtype.is_integer:
        raise DTypeError(f"indices must have an integer dtype (I8-I64, U8-U64), got {dtype.name}")
    rows = weight.shape[0]
    bad = weight._backend.out_of_range(array, rows)
    if bad is not None:
        position, value = bad
        raise IndexOutOfRangeError(f"index {value} at position {position} is out of range "
                                   f"for an embedding table of {rows} rows")
    return weight._backend.index_array(array)


def lookup(weight: Tensor, indices: Any, options: EmbeddingOptions) -> Tensor:
    """``weight[indices]`` with `options` applied; see `Embedding` for the semantics."""
    array = checked_indices(indices, weight)
    backend, table = weight._backend, weight._data
    clip = options.max_norm is not None and options.max_norm_mode == "clip"
    if options.max_norm is not None and not clip:
        backend.renorm_rows_(table, backend.distinct(array, table.shape[0]), options.max_norm,
                              options.norm_type)
        weight._modified_in_place()
    rows = backend.take_rows(table, array)
    if not clip:
        return record(rows, weight, (weight,), lambda g: (_table_grad(g, array, weight, options),),
                      saves=())

    # clip: out = rows * min(1, max_norm / (norm + eps)), differentiated through the scale
    xp, p, last = backend.xp, options.norm_type, (rows.ndim - 1,)
    wide = backend.astype(rows, accumulation_dtype(weight.dtype))
    norms = p_norm(xp, wide, p, last)
    shrink = options.max_norm / (norms + 1e-7)
    clipped = shrink < 1
    scale = xp.where(clipped, shrink, 1)

    def backward(g: Any) -> tuple[Any]:
        along = xp.sum(g * wide, axis=-1, keepdims=True)
        d_scale = xp.where(clipped, -shrink / (norms + 1e-7), 0)
        g_rows = g * scale + along * d_scale * p_norm_grad(xp, wide, norms, p, last)
        return (_table_grad(g_rows, array, weight, options),)

    out = backend.astype(wide * scale, weight.dtype)
    return record(out, weight, (weight,), backward, saves=())


def _table_grad(g_rows: Any, indices: Any, weight: Tensor, options: EmbeddingOptions) -> Any:
    """The gradient of the table from the gradient of the looked-up rows: summed per row,
    divided by the row's count in `indices` if `scale_grad_by_freq` (padding positions
    counted), the padding row left out; dense, or a `RowSparseGrad` for sparse tables."""
    backend, xp = weight._backend, weight._backend.xp
    num_rows, dim = weight.shape
    g = backend.astype(g_rows, accumulation_dtype(weight.dtype)).reshape(-1, dim)
    flat = indices.reshape(-1)
    if not options.sparse:
        counts = backend.bincount(flat, num_rows) if options.scale_grad_by_freq else None
        out = backend.scatter_sum(g, flat, num_rows, counts=counts)
        if options.padding_idx is not None:
            out[options.padding_idx] = 0
        return out
    rows, counts, slots = backend.group_rows(flat)
    kept = rows != (-1 if options.padding_idx is None else options.padding_idx)
    targets = xp.where(kept, xp.cumsum(kept) - 1, -1)
    values = backend.scatter_sum(g, slots, int(kept.sum()), targets,
                                 counts if options.scale_grad_by_freq else None)
    return RowSparseGrad._from_arrays(rows[kept], values, weight.shape, weight.device)

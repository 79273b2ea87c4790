"""The embedding lookup shared by `Embedding` and `functional.embedding`: its options and
their validation, index validation, ``max_norm`` and the gather itself.
"""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..autograd import accumulation_dtype, record
from ..errors import DeviceError, DTypeError, IndexOutOfRangeError, InvalidArgumentError
from ..interop import host_array
from ..norms import p_norm, p_norm_grad
from ..sparse import RowSparseGrad
from ..tensor import Tensor

MAX_NORM_MODES = ("renorm", "clip")


@dataclass(frozen=True)
class EmbeddingOptions:
    """Everything that shapes a lookup besides the table. Build with `checked`."""

    padding_idx: int | None = None
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    sparse: bool = False
    max_norm_mode: str = "renorm"

    @classmethod
    def checked(cls, num_embeddings: int, padding_idx: Any = None, max_norm: Any = None,
                norm_type: Any = 2.0, scale_grad_by_freq: Any = False, sparse: Any = False,
                max_norm_mode: Any = "renorm") -> EmbeddingOptions:
        """Validated options for a table of `num_embeddings` rows; a negative `padding_idx`
        is normalised (``-1`` -> ``num_embeddings - 1``)."""
        if max_norm_mode not in MAX_NORM_MODES:
            raise InvalidArgumentError(f"max_norm_mode must be one of {MAX_NORM_MODES}, got {max_norm_mode!r}")
        return cls(
            padding_idx=_padding_idx(padding_idx, num_embeddings),
            max_norm=None if max_norm is None else _positive_float("max_norm", max_norm),
            norm_type=_positive_float("norm_type", norm_type),
            scale_grad_by_freq=_flag("scale_grad_by_freq", scale_grad_by_freq),
            sparse=_flag("sparse", sparse),
            max_norm_mode=max_norm_mode,
        )

    def non_defaults(self) -> dict[str, Any]:
        """The options that differ from their defaults, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}


def positive_int(name: str, value: Any) -> int:
    """`value` as an int >= 1, or `InvalidArgumentError` naming `name`."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
    return number


def _padding_idx(value: Any, num_embeddings: int) -> int | None:
    if value is None:
        return None
    try:
        index = operator.index(value)
    except TypeError:
        index = num_embeddings  # reported as out of range below
    if isinstance(value, bool) or not -num_embeddings <= index < num_embeddings:
        raise InvalidArgumentError(f"padding_idx must be an int in [{-num_embeddings}, "
                                   f"{num_embeddings}) for {num_embeddings} rows, got {value!r}")
    return index % num_embeddings


def _positive_float(name: str, value: Any) -> float:
    number = float(value) if isinstance(value, numbers.Real) else math.nan
    if isinstance(value, bool) or not number > 0:
        raise InvalidArgumentError(f"{name} must be a number > 0 (inf allowed), got {value!r}")
    return number


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
    return bool(value)


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
        weight._replace_data(table)  # modified in place: a pending backward that read it refuses
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
        out = backend.zeros((num_rows, dim), backend.dtype_of(g))
        counts = backend.bincount(flat, num_rows) if options.scale_grad_by_freq else None
        backend.scatter_add_(out, g, flat, counts=counts)
        if options.padding_idx is not None:
            out[options.padding_idx] = 0
        return out
    rows, counts, slots = backend.group_rows(flat)
    kept = rows != (-1 if options.padding_idx is None else options.padding_idx)
    targets = xp.where(kept, xp.cumsum(kept) - 1, -1)
    values = backend.zeros((int(kept.sum()), dim), backend.dtype_of(g))
    backend.scatter_add_(values, g, slots, targets, counts if options.scale_grad_by_freq else None)
    return RowSparseGrad._from_arrays(rows[kept], values, weight.shape, weight.device)

"""Reductions: sum, mean, max and p-norms over axes, with gradients."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ...dtype import DType, accumulation_dtype, get_default_dtype
from ...errors import InvalidArgumentError, ShapeError
from ...norms import p_norm, p_norm_grad
from ..autograd import record
from ..tensor import Tensor
from .elementwise import float_data


def normalized_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """`axis` (None, an int or ints, negative allowed) as sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    if not all(isinstance(i, numbers.Integral) for i in axes):
        raise ShapeError(f"axis must be an int or a tuple of ints, got {axis!r}")
    if any(not -ndim <= int(i) < ndim for i in axes):
        raise ShapeError(f"axis {axis} is out of range for a tensor of {ndim} dimensions")
    normalised = tuple(sorted(int(i) % ndim for i in axes))
    if len(set(normalised)) != len(normalised):
        raise ShapeError(f"axis {axis} repeats an axis")
    return normalised


def _expand(xp: Any, g: Any, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Any:
    """Broadcast the gradient of a reduction over `axes` back to the input's `shape`."""
    if not keepdims and axes:
        g = xp.expand_dims(g, axes)
    return xp.broadcast_to(g, shape)


def _reduce_dtype(a: Tensor) -> tuple[DType, DType]:
    """The dtype a sum over `a` accumulates in (F32 for half types) and the dtype it returns."""
    result = a.dtype if a.dtype.is_float else DType.I64 if a.dtype.is_integer or a.dtype is DType.BOOL else a.dtype
    return accumulation_dtype(result), result


def sum(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """The sum over `axis` (all axes when None); integers and bools sum to I64, half
    precision accumulates in F32."""
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    wide, result = _reduce_dtype(a)
    out = a._backend.astype(xp.sum(a._backend.astype(a._data, wide), axis=axes, keepdims=keepdims), result)
    return record(out, a._backend, (a,), lambda g: (_expand(xp, g, a.shape, axes, keepdims),), saves=())


def mean(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The mean over `axis` (all axes when None); integers give the default float dtype,
    half precision accumulates in F32."""
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    result = a.dtype if a.dtype.is_float else get_default_dtype()
    count = math.prod(a.shape[i] for i in axes)
    total = xp.sum(a._backend.astype(a._data, accumulation_dtype(result)), axis=axes, keepdims=keepdims)
    out = a._backend.astype(total / count if count else total * np.nan, result)
    return record(out, a._backend, (a,), lambda g: (_expand(xp, g, a.shape, axes, keepdims) / count,), saves=())


def max(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """The largest values; the gradient is shared equally between tied maxima (like
    ``torch.amax``)."""
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    if any(a.shape[i] == 0 for i in axes):
        raise ShapeError(f"max() over an empty axis of a tensor of shape {a.shape}")
    kept = xp.max(a._data, axis=axes, keepdims=True)
    out = kept if keepdims else xp.squeeze(kept, axis=axes)

    def backward(g: Any) -> tuple[Any]:
        winners = a._backend.astype(a._data == kept, a._backend.dtype_of(g))
        share = winners / xp.sum(winners, axis=axes, keepdims=True)
        return (_expand(xp, g, a.shape, axes, keepdims) * share,)

    return record(out, a._backend, (a,), backward)


def norm(a: Tensor, p: float = 2.0, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The p-norm over `axis` (all axes when None); p > 0, inf allowed."""
    if not (isinstance(p, numbers.Real) and p > 0):
        raise InvalidArgumentError(f"norm needs p > 0 (inf allowed), got {p!r}")
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    result = a.dtype if a.dtype.is_float else get_default_dtype()
    x = float_data(a, accumulation_dtype(result))  # half precision: F32, no overflow at 300
    kept = p_norm(xp, x, float(p), axes)
    out = a._backend.astype(kept if keepdims else xp.squeeze(kept, axis=axes), result)

    def backward(g: Any) -> tuple[Any]:
        return (_expand(xp, g, a.shape, axes, keepdims) * p_norm_grad(xp, x, kept, float(p), axes),)

    return record(out, a._backend, (a,), backward)

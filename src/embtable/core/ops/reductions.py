"""Reductions over axes, with gradients: sum, mean, max / min (NumPy's and PyTorch's
forms), amax / amin, argmax / argmin, topk and p-norms.

Every reduction takes NumPy's ``axis=`` / ``keepdims=`` or PyTorch's ``dim=`` / ``keepdim=``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from ...dtype import DType, accumulation_dtype, get_default_dtype
from ...errors import InvalidArgumentError, ShapeError
from ...norms import p_norm, p_norm_grad
from ..autograd import record
from ..ieee import ieee
from ..tensor import Tensor, wrap
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


def resolved(axis: Any, keepdims: bool, dim: Any, keepdim: bool | None) -> tuple[Any, bool]:
    """The axes and keepdims of a reduction given NumPy's or PyTorch's argument names."""
    if dim is not None:
        if axis is not None:
            raise InvalidArgumentError(f"give the axes as axis= or as dim=, not both (got axis={axis!r}, "
                                       f"dim={dim!r})")
        axis = dim
    return axis, keepdims if keepdim is None else bool(keepdim)


@ieee
def sum(a: Tensor, axis: Any = None, keepdims: bool = False, *, dim: Any = None,  # noqa: A001
        keepdim: bool | None = None) -> Tensor:
    """The sum over `axis` (all axes when None); integers and bools sum to I64, half
    precision accumulates in F32."""
    axis, keepdims = resolved(axis, keepdims, dim, keepdim)
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    wide, result = _reduce_dtype(a)
    out = a._backend.astype(xp.sum(a._backend.astype(a._data, wide), axis=axes, keepdims=keepdims), result)
    return record(out, a._backend, (a,), lambda g: (_expand(xp, g, a.shape, axes, keepdims),), saves=())


@ieee
def mean(a: Tensor, axis: Any = None, keepdims: bool = False, *, dim: Any = None,
         keepdim: bool | None = None) -> Tensor:
    """The mean over `axis` (all axes when None); integers give the default float dtype,
    half precision accumulates in F32."""
    axis, keepdims = resolved(axis, keepdims, dim, keepdim)
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    result = a.dtype if a.dtype.is_float else get_default_dtype()
    count = math.prod(a.shape[i] for i in axes)
    total = xp.sum(a._backend.astype(a._data, accumulation_dtype(result)), axis=axes, keepdims=keepdims)
    out = a._backend.astype(total / count if count else total * np.nan, result)
    return record(out, a._backend, (a,), lambda g: (_expand(xp, g, a.shape, axes, keepdims) / count,), saves=())


class ValuesIndices(NamedTuple):
    """What ``max(dim=)``, ``min(dim=)`` and ``topk`` return, as ``torch.return_types``."""

    values: Tensor
    indices: Tensor


def amax(a: Tensor, axis: Any = None, keepdims: bool = False, *, dim: Any = None,
         keepdim: bool | None = None) -> Tensor:
    """The largest values over `axis` (all axes when None); the gradient is shared equally
    between tied maxima, as ``torch.amax``."""
    return _extreme(a, *resolved(axis, keepdims, dim, keepdim), largest=True)


def amin(a: Tensor, axis: Any = None, keepdims: bool = False, *, dim: Any = None,
         keepdim: bool | None = None) -> Tensor:
    """The smallest values over `axis`; ties share the gradient, as ``torch.amin``."""
    return _extreme(a, *resolved(axis, keepdims, dim, keepdim), largest=False)


def max(a: Tensor, axis: Any = None, keepdims: bool = False, *, dim: Any = None,  # noqa: A001
        keepdim: bool | None = None) -> Tensor | ValuesIndices:
    """With ``dim=`` (one axis), PyTorch's ``(values, indices)``: the first largest value
    along it and its index, the gradient going to that index. Otherwise NumPy's form: the
    largest values over `axis` (all axes when None) as `amax`."""
    if dim is None:
        return amax(a, axis, keepdims if keepdim is None else keepdim)
    return _extreme_along(a, *resolved(axis, keepdims, dim, keepdim), largest=True)


def min(a: Tensor, axis: Any = None, keepdims: bool = False, *, dim: Any = None,  # noqa: A001
        keepdim: bool | None = None) -> Tensor | ValuesIndices:
    """The smallest values: ``(values, indices)`` with ``dim=``, else as `amin` (see `max`)."""
    if dim is None:
        return amin(a, axis, keepdims if keepdim is None else keepdim)
    return _extreme_along(a, *resolved(axis, keepdims, dim, keepdim), largest=False)


def argmax(a: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """The index (I64) of the first largest value along `dim`, or in the flattened tensor
    when `dim` is None."""
    return _arg_extreme(a, dim, keepdim, largest=True)


def argmin(a: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """The index (I64) of the first smallest value along `dim` (flattened when None)."""
    return _arg_extreme(a, dim, keepdim, largest=False)


def topk(a: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> ValuesIndices:  # noqa: A002
    """The `k` largest (`largest`) or smallest values along `dim` and their indices, in
    order (ties: the earlier index first); the gradient goes back to those indices.
    `sorted` is accepted for PyTorch's signature: the values always come in order."""
    axis = _one_axis(dim, a, "topk")
    if not (isinstance(k, numbers.Integral) and 0 <= k <= a.shape[axis]):
        raise InvalidArgumentError(f"topk needs 0 <= k <= {a.shape[axis]} (the size of dim {dim}), got k={k!r}")
    backend = a._backend
    xp = backend.xp
    keys = a._data if a.dtype.is_float else backend.astype(a._data, DType.I64)
    order = xp.argsort(-keys if largest else keys, axis=axis, kind="stable")
    indices = xp.take(order, xp.arange(int(k)), axis=axis)
    return ValuesIndices(_picked(a, indices, axis), wrap(indices, backend))


def _one_axis(dim: Any, a: Tensor, what: str) -> int:
    """`dim` as the one non-negative axis of `a` that `what` works along."""
    if not isinstance(dim, numbers.Integral):
        raise ShapeError(f"{what} takes one int dim, got {dim!r}")
    if a.ndim == 0:
        raise ShapeError(f"{what} along dim {dim} needs a tensor of at least one dimension, got a 0-d one")
    (axis,) = normalized_axes(dim, a.ndim)
    return axis


def _extreme(a: Tensor, axis: Any, keepdims: bool, largest: bool) -> Tensor:
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    if any(a.shape[i] == 0 for i in axes):
        raise ShapeError(f"{'max' if largest else 'min'}() over an empty axis of a tensor of shape {a.shape}")
    kept = (xp.max if largest else xp.min)(a._data, axis=axes, keepdims=True)
    out = kept if keepdims else xp.squeeze(kept, axis=axes)

    def backward(g: Any) -> tuple[Any]:
        winners = a._backend.astype(a._data == kept, a._backend.dtype_of(g))
        share = winners / xp.sum(winners, axis=axes, keepdims=True)
        return (_expand(xp, g, a.shape, axes, keepdims) * share,)

    return record(out, a._backend, (a,), backward, saves_output=True)  # `kept` is the output's data


def _arg_extreme(a: Tensor, dim: Any, keepdim: bool, largest: bool) -> Tensor:
    name = "argmax" if largest else "argmin"
    backend = a._backend
    find = backend.xp.argmax if largest else backend.xp.argmin
    if dim is None:
        if a.numel() == 0:
            raise ShapeError(f"{name}() of an empty tensor (shape {a.shape})")
        found = find(a._data.reshape(-1), axis=0)
    else:
        axis = _one_axis(dim, a, name)
        if a.shape[axis] == 0:
            raise ShapeError(f"{name}(dim={dim}) over an empty axis of a tensor of shape {a.shape}")
        found = find(a._data, axis=axis, keepdims=bool(keepdim))
    return wrap(backend.xp.asarray(backend.astype(found, DType.I64)), backend)


def _extreme_along(a: Tensor, dim: Any, keepdims: bool, largest: bool) -> ValuesIndices:
    name = "max" if largest else "min"
    axis = _one_axis(dim, a, name)
    if a.shape[axis] == 0:
        raise ShapeError(f"{name}(dim={dim}) over an empty axis of a tensor of shape {a.shape}")
    backend = a._backend
    xp = backend.xp
    indices = backend.astype((xp.argmax if largest else xp.argmin)(a._data, axis=axis, keepdims=True), DType.I64)
    values = _picked(a, indices, axis)
    if keepdims:
        return ValuesIndices(values, wrap(indices, backend))
    return ValuesIndices(values.reshape(tuple(n for i, n in enumerate(values.shape) if i != axis)),
                         wrap(xp.squeeze(indices, axis=(axis,)), backend))


def _picked(a: Tensor, indices: Any, axis: int) -> Tensor:
    """The values of `a` at `indices` along `axis`, their gradient put back there."""
    backend = a._backend
    xp = backend.xp

    def backward(g: Any) -> tuple[Any]:
        grad = backend.zeros(a.shape, backend.dtype_of(g))
        xp.put_along_axis(grad, indices, g, axis=axis)
        return (grad,)

    return record(xp.take_along_axis(a._data, indices, axis=axis), backend, (a,), backward, saves=())


@ieee
def norm(a: Tensor, p: float = 2.0, axis: Any = None, keepdims: bool = False, *, dim: Any = None,
         keepdim: bool | None = None) -> Tensor:
    """The p-norm over `axis` (all axes when None); p > 0, inf allowed."""
    axis, keepdims = resolved(axis, keepdims, dim, keepdim)
    if not (isinstance(p, numbers.Real) and p > 0):
        raise InvalidArgumentError(f"norm needs p > 0 (inf allowed), got {p!r}")
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    result = a.dtype if a.dtype.is_float else get_default_dtype()
    x = float_data(a, accumulation_dtype(result))  # half precision: F32, no overflow at 300
    kept = p_norm(xp, x, float(p), axes)
    out = a._backend.astype(kept if keepdims else xp.squeeze(kept, axis=axes), result)

    def backward(g: Any) -> tuple[Any]:
        return (_expand(xp, g, a.shape, axes, keepdims) * p_norm_grad(xp, x, kept, float(p), axes),)

    return record(out, a._backend, (a,), backward, saves_output=True)  # `kept` may be the output's data

"""Views of a tensor's values in another shape or order: reshape, permute, transpose and
basic indexing. Each shares the input's data (and so its version counter)."""

from __future__ import annotations

import numbers
import operator
from typing import Any, Sequence

import numpy as np

from ...errors import InvalidArgumentError, ShapeError
from ..autograd import record
from ..tensor import Tensor


def reshape(a: Tensor, *shape: int | Sequence[int]) -> Tensor:
    """The same values in a new shape; one dimension may be -1 (inferred).

    Accepts ``reshape(2, 3)``, ``reshape((2, 3))`` and ``reshape([2, 3])``.
    """
    target = _target_shape(shape, a.shape)
    return record(a._data.reshape(target), a._backend, (a,), lambda g: (g.reshape(a.shape),), saves=(),
                  view_of=a)


def _target_shape(args: tuple, current: tuple[int, ...]) -> tuple[int, ...]:
    """Validate a reshape request against `current`; resolve its -1."""
    dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    try:
        wanted = [operator.index(d) for d in dims]
    except TypeError:
        raise ShapeError(f"a shape must be ints, got {dims!r}") from None
    if sum(d == -1 for d in wanted) > 1 or any(d < -1 for d in wanted):
        raise ShapeError(f"invalid shape {tuple(wanted)}: dimensions must be >= 0, with at most one -1")
    size = int(np.prod(current, dtype=np.int64))
    known = int(np.prod([d for d in wanted if d != -1], dtype=np.int64))
    if -1 in wanted:
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape a tensor of shape {current} ({size} elements) "
                             f"into {tuple(wanted)}")
        wanted[wanted.index(-1)] = size // known
    elif known != size:
        raise ShapeError(f"cannot reshape a tensor of shape {current} ({size} elements) "
                         f"into {tuple(wanted)}")
    return tuple(wanted)


def permute(a: Tensor, *axes: int | Sequence[int]) -> Tensor:
    """The axes in the given order (``permute(2, 0, 1)`` or ``permute((2, 0, 1))``; all
    reversed when none are given)."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    if axes and not all(isinstance(i, numbers.Integral) for i in axes):
        raise ShapeError(f"permute axes must be ints, got {axes!r}")
    order = tuple(range(a.ndim))[::-1] if not axes else tuple(int(i) + a.ndim * (int(i) < 0) for i in axes)
    if sorted(order) != list(range(a.ndim)):
        raise ShapeError(f"transpose axes {axes} are not a permutation of {a.ndim} axes")
    xp = a._backend.xp
    inverse = tuple(int(i) for i in np.argsort(order))
    return record(xp.permute_dims(a._data, order), a._backend, (a,), lambda g: (xp.permute_dims(g, inverse),),
                  saves=(), view_of=a)


def transpose(a: Tensor, *dims: int) -> Tensor:
    """``transpose(dim0, dim1)`` swaps two axes, as in PyTorch; ``transpose()`` reverses
    all of them (``.T``). `permute` reorders axes freely."""
    if not dims:
        return permute(a)
    if len(dims) != 2:
        raise ShapeError(f"transpose takes two axes to swap (or none), got {dims}; use permute")
    order = list(range(a.ndim))
    try:
        order[dims[0]], order[dims[1]] = order[dims[1]], order[dims[0]]
    except (IndexError, TypeError):
        raise ShapeError(f"cannot swap axes {dims} of a tensor of {a.ndim} dimensions") from None
    return permute(a, tuple(order))


def getitem(a: Tensor, key: Any) -> Tensor:
    """Basic indexing: ints, slices, None and Ellipsis."""
    parts = key if isinstance(key, tuple) else (key,)
    if not all(isinstance(k, (numbers.Integral, slice)) or k is None or k is Ellipsis for k in parts):
        raise InvalidArgumentError(f"only basic indexing (ints, slices, None, ...) is supported, got {key!r}")
    backend = a._backend

    def backward(g: Any) -> tuple[Any]:
        grad = backend.zeros(a.shape, backend.dtype_of(g))
        grad[key] = g
        return (grad,)

    return record(a._data[key], backend, (a,), backward, saves=(), view_of=a)

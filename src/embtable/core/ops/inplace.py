"""Changing a tensor's values in place: ``t[key] = value``, `zero_`, `fill_` and `copy_`.

As in PyTorch these are allowed on a tensor that does not require grad, or on any tensor
under `no_grad` (so ``emb.weight[3] = 0`` works there). Each bumps the tensor's version,
so a pending backward that needs the old values raises `ModifiedTensorError` instead of
giving a wrong gradient. (PyTorch also records in-place changes of tensors in a graph;
embtable refuses them.)
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ...errors import InvalidArgumentError, ShapeError
from ..autograd import is_grad_enabled
from ..tensor import Tensor, as_array, keeper_of, mark_modified
from .shapes import index_of, read_indexed


def setitem(a: Tensor, key: Any, value: Any) -> None:
    """``a[key] = value``: `value` (a tensor, array or scalar, cast to `a`'s dtype) is
    broadcast into the indexed part. Checked whole before anything is written."""
    _check_writable(a, "t[key] = value", value)
    index = index_of(key, a._backend)
    target = tuple(read_indexed(a, index).shape)
    values = as_array(value, a.dtype, a._backend, copy=True)  # a copy: `value` may overlap `a`
    while values.ndim > len(target) and values.shape[0] == 1:  # leading 1s drop, as in NumPy
        values = values.reshape(tuple(values.shape[1:]))
    _check_broadcast(tuple(values.shape), target, "t[key] = value")
    a._data[index.key] = values
    mark_modified(a)


def zero_(a: Tensor) -> Tensor:
    """Set every element to 0; returns `a`."""
    return fill_(a, 0)


def fill_(a: Tensor, value: float) -> Tensor:
    """Set every element to `value` (a number, or a one-element tensor; cast to `a`'s
    dtype); returns `a`."""
    _check_writable(a, "fill_()", value)
    if not isinstance(value, (numbers.Number, np.generic)) and not (isinstance(value, Tensor) and value.numel() == 1):
        raise InvalidArgumentError(f"fill_() takes a number or a one-element tensor, got {value!r}")
    a._data[...] = as_array(value, a.dtype, a._backend)
    mark_modified(a)
    return a


def copy_(a: Tensor, source: Any) -> Tensor:
    """Copy `source` (any tensor, on any device, or an array; broadcast to `a`'s shape and
    cast to its dtype) into `a`; returns `a`."""
    _check_writable(a, "copy_()", source)
    values = as_array(source, a.dtype, a._backend, copy=True)
    _check_broadcast(tuple(values.shape), a.shape, "copy_()")
    a._data[...] = values
    mark_modified(a)
    return a


def _check_broadcast(shape: tuple[int, ...], target: tuple[int, ...], what: str) -> None:
    try:
        fits = np.broadcast_shapes(shape, target) == target
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"{what} cannot broadcast a value of shape {shape} to {target}")


def _check_writable(a: Tensor, what: str, value: Any) -> None:
    keeper = keeper_of(a)
    if keeper is not None:
        keeper.refuse_in_place(what)
    if not is_grad_enabled():
        return
    if a.requires_grad:
        raise InvalidArgumentError(f"{what} would change a tensor that requires grad in place; do it under "
                                   f"et.no_grad() (as for weights) or on a tensor that does not require grad")
    if isinstance(value, Tensor) and value.requires_grad:
        raise InvalidArgumentError(f"{what} with a value that requires grad would lose its gradient (embtable "
                                   f"does not record in-place changes); build the result with et.where or "
                                   f"et.cat, or detach() the value")

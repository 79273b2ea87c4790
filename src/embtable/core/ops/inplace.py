"""Changing a tensor's values in place: ``t[key] = value``, `zero_`, `fill_` and `copy_`.

As in PyTorch these are allowed on a tensor that does not require grad, or on any tensor
under `no_grad` (so ``emb.weight[3] = 0`` works there). Each bumps the tensor's version,
so a pending backward that needs the old values raises `ModifiedTensorError` instead of
giving a wrong gradient. (PyTorch also records in-place changes of tensors in a graph;
embtable refuses them.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import InvalidArgumentError, ShapeError
from ..autograd import is_grad_enabled
from ..tensor import Tensor, as_array, mark_modified
from .shapes import index_parts


def setitem(a: Tensor, key: Any, value: Any) -> None:
    """``a[key] = value``: `value` (a tensor, array or scalar, cast to `a`'s dtype) is
    broadcast into the indexed part."""
    _check_writable(a, "t[key] = value")
    index, _ = index_parts(key, a._backend)
    values = as_array(value, a.dtype, a._backend)
    try:
        a._data[index] = values
    except (ValueError, RuntimeError) as error:
        raise ShapeError(f"cannot assign a value of shape {tuple(values.shape)} to the indexed part of a "
                         f"tensor of shape {a.shape}: {error}") from None
    mark_modified(a)


def zero_(a: Tensor) -> Tensor:
    """Set every element to 0; returns `a`."""
    return fill_(a, 0)


def fill_(a: Tensor, value: float) -> Tensor:
    """Set every element to `value` (cast to `a`'s dtype); returns `a`."""
    _check_writable(a, "fill_()")
    a._data[...] = as_array(value, a.dtype, a._backend)
    mark_modified(a)
    return a


def copy_(a: Tensor, source: Any) -> Tensor:
    """Copy `source` (any tensor, on any device, or an array; broadcast to `a`'s shape and
    cast to its dtype) into `a`; returns `a`."""
    _check_writable(a, "copy_()")
    values = as_array(source, a.dtype, a._backend)
    try:
        fits = np.broadcast_shapes(tuple(values.shape), a.shape) == a.shape
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"copy_() cannot broadcast a source of shape {tuple(values.shape)} to {a.shape}")
    a._data[...] = values
    mark_modified(a)
    return a


def _check_writable(a: Tensor, what: str) -> None:
    if a.requires_grad and is_grad_enabled():
        raise InvalidArgumentError(f"{what} would change a tensor that requires grad in place; do it under "
                                   f"et.no_grad() (as for weights) or on a tensor that does not require grad")

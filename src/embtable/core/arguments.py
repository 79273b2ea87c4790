"""Checks of tensor arguments at the public edge (the scalar ones are `embtable.validate`'s)."""

from __future__ import annotations

from typing import Any

from ..errors import DTypeError, InvalidArgumentError, ShapeError
from .tensor import Tensor


def float_tensor_argument(name: str, value: Any, ndim: int | None = None, like: Tensor | None = None,
                          arrays: bool = True) -> Tensor:
    """`value` as a float `Tensor` (of `ndim` dimensions when given), checked at a public
    edge: with `arrays`, a NumPy array, list or other array becomes a tensor (in `like`'s
    dtype and on its device when given); otherwise `InvalidArgumentError`, `DTypeError` or
    `ShapeError` naming `name`. (A table is never copied from an array: its changes and
    gradients would be lost.)"""
    if not isinstance(value, Tensor) and not arrays:
        raise InvalidArgumentError(f"{name} must be an embtable Tensor, got {type(value).__name__}")
    if not isinstance(value, Tensor):
        try:
            value = Tensor(value, dtype=None if like is None else like.dtype,
                           device=None if like is None else like.device)
        except (TypeError, ValueError, InvalidArgumentError) as error:
            raise InvalidArgumentError(f"{name} must be a Tensor or an array, got {type(value).__name__}: "
                                       f"{error}") from None
    if not value.dtype.is_float:
        raise DTypeError(f"{name} must have a float dtype, got {value.dtype.name}")
    if ndim is not None and value.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D, got shape {value.shape}")
    return value

"""Checks of tensor arguments at the public edge (the scalar ones are `embtable.validate`'s)."""

from __future__ import annotations

from typing import Any

from ..errors import DTypeError, InvalidArgumentError, ShapeError
from .tensor import Tensor


def float_tensor_argument(name: str, value: Any, ndim: int | None = None) -> Tensor:
    """`value`, checked at a public edge to be a float `Tensor` (of `ndim` dimensions when
    given): otherwise `InvalidArgumentError`, `DTypeError` or `ShapeError` naming `name`."""
    if not isinstance(value, Tensor):
        raise InvalidArgumentError(f"{name} must be an embtable Tensor, got {type(value).__name__}")
    if not value.dtype.is_float:
        raise DTypeError(f"{name} must have a float dtype, got {value.dtype.name}")
    if ndim is not None and value.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D, got shape {value.shape}")
    return value

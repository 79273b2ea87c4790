"""Checks of tensor arguments at the public edge (the scalar ones are `embtable.validate`'s)."""

from __future__ import annotations

from typing import Any

from ..dtype import DType
from ..errors import DeviceError, DTypeError, InvalidArgumentError, ShapeError
from .tensor import Tensor


def tensor_argument(name: str, value: Any, like: Tensor | None = None, dtype: DType | None = None) -> Tensor:
    """`value` as a `Tensor` on `like`'s device (None: the default device), checked at a
    public edge: a tensor as it is (on another device: `DeviceError`); a NumPy array, list,
    number or other array made a tensor there, of `dtype` when given (else its own), or
    `InvalidArgumentError` naming `name` and why it is no tensor."""
    device = None if like is None else like.device
    if isinstance(value, Tensor):
        if device is not None and value.device != device:
            raise DeviceError(f"{name} is on {value.device}, expected {device}")
        return value
    try:
        return Tensor(value, dtype=dtype, device=device)
    except (TypeError, ValueError) as error:  # DTypeError, ShapeError, InvalidArgumentError among them
        raise InvalidArgumentError(f"{name} must be a Tensor or an array, got {type(value).__name__}: "
                                   f"{error}") from None


def float_tensor_argument(name: str, value: Any, ndim: int | None = None, like: Tensor | None = None,
                          arrays: bool = True) -> Tensor:
    """`value` as a float `Tensor` (of `ndim` dimensions when given), checked at a public
    edge: with `arrays`, a NumPy array, list or other array becomes a tensor (in `like`'s
    dtype and on its device when given, as `tensor_argument`); otherwise
    `InvalidArgumentError`, `DTypeError` or `ShapeError` naming `name`. (A table is never
    copied from an array: its changes and gradients would be lost.)"""
    if not isinstance(value, Tensor):
        if not arrays:
            raise InvalidArgumentError(f"{name} must be an embtable Tensor, got {type(value).__name__}")
        value = tensor_argument(name, value, like, None if like is None else like.dtype)
    if not value.dtype.is_float:
        raise DTypeError(f"{name} must have a float dtype, got {value.dtype.name}")
    if ndim is not None and value.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D, got shape {value.shape}")
    return value

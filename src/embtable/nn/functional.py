"""Layer semantics as functions over given tensors."""

from __future__ import annotations

from typing import Any

from ..errors import DeviceError, DTypeError, InvalidArgumentError, ShapeError
from ..tensor import Tensor
from .lookup import EmbeddingOptions, lookup


def embedding(indices: Any, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False,
              max_norm_mode: str = "renorm") -> Tensor:
    """``weight[indices]`` with the options of `embtable.nn.Embedding`, which documents them.

    Like ``torch.nn.functional.embedding``, this never zeroes the `padding_idx` row (it only
    keeps gradient away from it); with ``max_norm_mode="renorm"`` it rescales long rows of
    `weight` in place.
    """
    _check_float_tensor("weight", weight, ndim=2)
    options = EmbeddingOptions.checked(weight.shape[0], padding_idx, max_norm, norm_type,
                                       scale_grad_by_freq, sparse, max_norm_mode)
    return lookup(weight, indices, options)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for `x` of shape ``[..., in]`` and `weight` ``[out, in]``."""
    _check_float_tensor("x", x)
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear input of shape {x.shape} does not fit a weight of shape "
                         f"{weight.shape}: the last dimension must be {weight.shape[1]}")
    if x.dtype != weight.dtype or x.device != weight.device:
        raise (DTypeError if x.dtype != weight.dtype else DeviceError)(
            f"linear input is {x.dtype.name} on {x.device}, the weight {weight.dtype.name} "
            f"on {weight.device}; they must match")
    backend = weight._backend
    out = backend.matmul(x._data, weight._data.T)
    if bias is not None:
        out = out + bias._data
    return Tensor._wrap(out, x.device)


def _check_float_tensor(name: str, value: Any, ndim: int | None = None) -> None:
    if not isinstance(value, Tensor):
        raise InvalidArgumentError(f"{name} must be an embtable Tensor, got {type(value).__name__}")
    if not value.dtype.is_float:
        raise DTypeError(f"{name} must have a float dtype, got {value.dtype.name}")
    if ndim is not None and value.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D, got shape {value.shape}")

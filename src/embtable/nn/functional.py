"""Layer semantics and losses as functions over given tensors."""

from __future__ import annotations

from typing import Any


from ..core import Tensor
from ..core.ops.elementwise import relu
from ..core.ops.losses import binary_cross_entropy_with_logits, cross_entropy, log_softmax, mse_loss, softmax
from ..core.arguments import float_tensor_argument
from ..errors import DTypeError, ShapeError
from ..rng import generator
from ..validate import probability
from .lookup import bag_lookup, lookup
from .options import BagOptions, EmbeddingOptions

__all__ = ["binary_cross_entropy_with_logits", "cross_entropy", "dropout", "embedding", "embedding_bag", "linear",
           "log_softmax", "mse_loss", "relu", "softmax"]


def embedding(indices: Any, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False,
              max_norm_mode: str = "renorm") -> Tensor:
    """``weight[indices]`` with the options of `embtable.nn.Embedding`, which documents them.

    Like ``torch.nn.functional.embedding``, this never zeroes the `padding_idx` row (it only
    keeps gradient away from it); with ``max_norm_mode="renorm"`` it rescales long rows of
    `weight` in place.
    """
    float_tensor_argument("weight", weight, ndim=2, arrays=False)
    options = EmbeddingOptions.checked(weight.shape[0], padding_idx=padding_idx, max_norm=max_norm,
                                       norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse,
                                       max_norm_mode=max_norm_mode)
    return lookup(weight, indices, options)


def embedding_bag(indices: Any, weight: Tensor, offsets: Any = None, max_norm: float | None = None,
                  norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Any = None, include_last_offset: bool = False,
                  padding_idx: int | None = None, max_norm_mode: str = "renorm") -> Tensor:
    """Each bag of `indices` pooled from `weight`, with the options of
    `embtable.nn.EmbeddingBag`, which documents them (like
    ``torch.nn.functional.embedding_bag``)."""
    float_tensor_argument("weight", weight, ndim=2, arrays=False)
    options = BagOptions.checked(weight.shape[0], padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                                 scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, max_norm_mode=max_norm_mode,
                                 mode=mode, include_last_offset=include_last_offset)
    return bag_lookup(weight, indices, offsets, per_sample_weights, options)


def linear(x: Any, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for `x` of shape ``[..., in]`` and `weight` ``[out, in]``; `x`
    may be a NumPy array or a list, taken in the weight's dtype."""
    x = float_tensor_argument("x", x, like=weight)
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear input of shape {x.shape} does not fit a weight of shape "
                         f"{weight.shape}: the last dimension must be {weight.shape[1]}")
    if x.dtype != weight.dtype:
        raise DTypeError(f"linear input is {x.dtype.name} but the weight is {weight.dtype.name}; "
                         f"they must match")
    out = x @ weight.T
    return out if bias is None else out + bias


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """In training, each element zeroed with probability `p` (drawn from embtable's
    generator, so `manual_seed` repeats it) and the rest scaled by ``1 / (1 - p)``; outside
    training, `x` itself."""
    x = float_tensor_argument("x", x)
    p = probability("dropout probability p", p)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    kept = generator().random(x.shape) >= p
    return x * Tensor(kept / (1 - p), dtype=x.dtype, device=x.device)

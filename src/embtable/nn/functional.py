"""Layer semantics and losses as functions over given tensors."""

from __future__ import annotations

from typing import Any

from ..autograd import accumulation_dtype, record
from ..errors import DTypeError, IndexOutOfRangeError, InvalidArgumentError, ShapeError
from ..ops import logistic, normalized_axes, operand
from ..tensor import Tensor
from .lookup import lookup
from .options import EmbeddingOptions


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
    if x.dtype != weight.dtype:
        raise DTypeError(f"linear input is {x.dtype.name} but the weight is {weight.dtype.name}; "
                         f"they must match")
    out = x @ weight.T
    return out if bias is None else out + bias


def _wide(t: Tensor) -> Any:
    """`t`'s values in the dtype losses compute in: F32 for half precision."""
    return t._backend.astype(t._data, accumulation_dtype(t.dtype))


def _log_softmax(xp: Any, x: Any, axis: int) -> Any:
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """``x - log(sum(exp(x), axis))``, computed without overflow (half precision in F32)."""
    _check_float_tensor("x", x)
    (axis,) = normalized_axes(axis, x.ndim) if x.ndim else (axis,)
    xp = x._backend.xp
    out = _log_softmax(xp, _wide(x), axis)

    def backward(g: Any) -> tuple[Any]:
        return (g - xp.exp(out) * xp.sum(g, axis=axis, keepdims=True),)

    return record(x._backend.astype(out, x.dtype), x, (x,), backward, saves=())


def cross_entropy(logits: Tensor, targets: Any) -> Tensor:
    """The mean over N of ``-log_softmax(logits)[n, targets[n]]``.

    `logits` is ``[N, C]`` (N >= 1) and `targets` ``[N]`` integers in ``[0, C)``.
    """
    _check_float_tensor("logits", logits, ndim=2)
    target = operand(targets, logits)
    count, classes = logits.shape
    if not target.dtype.is_integer:
        raise DTypeError(f"cross_entropy targets must be integers, got {target.dtype.name}")
    if target.shape != (count,) or count == 0:
        raise ShapeError(f"cross_entropy needs logits [N, C] with N >= 1 and targets [N]; got "
                         f"logits {logits.shape} and targets {target.shape}")
    bad = logits._backend.out_of_range(target._data, classes)
    if bad is not None:
        raise IndexOutOfRangeError(f"target {bad[1]} at position {bad[0]} is out of range for "
                                   f"{classes} classes")
    xp = logits._backend.xp
    log_probs = _log_softmax(xp, _wide(logits), 1)
    rows = xp.arange(count)
    loss = -xp.mean(log_probs[rows, target._data])

    def backward(g: Any) -> tuple[Any]:
        grad = xp.exp(log_probs)
        grad[rows, target._data] -= 1
        return (grad * (g / count),)

    return record(logits._backend.astype(loss, logits.dtype), logits, (logits,), backward, saves=())


def binary_cross_entropy_with_logits(logits: Tensor, targets: Any) -> Tensor:
    """The mean of ``-(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))``, computed stably;
    `targets` has the shape of `logits` (probabilities in [0, 1])."""
    _check_float_tensor("logits", logits)
    target = operand(targets, logits)
    if target.shape != logits.shape:
        raise ShapeError(f"binary_cross_entropy_with_logits needs targets of the logits' shape "
                         f"{logits.shape}, got {target.shape}")
    xp = logits._backend.xp
    x, t = _wide(logits), logits._backend.astype(target._data, accumulation_dtype(logits.dtype))
    count = max(logits.numel(), 1)
    loss = xp.mean(xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x))))

    def backward(g: Any) -> tuple[Any, Any]:
        return (logistic(xp, x) - t) * (g / count), -x * (g / count)

    return record(logits._backend.astype(loss, logits.dtype), logits, (logits, target), backward, saves=())


def mse_loss(a: Tensor, b: Any) -> Tensor:
    """The mean of ``(a - b) ** 2``; `b` has the shape of `a`."""
    _check_float_tensor("a", a)
    b = operand(b, a)
    if a.shape != b.shape:
        raise ShapeError(f"mse_loss needs tensors of one shape, got {a.shape} and {b.shape}")
    return ((a - b) ** 2).mean()


def _check_float_tensor(name: str, value: Any, ndim: int | None = None) -> None:
    if not isinstance(value, Tensor):
        raise InvalidArgumentError(f"{name} must be an embtable Tensor, got {type(value).__name__}")
    if not value.dtype.is_float:
        raise DTypeError(f"{name} must have a float dtype, got {value.dtype.name}")
    if ndim is not None and value.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D, got shape {value.shape}")

"""Softmax, log-softmax and losses, computed stably; half precision computes in F32.

Each takes its inputs and targets as embtable tensors, NumPy arrays, lists or other arrays;
float targets given as arrays take the input's dtype (as if built with it), integer class
targets stay integers."""

from __future__ import annotations

from typing import Any

from ...dtype import accumulation_dtype
from ...errors import DTypeError, ShapeError
from ..autograd import record
from ..ieee import ieee
from ..arguments import float_tensor_argument, tensor_argument
from ..tensor import Tensor
from .elementwise import logistic
from .reductions import normalized_axes
from .rows import checked_indices


def _wide(t: Tensor) -> Any:
    """`t`'s values in the dtype losses compute in: F32 for half precision."""
    return t._backend.astype(t._data, accumulation_dtype(t.dtype))


def _log_softmax(xp: Any, x: Any, axis: int) -> Any:
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def log_softmax(x: Tensor, axis: int = -1, *, dim: int | None = None) -> Tensor:
    """``x - log(sum(exp(x), axis))``, computed without overflow (half precision in F32);
    `dim` is PyTorch's name for `axis`."""
    x, axis, out = _softmax_inputs(x, axis, dim, "log_softmax")
    backend = x._backend
    xp = backend.xp

    def backward(g: Any) -> tuple[Any]:
        return (g - xp.exp(out) * xp.sum(g, axis=axis, keepdims=True),)

    return record(backend.astype(out, x.dtype), backend, (x,), backward, saves=(), saves_output=True)


@ieee
def softmax(x: Tensor, axis: int = -1, *, dim: int | None = None) -> Tensor:
    """``exp(x) / sum(exp(x), axis)``, computed without overflow (half precision in F32);
    `dim` is PyTorch's name for `axis`."""
    x, axis, log_out = _softmax_inputs(x, axis, dim, "softmax")
    backend = x._backend
    xp = backend.xp
    out = xp.exp(log_out)

    def backward(g: Any) -> tuple[Any]:
        return (out * (g - xp.sum(g * out, axis=axis, keepdims=True)),)

    return record(backend.astype(out, x.dtype), backend, (x,), backward, saves=(), saves_output=True)


@ieee
def _softmax_inputs(x: Any, axis: int, dim: int | None, what: str) -> tuple[Tensor, int, Any]:
    """`x` as a tensor, the one axis and the log-softmax of `x` in its wide dtype."""
    x = float_tensor_argument("x", x)
    axis = axis if dim is None else dim
    if not isinstance(axis, int):
        raise ShapeError(f"{what} takes one int axis, got {axis!r}")
    (axis,) = normalized_axes(axis, x.ndim) if x.ndim else (axis,)
    return x, axis, _log_softmax(x._backend.xp, _wide(x), axis)


@ieee
def cross_entropy(logits: Tensor, targets: Any) -> Tensor:
    """The mean over N of ``-log_softmax(logits)[n, targets[n]]``.

    `logits` is ``[N, C]`` (N >= 1) and `targets` ``[N]`` integers in ``[0, C)``.
    """
    logits = float_tensor_argument("logits", logits, ndim=2)
    target = tensor_argument("targets", targets, like=logits)
    count, classes = logits.shape
    if not target.dtype.is_integer:
        raise DTypeError(f"cross_entropy targets must be integers (class indices), got {target.dtype.name}")
    if target.shape != (count,) or count == 0:
        raise ShapeError(f"cross_entropy needs logits [N, C] with N >= 1 and targets [N]; got "
                         f"logits {logits.shape} and targets {target.shape}")
    backend = logits._backend
    chosen = checked_indices(target, classes, backend, "{limit} classes", name="target")._data
    xp = backend.xp
    log_probs = _log_softmax(xp, _wide(logits), 1)
    rows = xp.arange(count)
    loss = -xp.mean(log_probs[rows, chosen])

    def backward(g: Any) -> tuple[Any]:
        grad = xp.exp(log_probs)
        grad[rows, chosen] -= 1
        return (grad * (g / count),)

    return record(backend.astype(loss, logits.dtype), backend, (logits,), backward, saves=())


@ieee
def binary_cross_entropy_with_logits(logits: Tensor, targets: Any) -> Tensor:
    """The mean of ``-(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))``, computed stably;
    `targets` has the shape of `logits` (probabilities in [0, 1])."""
    logits = float_tensor_argument("logits", logits)
    target = tensor_argument("targets", targets, like=logits, dtype=logits.dtype)
    if target.shape != logits.shape:
        raise ShapeError(f"binary_cross_entropy_with_logits needs targets of the logits' shape "
                         f"{logits.shape}, got {target.shape}")
    backend = logits._backend
    xp = backend.xp
    x, t = _wide(logits), backend.astype(target._data, accumulation_dtype(logits.dtype))
    count = max(logits.numel(), 1)
    loss = xp.mean(xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x))))

    def backward(g: Any) -> tuple[Any, Any]:
        return (logistic(xp, x) - t) * (g / count), -x * (g / count)

    return record(backend.astype(loss, logits.dtype), backend, (logits, target), backward, saves=())


def mse_loss(a: Tensor, b: Any) -> Tensor:
    """The mean of ``(a - b) ** 2``; `b` has the shape of `a`."""
    a = float_tensor_argument("a", a)
    b = tensor_argument("b", b, like=a, dtype=a.dtype)
    if a.shape != b.shape:
        raise ShapeError(f"mse_loss needs a and b of one shape, got a {a.shape} and b {b.shape}")
    return ((a - b) ** 2).mean()

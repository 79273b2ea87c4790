"""Differentiable operations on tensors.

Each operation computes its result with the backend's array namespace (``xp``) and records,
through `autograd.record`, how the output's gradient becomes its inputs' gradients.
Broadcasting follows NumPy; a gradient is summed back to its input's shape.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .autograd import record
from .dtype import get_default_dtype
from .errors import DeviceError, InvalidArgumentError, ShapeError
from .tensor import Tensor

def operand(value: Any, like: Tensor) -> Tensor:
    """`value` as a tensor on `like`'s device. A Python number takes `like`'s dtype (a float
    meeting an integer tensor takes the default float dtype), as in PyTorch."""
    if isinstance(value, Tensor):
        if value.device != like.device:
            raise DeviceError(f"tensors are on different devices: {like.device} and {value.device}")
        return value
    if isinstance(value, numbers.Number) and not isinstance(value, np.generic):
        is_float = isinstance(value, float)
        dtype = get_default_dtype() if is_float and not like.dtype.is_float else like.dtype
        return Tensor(value, dtype=dtype, device=like.device)
    return Tensor(value, device=like.device)


def _sum_to_shape(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any:
    """Undo broadcasting: sum `grad` over the axes that broadcasting added or stretched."""
    if tuple(grad.shape) == shape:
        return grad
    grad = xp.sum(grad, axis=tuple(range(grad.ndim - len(shape)))) if grad.ndim > len(shape) else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return xp.sum(grad, axis=stretched, keepdims=True) if stretched else grad


def _binary(a: Tensor, b: Any, forward: Any, grad_a: Any, grad_b: Any) -> Tensor:
    b = operand(b, a)
    xp = a._backend.xp
    out = forward(a._data, b._data)

    def backward(g: Any) -> tuple[Any, Any]:
        return (_sum_to_shape(xp, grad_a(g, a._data, b._data, out), a.shape) if a.requires_grad else None,
                _sum_to_shape(xp, grad_b(g, a._data, b._data, out), b.shape) if b.requires_grad else None)

    return record(out, a, (a, b), backward)


def add(a: Tensor, b: Any) -> Tensor:
    return _binary(a, b, lambda x, y: x + y, lambda g, x, y, o: g, lambda g, x, y, o: g)


def sub(a: Tensor, b: Any) -> Tensor:
    return _binary(a, b, lambda x, y: x - y, lambda g, x, y, o: g, lambda g, x, y, o: -g)


def mul(a: Tensor, b: Any) -> Tensor:
    return _binary(a, b, lambda x, y: x * y, lambda g, x, y, o: g * y, lambda g, x, y, o: g * x)


def div(a: Tensor, b: Any) -> Tensor:
    return _binary(a, b, lambda x, y: x / y, lambda g, x, y, o: g / y, lambda g, x, y, o: -g * o / y)


def power(a: Tensor, b: Any) -> Tensor:
    xp = a._backend.xp

    def grad_base(g: Any, x: Any, y: Any, o: Any) -> Any:
        return g * y * x ** (y - 1)

    def grad_exponent(g: Any, x: Any, y: Any, o: Any) -> Any:
        safe = xp.where(x > 0, x, 1)  # d/dy x**y = x**y log x, taken as 0 where x <= 0
        return xp.where(x > 0, g * o * xp.log(safe), 0)

    return _binary(a, b, lambda x, y: x**y, grad_base, grad_exponent)


def matmul(a: Tensor, b: Any) -> Tensor:
    """NumPy's matmul, 1-D operands included."""
    b = operand(b, a)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul needs tensors of at least 1 dimension, got {a.shape} and {b.shape}")
    inner_a, inner_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if inner_a != inner_b:
        raise ShapeError(f"matmul shapes {a.shape} and {b.shape} do not fit: {inner_a} != {inner_b}")
    xp = a._backend.xp
    out = xp.matmul(a._data, b._data)

    def backward(g: Any) -> tuple[Any, Any]:
        x = a._data if a.ndim > 1 else a._data[None, :]
        y = b._data if b.ndim > 1 else b._data[:, None]
        g = g if b.ndim > 1 else g[..., None]
        g = g if a.ndim > 1 else g[..., None, :]
        grad_a = grad_b = None
        if a.requires_grad:
            grad_a = _sum_to_shape(xp, xp.matmul(g, xp.swapaxes(y, -1, -2)), x.shape).reshape(a.shape)
        if b.requires_grad:
            grad_b = _sum_to_shape(xp, xp.matmul(xp.swapaxes(x, -1, -2), g), y.shape).reshape(b.shape)
        return grad_a, grad_b

    return record(out, a, (a, b), backward)


def _unary(a: Tensor, out: Any, grad: Any) -> Tensor:
    return record(out, a, (a,), lambda g: (grad(g, out),))


def negative(a: Tensor) -> Tensor:
    return _unary(a, -a._data, lambda g, o: -g)


def exp(a: Tensor) -> Tensor:
    return _unary(a, a._backend.xp.exp(a._data), lambda g, o: g * o)


def log(a: Tensor) -> Tensor:
    return _unary(a, a._backend.xp.log(a._data), lambda g, o: g / a._data)


def tanh(a: Tensor) -> Tensor:
    return _unary(a, a._backend.xp.tanh(a._data), lambda g, o: g * (1 - o * o))


def sigmoid(a: Tensor) -> Tensor:
    xp = a._backend.xp
    e = xp.exp(-xp.abs(a._data))  # never overflows
    out = xp.where(a._data >= 0, 1 / (1 + e), e / (1 + e)).astype(a._data.dtype, copy=False)
    return _unary(a, out, lambda g, o: g * o * (1 - o))


def relu(a: Tensor) -> Tensor:
    xp = a._backend.xp
    return _unary(a, xp.maximum(a._data, 0), lambda g, o: g * (a._data > 0))


# --- reductions ---------------------------------------------------------------------------

def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """`axis` (None, an int or ints, negative allowed) as sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    if any(not -ndim <= int(i) < ndim for i in axes):
        raise ShapeError(f"axis {axis} is out of range for a tensor of {ndim} dimensions")
    normalised = tuple(sorted(int(i) % ndim for i in axes))
    if len(set(normalised)) != len(normalised):
        raise ShapeError(f"axis {axis} repeats an axis")
    return normalised


def _expand(xp: Any, g: Any, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Any:
    """Broadcast the gradient of a reduction over `axes` back to the input's `shape`."""
    if not keepdims and axes:
        g = xp.expand_dims(g, axes)
    return xp.broadcast_to(g, shape)


def sum(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    xp, axes = a._backend.xp, _axes(axis, a.ndim)
    out = xp.sum(a._data, axis=axes, keepdims=keepdims)
    return record(out, a, (a,), lambda g: (_expand(xp, g, a.shape, axes, keepdims),))


def mean(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    xp, axes = a._backend.xp, _axes(axis, a.ndim)
    count = math.prod(a.shape[i] for i in axes)
    out = xp.mean(a._data, axis=axes, keepdims=keepdims)
    return record(out, a, (a,), lambda g: (_expand(xp, g, a.shape, axes, keepdims) / count,))


def max(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """The largest values; the gradient is shared equally between tied maxima (like
    ``torch.amax``)."""
    xp, axes = a._backend.xp, _axes(axis, a.ndim)
    if a.numel() == 0:
        raise ShapeError(f"max() of an empty tensor of shape {a.shape}")
    kept = xp.max(a._data, axis=axes, keepdims=True)
    out = kept if keepdims else xp.squeeze(kept, axis=axes)

    def backward(g: Any) -> tuple[Any]:
        winners = a._data == kept
        share = winners / xp.sum(winners, axis=axes, keepdims=True)
        return (_expand(xp, g, a.shape, axes, keepdims) * share,)

    return record(out, a, (a,), backward)


def p_norm(xp: Any, x: Any, p: float, axes: tuple[int, ...]) -> Any:
    """The p-norm of `x` over `axes`, keeping the reduced axes (size 1)."""
    magnitude = xp.abs(x)
    if p == math.inf:
        return xp.max(magnitude, axis=axes, keepdims=True)
    if p == 1:
        return xp.sum(magnitude, axis=axes, keepdims=True)
    if p == 2:
        return xp.sqrt(xp.sum(magnitude * magnitude, axis=axes, keepdims=True))
    return xp.sum(magnitude**p, axis=axes, keepdims=True) ** (1.0 / p)


def p_norm_grad(xp: Any, x: Any, norm: Any, p: float, axes: tuple[int, ...]) -> Any:
    """d norm / d x for ``norm = p_norm(x, p, axes)``; zero where the norm is zero, and for
    p = inf shared equally between tied largest magnitudes (PyTorch's choices)."""
    if p == math.inf:
        winners = xp.abs(x) == norm
        return xp.sign(x) * winners / xp.sum(winners, axis=axes, keepdims=True)
    if p == 1:
        return xp.sign(x)
    safe = xp.where(norm > 0, norm, 1)
    if p == 2:
        return xp.where(norm > 0, x / safe, 0)
    nonzero = x != 0  # for p < 1, |x| ** (p - 1) is infinite at 0: the gradient there is 0
    ratio = xp.where(nonzero, xp.abs(x) / safe, 1)
    return xp.where(nonzero & (norm > 0), xp.sign(x) * ratio ** (p - 1), 0)


def norm(a: Tensor, p: float = 2.0, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The p-norm over `axis` (all axes when None); p > 0, inf allowed."""
    if not (isinstance(p, numbers.Real) and p > 0):
        raise InvalidArgumentError(f"norm needs p > 0 (inf allowed), got {p!r}")
    xp, axes = a._backend.xp, _axes(axis, a.ndim)
    kept = p_norm(xp, a._data, float(p), axes)
    out = kept if keepdims else xp.squeeze(kept, axis=axes)

    def backward(g: Any) -> tuple[Any]:
        return (_expand(xp, g, a.shape, axes, keepdims) * p_norm_grad(xp, a._data, kept, float(p), axes),)

    return record(out, a, (a,), backward)


# --- shapes -------------------------------------------------------------------------------

def reshape(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    return record(a._data.reshape(shape), a, (a,), lambda g: (g.reshape(a.shape),))


def transpose(a: Tensor, axes: tuple[int, ...] | None = None) -> Tensor:
    """The axes permuted (reversed when `axes` is None)."""
    order = tuple(range(a.ndim))[::-1] if not axes else tuple(int(i) + a.ndim * (int(i) < 0) for i in axes)
    if sorted(order) != list(range(a.ndim)):
        raise ShapeError(f"transpose axes {axes} are not a permutation of {a.ndim} axes")
    xp = a._backend.xp
    inverse = tuple(int(i) for i in np.argsort(order))
    return record(xp.permute_dims(a._data, order), a, (a,), lambda g: (xp.permute_dims(g, inverse),))


def getitem(a: Tensor, key: Any) -> Tensor:
    """Basic indexing: ints, slices, None and Ellipsis."""
    parts = key if isinstance(key, tuple) else (key,)
    if not all(isinstance(k, (numbers.Integral, slice)) or k is None or k is Ellipsis for k in parts):
        raise InvalidArgumentError(f"only basic indexing (ints, slices, None, ...) is supported, got {key!r}")
    xp = a._backend.xp

    def backward(g: Any) -> tuple[Any]:
        grad = xp.zeros(a.shape, dtype=g.dtype)
        grad[key] = g
        return (grad,)

    return record(a._data[key], a, (a,), backward)


def to(a: Tensor, data: Any) -> Tensor:
    """A copy of `a` as `data` (another dtype); the gradient passes straight through."""
    return record(data, a, (a,), lambda g: (g,))

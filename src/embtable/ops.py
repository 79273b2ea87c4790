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

from .autograd import accumulation_dtype, record
from .dtype import DType, get_default_dtype
from .errors import DeviceError, InvalidArgumentError, ShapeError
from .norms import p_norm, p_norm_grad
from .tensor import Tensor


def _category(dtype: DType) -> int:
    return 2 if dtype.is_float else 0 if dtype is DType.BOOL else 1


def operand(value: Any, like: Tensor) -> Tensor:
    """`value` as a tensor on `like`'s device. A Python or NumPy scalar becomes a 0-d tensor
    of `like`'s dtype, unless it is of a higher kind (a float meeting an integer tensor takes
    the default float dtype; an int meeting a bool tensor, I64), as in PyTorch."""
    if isinstance(value, Tensor):
        if value.device != like.device:
            raise DeviceError(f"tensors are on different devices: {like.device} and {value.device}")
        return value
    if isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, np.ndarray):
        kind = 2 if isinstance(value, (float, np.floating)) else 0 if isinstance(value, (bool, np.bool_)) else 1
        if kind <= _category(like.dtype):
            dtype = like.dtype
        else:
            dtype = get_default_dtype() if kind == 2 else DType.I64
        return Tensor(value, dtype=dtype, device=like.device)
    return Tensor(value, device=like.device)


def result_dtype(a: Tensor, b: Tensor) -> DType:
    """PyTorch's promotion: the higher kind (bool < int < float) wins; within a kind a tensor
    with dimensions outranks a 0-d one; otherwise NumPy's promotion."""
    ca, cb = _category(a.dtype), _category(b.dtype)
    if ca != cb:
        return a.dtype if ca > cb else b.dtype
    if (a.ndim == 0) != (b.ndim == 0):
        return b.dtype if a.ndim == 0 else a.dtype
    return DType.from_numpy(np.promote_types(a.dtype.numpy, b.dtype.numpy))


def _float_data(a: Tensor, dtype: DType | None = None) -> Any:
    """`a`'s values as `dtype`, or as a float dtype (integers: the default float dtype)."""
    target = dtype or (a.dtype if a.dtype.is_float else get_default_dtype())
    return a._backend.astype(a._data, target)


def _sum_to_shape(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any:
    """Undo broadcasting: sum `grad` over the axes that broadcasting added or stretched."""
    if tuple(grad.shape) == shape:
        return grad
    grad = xp.sum(grad, axis=tuple(range(grad.ndim - len(shape)))) if grad.ndim > len(shape) else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return xp.sum(grad, axis=stretched, keepdims=True) if stretched else grad


def _binary(a: Tensor, b: Any, forward: Any, grad_a: Any, grad_b: Any, floating: bool = False,
            reads_inputs: bool = True) -> Tensor:
    """An element-wise op of two broadcast operands, both cast to their `result_dtype` (a
    float one when `floating`, as true division needs). `reads_inputs`: whether the
    gradients need the operands' values."""
    b = operand(b, a)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ShapeError(f"shapes {a.shape} and {b.shape} do not broadcast together") from None
    dtype = result_dtype(a, b)
    if floating and not dtype.is_float:
        dtype = get_default_dtype()
    xp, x, y = a._backend.xp, a._backend.astype(a._data, dtype), a._backend.astype(b._data, dtype)
    out = forward(x, y)

    def backward(g: Any) -> tuple[Any, Any]:
        return (_sum_to_shape(xp, grad_a(g, x, y, out), a.shape) if a.requires_grad else None,
                _sum_to_shape(xp, grad_b(g, x, y, out), b.shape) if b.requires_grad else None)

    return record(out, a, (a, b), backward, saves=None if reads_inputs else ())


def add(a: Tensor, b: Any) -> Tensor:
    return _binary(a, b, lambda x, y: x + y, lambda g, x, y, o: g, lambda g, x, y, o: g, reads_inputs=False)


def sub(a: Tensor, b: Any) -> Tensor:
    return _binary(a, b, lambda x, y: x - y, lambda g, x, y, o: g, lambda g, x, y, o: -g, reads_inputs=False)


def mul(a: Tensor, b: Any) -> Tensor:
    return _binary(a, b, lambda x, y: x * y, lambda g, x, y, o: g * y, lambda g, x, y, o: g * x)


def div(a: Tensor, b: Any) -> Tensor:
    return _binary(a, b, lambda x, y: x / y, lambda g, x, y, o: g / y, lambda g, x, y, o: -g * o / y,
                   floating=True)


def power(a: Tensor, b: Any) -> Tensor:
    xp = a._backend.xp

    def grad_base(g: Any, x: Any, y: Any, o: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return xp.where(y == 0, 0, g * y * x ** (y - 1))  # x**0 is constant, even at x = 0

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
    dtype = result_dtype(a, b)
    wide = accumulation_dtype(dtype) if dtype.is_float else dtype  # half precision sums in f32
    xp, backend = a._backend.xp, a._backend
    left, right = backend.astype(a._data, wide), backend.astype(b._data, wide)
    out = backend.astype(xp.matmul(left, right), dtype)

    def backward(g: Any) -> tuple[Any, Any]:
        x = left if a.ndim > 1 else left[None, :]
        y = right if b.ndim > 1 else right[:, None]
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
    return _unary(a, a._backend.xp.exp(_float_data(a)), lambda g, o: g * o)


def log(a: Tensor) -> Tensor:
    x = _float_data(a)
    return _unary(a, a._backend.xp.log(x), lambda g, o: g / x)


def tanh(a: Tensor) -> Tensor:
    return _unary(a, a._backend.xp.tanh(_float_data(a)), lambda g, o: g * (1 - o * o))


def logistic(xp: Any, x: Any) -> Any:
    """``1 / (1 + exp(-x))`` on arrays, without overflow for any x."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid(a: Tensor) -> Tensor:
    x = _float_data(a)
    out = a._backend.astype(logistic(a._backend.xp, x), a._backend.dtype_of(x))
    return _unary(a, out, lambda g, o: g * o * (1 - o))


def relu(a: Tensor) -> Tensor:
    xp = a._backend.xp
    return _unary(a, xp.maximum(a._data, 0), lambda g, o: g * (a._data > 0))


# --- reductions ---------------------------------------------------------------------------

def normalized_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """`axis` (None, an int or ints, negative allowed) as sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    if not all(isinstance(i, numbers.Integral) for i in axes):
        raise ShapeError(f"axis must be an int or a tuple of ints, got {axis!r}")
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


def _reduce_dtype(a: Tensor) -> tuple[DType, DType]:
    """The dtype a sum over `a` accumulates in (F32 for half types) and the dtype it returns."""
    result = a.dtype if a.dtype.is_float else DType.I64 if a.dtype.is_integer or a.dtype is DType.BOOL else a.dtype
    return accumulation_dtype(result), result


def sum(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """The sum over `axis` (all axes when None); integers and bools sum to I64, half
    precision accumulates in F32."""
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    wide, result = _reduce_dtype(a)
    out = a._backend.astype(xp.sum(a._backend.astype(a._data, wide), axis=axes, keepdims=keepdims), result)
    return record(out, a, (a,), lambda g: (_expand(xp, g, a.shape, axes, keepdims),), saves=())


def mean(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The mean over `axis` (all axes when None); integers give the default float dtype,
    half precision accumulates in F32."""
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    result = a.dtype if a.dtype.is_float else get_default_dtype()
    count = math.prod(a.shape[i] for i in axes)
    total = xp.sum(a._backend.astype(a._data, accumulation_dtype(result)), axis=axes, keepdims=keepdims)
    out = a._backend.astype(total / count if count else total * np.nan, result)
    return record(out, a, (a,), lambda g: (_expand(xp, g, a.shape, axes, keepdims) / count,), saves=())


def max(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """The largest values; the gradient is shared equally between tied maxima (like
    ``torch.amax``)."""
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    if any(a.shape[i] == 0 for i in axes):
        raise ShapeError(f"max() over an empty axis of a tensor of shape {a.shape}")
    kept = xp.max(a._data, axis=axes, keepdims=True)
    out = kept if keepdims else xp.squeeze(kept, axis=axes)

    def backward(g: Any) -> tuple[Any]:
        winners = a._backend.astype(a._data == kept, a._backend.dtype_of(g))
        share = winners / xp.sum(winners, axis=axes, keepdims=True)
        return (_expand(xp, g, a.shape, axes, keepdims) * share,)

    return record(out, a, (a,), backward)


def norm(a: Tensor, p: float = 2.0, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The p-norm over `axis` (all axes when None); p > 0, inf allowed."""
    if not (isinstance(p, numbers.Real) and p > 0):
        raise InvalidArgumentError(f"norm needs p > 0 (inf allowed), got {p!r}")
    xp, axes = a._backend.xp, normalized_axes(axis, a.ndim)
    result = a.dtype if a.dtype.is_float else get_default_dtype()
    x = _float_data(a, accumulation_dtype(result))  # half precision: F32, no overflow at 300
    kept = p_norm(xp, x, float(p), axes)
    out = a._backend.astype(kept if keepdims else xp.squeeze(kept, axis=axes), result)

    def backward(g: Any) -> tuple[Any]:
        return (_expand(xp, g, a.shape, axes, keepdims) * p_norm_grad(xp, x, kept, float(p), axes),)

    return record(out, a, (a,), backward)


# --- shapes -------------------------------------------------------------------------------

def reshape(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    return record(a._data.reshape(shape), a, (a,), lambda g: (g.reshape(a.shape),), saves=(), view=True)


def permute(a: Tensor, axes: tuple[int, ...] | None = None) -> Tensor:
    """The axes in the order `axes` (reversed when None)."""
    if axes and not all(isinstance(i, numbers.Integral) for i in axes):
        raise ShapeError(f"permute axes must be ints, got {axes!r}")
    order = tuple(range(a.ndim))[::-1] if not axes else tuple(int(i) + a.ndim * (int(i) < 0) for i in axes)
    if sorted(order) != list(range(a.ndim)):
        raise ShapeError(f"transpose axes {axes} are not a permutation of {a.ndim} axes")
    xp = a._backend.xp
    inverse = tuple(int(i) for i in np.argsort(order))
    return record(xp.permute_dims(a._data, order), a, (a,), lambda g: (xp.permute_dims(g, inverse),),
                  saves=(), view=True)


def getitem(a: Tensor, key: Any) -> Tensor:
    """Basic indexing: ints, slices, None and Ellipsis."""
    parts = key if isinstance(key, tuple) else (key,)
    if not all(isinstance(k, (numbers.Integral, slice)) or k is None or k is Ellipsis for k in parts):
        raise InvalidArgumentError(f"only basic indexing (ints, slices, None, ...) is supported, got {key!r}")

    def backward(g: Any) -> tuple[Any]:
        grad = a._backend.zeros(a.shape, a._backend.dtype_of(g))
        grad[key] = g
        return (grad,)

    return record(a._data[key], a, (a,), backward, saves=(), view=True)


def to(a: Tensor, data: Any) -> Tensor:
    """A copy of `a` as `data` (another dtype or device); the gradient passes straight
    through, except into an integer copy, which records nothing."""
    if not a._backend.dtype_of(data).is_float:
        return Tensor._wrap(data, a.device)
    return record(data, a, (a,), lambda g: (g,), saves=())

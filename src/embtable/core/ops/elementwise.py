"""Element-wise operations with NumPy broadcasting and PyTorch's dtype promotion.

Each operation computes its result with the backend's array namespace (``xp``) and records,
through `autograd.record`, how the output's gradient becomes its inputs' gradients; a
gradient is summed back to its input's shape.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np

from ...dtype import DType, get_default_dtype
from ...errors import DeviceError, InvalidArgumentError, ShapeError
from ..autograd import record
from ..ieee import ieee
from ..tensor import Tensor, as_array, wrap


def _category(dtype: DType) -> int:
    return 2 if dtype.is_float else 0 if dtype is DType.BOOL else 1


def operand(value: Any, like: Tensor) -> Tensor:
    """`value` as a tensor on `like`'s device. A Python or NumPy scalar becomes a 0-d tensor
    of `like`'s dtype, unless it is of a higher kind (a float meeting an integer tensor takes
    the default float dtype; an int meeting a bool tensor, I64), as in PyTorch; an int that
    `like`'s integer dtype cannot hold wraps around there, as PyTorch's ``int8_tensor + 200``."""
    if isinstance(value, Tensor):
        if value._backend is not like._backend:
            raise DeviceError(f"tensors are on different devices: {like.device} and {value.device}")
        return value
    if isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, np.ndarray):
        kind = 2 if isinstance(value, (float, np.floating)) else 0 if isinstance(value, (bool, np.bool_)) else 1
        if kind <= _category(like.dtype):
            dtype = like.dtype
        else:
            dtype = get_default_dtype() if kind == 2 else DType.I64
        return wrap(as_array(value, dtype, like._backend, wrap_around=True), like._backend)
    return Tensor(value, device=like.device)


def result_dtype(a: Tensor, b: Tensor) -> DType:
    """PyTorch's promotion: the higher kind (bool < int < float) wins; within a kind a tensor
    with dimensions outranks a 0-d one; otherwise NumPy's promotion."""
    if _category(a.dtype) == _category(b.dtype) and (a.ndim == 0) != (b.ndim == 0):
        return b.dtype if a.ndim == 0 else a.dtype
    return promoted(a.dtype, b.dtype)


def promoted(a: DType, b: DType) -> DType:
    """The dtype two tensors with dimensions promote to: the higher kind (bool < int <
    float) wins, within a kind NumPy's promotion."""
    ca, cb = _category(a), _category(b)
    if ca != cb:
        return a if ca > cb else b
    return DType.from_numpy(np.promote_types(a.numpy, b.numpy))


def float_data(a: Tensor, dtype: DType | None = None) -> Any:
    """`a`'s values as `dtype`, or as a float dtype (integers: the default float dtype)."""
    target = dtype or (a.dtype if a.dtype.is_float else get_default_dtype())
    return a._backend.astype(a._data, target)


def sum_to_shape(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any:
    """Undo broadcasting: sum `grad` over the axes that broadcasting added or stretched."""
    if tuple(grad.shape) == shape:
        return grad
    grad = xp.sum(grad, axis=tuple(range(grad.ndim - len(shape)))) if grad.ndim > len(shape) else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return xp.sum(grad, axis=stretched, keepdims=True) if stretched else grad


def check_broadcast(*tensors: Tensor) -> None:
    """`ShapeError` unless the tensors' shapes broadcast together (NumPy's rules)."""
    try:
        np.broadcast_shapes(*(t.shape for t in tensors))
    except ValueError:
        shapes = " and ".join(str(t.shape) for t in tensors)
        raise ShapeError(f"shapes {shapes} do not broadcast together") from None


@ieee
def _binary(a: Tensor, b: Any, forward: Any, grad_a: Any, grad_b: Any, floating: bool = False,
            reads_inputs: bool = True, exponent_reads_output: bool = False) -> Tensor:
    """An element-wise op of two broadcast operands, both cast to their `result_dtype` (a
    float one when `floating`, as true division needs). `reads_inputs`: whether the
    gradients need the operands' values."""
    b = operand(b, a)
    check_broadcast(a, b)
    dtype = result_dtype(a, b)
    if floating and not dtype.is_float:
        dtype = get_default_dtype()
    backend = a._backend
    xp, x, y = backend.xp, backend.astype(a._data, dtype), backend.astype(b._data, dtype)
    out = forward(x, y)

    def backward(g: Any) -> tuple[Any, Any]:
        return (sum_to_shape(xp, grad_a(g, x, y, out), a.shape) if a.requires_grad else None,
                sum_to_shape(xp, grad_b(g, x, y, out), b.shape) if b.requires_grad else None)

    return record(out, backend, (a, b), backward, saves=None if reads_inputs else (),
                  saves_output=exponent_reads_output and b.requires_grad)


def add(a: Tensor, b: Any) -> Tensor:
    """``a + b``."""
    return _binary(a, b, lambda x, y: x + y, lambda g, x, y, o: g, lambda g, x, y, o: g, reads_inputs=False)


def sub(a: Tensor, b: Any) -> Tensor:
    """``a - b``."""
    return _binary(a, b, lambda x, y: x - y, lambda g, x, y, o: g, lambda g, x, y, o: -g, reads_inputs=False)


def mul(a: Tensor, b: Any) -> Tensor:
    """``a * b``."""
    return _binary(a, b, lambda x, y: x * y, lambda g, x, y, o: g * y, lambda g, x, y, o: g * x)


def div(a: Tensor, b: Any) -> Tensor:
    """``a / b``, true division (integers divide as the default float dtype)."""
    return _binary(a, b, lambda x, y: x / y, lambda g, x, y, o: g / y, lambda g, x, y, o: -g * x / (y * y),
                   floating=True)


def power(a: Tensor, b: Any) -> Tensor:
    """``a ** b``; the gradient in the exponent is taken as 0 where ``a <= 0``."""
    xp = a._backend.xp

    def grad_base(g: Any, x: Any, y: Any, o: Any) -> Any:
        return xp.where(y == 0, 0, g * y * x ** (y - 1))  # x**0 is constant, even at x = 0

    def grad_exponent(g: Any, x: Any, y: Any, o: Any) -> Any:
        safe = xp.where(x > 0, x, 1)  # d/dy x**y = x**y log x, taken as 0 where x <= 0
        return xp.where(x > 0, g * o * xp.log(safe), 0)

    return _binary(a, b, lambda x, y: x**y, grad_base, grad_exponent, exponent_reads_output=True)


def reflected(op: Callable[[Tensor, Any], Tensor]) -> Callable[[Tensor, Any], Tensor]:
    """``op`` with its operands swapped: ``other <op> tensor`` (for ``__radd__`` and kin)."""

    def swapped(a: Tensor, other: Any) -> Tensor:
        return op(operand(other, a), a)

    swapped.__doc__ = f"{op.__name__} with the tensor as the right operand."
    return swapped


def _unary(a: Tensor, out: Any, grad: Callable[[Any, Any], Any], reads_output: bool = False) -> Tensor:
    """An element-wise op of one tensor; its gradient reads the input, or with
    `reads_output` the output instead (as PyTorch saves it: exp, tanh, sigmoid, sqrt)."""
    return record(out, a._backend, (a,), lambda g: (grad(g, out),), saves=() if reads_output else None,
                  saves_output=reads_output)


def negative(a: Tensor) -> Tensor:
    """``-a``."""
    return _unary(a, -a._data, lambda g, o: -g)


@ieee
def exp(a: Tensor) -> Tensor:
    """e to the power of each element."""
    return _unary(a, a._backend.xp.exp(float_data(a)), lambda g, o: g * o, reads_output=True)


@ieee
def log(a: Tensor) -> Tensor:
    """The natural logarithm of each element."""
    x = float_data(a)
    return _unary(a, a._backend.xp.log(x), lambda g, o: g / x)


def tanh(a: Tensor) -> Tensor:
    """The hyperbolic tangent of each element."""
    return _unary(a, a._backend.xp.tanh(float_data(a)), lambda g, o: g * (1 - o * o), reads_output=True)


def logistic(xp: Any, x: Any) -> Any:
    """``1 / (1 + exp(-x))`` on arrays, without overflow for any x."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid(a: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))`` of each element, without overflow."""
    x = float_data(a)
    out = a._backend.astype(logistic(a._backend.xp, x), a._backend.dtype_of(x))
    return _unary(a, out, lambda g, o: g * o * (1 - o), reads_output=True)


def relu(a: Tensor) -> Tensor:
    """``max(x, 0)`` of each element."""
    xp = a._backend.xp
    return _unary(a, xp.maximum(a._data, 0), lambda g, o: g * (a._data > 0))


def abs(a: Tensor) -> Tensor:  # noqa: A001
    """``|x|`` of each element; the gradient is ``sign(x)`` (0 at 0, as PyTorch)."""
    xp = a._backend.xp
    return _unary(a, xp.abs(a._data), lambda g, o: g * xp.sign(a._data))


@ieee
def sqrt(a: Tensor) -> Tensor:
    """The square root of each element (integers: in the default float dtype)."""
    return _unary(a, a._backend.xp.sqrt(float_data(a)), lambda g, o: g / (2 * o), reads_output=True)


def clamp(a: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Each element limited to ``[min, max]`` (either may be None; with ``min > max`` every
    element is `max`, as PyTorch). The gradient passes where ``min <= x <= max``; a float
    bound on an integer tensor gives the default float dtype."""
    if min is None and max is None:
        raise InvalidArgumentError("clamp needs min or max (or both), got neither")
    for name, bound in (("min", min), ("max", max)):
        if bound is not None and not (isinstance(bound, numbers.Real) and not isinstance(bound, bool)):
            raise InvalidArgumentError(f"clamp's {name} must be a real number or None, got {bound!r}")
    floating = any(isinstance(b, (float, np.floating)) for b in (min, max))
    dtype = a.dtype if a.dtype.is_float or not floating else get_default_dtype()
    backend = a._backend
    xp, x = backend.xp, backend.astype(a._data, dtype)
    out = xp.clip(x, min, max)

    def backward(g: Any) -> tuple[Any]:
        inside = (x >= min) if min is not None else None
        if max is not None:
            inside = (x <= max) if inside is None else inside & (x <= max)
        return (g * inside,)

    return record(out, backend, (a,), backward)

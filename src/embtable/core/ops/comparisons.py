"""Element-wise comparisons and logic, giving BOOL tensors (never Python's identity test),
and `where`, which picks between two tensors by such a mask.

Comparisons promote their operands as arithmetic does (PyTorch's rules) and record no
gradient; `where` passes each element's gradient to the operand it was taken from.
"""

from __future__ import annotations

import numbers
import operator
from typing import Any, Callable

import numpy as np

from ...dtype import DType
from ...errors import DTypeError, ShapeError
from ..autograd import record
from ..tensor import Tensor, wrap
from .elementwise import operand, result_dtype, sum_to_shape

#: What a comparison operand may be; anything else (None, a string) compares as Python
#: objects do, so ``t == None`` is False as in PyTorch.
_COMPARABLE = (Tensor, numbers.Number, np.generic, np.ndarray, list, tuple)


def _broadcast(*tensors: Tensor) -> None:
    try:
        np.broadcast_shapes(*(t.shape for t in tensors))
    except ValueError:
        shapes = ", ".join(str(t.shape) for t in tensors)
        raise ShapeError(f"shapes {shapes} do not broadcast together") from None


def _comparison(compare: Callable[[Any, Any], Any]) -> Callable[[Tensor, Any], Any]:
    def method(a: Tensor, other: Any) -> Any:
        if not isinstance(other, _COMPARABLE):
            return NotImplemented
        b = operand(other, a)
        _broadcast(a, b)
        dtype, backend = result_dtype(a, b), a._backend
        return wrap(compare(backend.astype(a._data, dtype), backend.astype(b._data, dtype)), backend)

    method.__name__ = method.__qualname__ = f"__{compare.__name__}__"
    method.__doc__ = f"Element-wise ``{compare.__name__}`` of the promoted operands, as a BOOL tensor."
    return method


eq, ne, lt, le, gt, ge = map(_comparison, (operator.eq, operator.ne, operator.lt, operator.le,
                                           operator.gt, operator.ge))


def _logical(combine: Callable[[Any, Any], Any], name: str) -> Callable[[Tensor, Any], Tensor]:
    def method(a: Tensor, other: Any) -> Tensor:
        b = operand(other, a)
        _broadcast(a, b)
        dtype = result_dtype(a, b)
        if dtype.is_float:
            raise DTypeError(f"{name} needs BOOL or integer tensors, got {a.dtype.name} and {b.dtype.name}")
        backend = a._backend
        return wrap(combine(backend.astype(a._data, dtype), backend.astype(b._data, dtype)), backend)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Element-wise ``{name}`` of BOOL (logical) or integer (bitwise) tensors."
    return method


logical_and = _logical(operator.and_, "__and__")
logical_or = _logical(operator.or_, "__or__")
logical_xor = _logical(operator.xor, "__xor__")


def invert(a: Tensor) -> Tensor:
    """``~a``: logical not of a BOOL tensor, bitwise not of an integer one."""
    if a.dtype.is_float:
        raise DTypeError(f"~ needs a BOOL or integer tensor, got {a.dtype.name}")
    return wrap(~a._data, a._backend)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """``a`` where `condition` holds, else ``b``, broadcast together; the gradient of each
    element goes to the operand it came from. `condition` must be BOOL; `a` and `b` may be
    tensors, arrays or scalars (one of the three must be a tensor)."""
    like = next((x for x in (condition, a, b) if isinstance(x, Tensor)), None)
    if like is None:
        raise DTypeError("where() needs at least one Tensor among condition, a and b")
    mask, x, y = operand(condition, like), operand(a, like), operand(b, like)
    if mask.dtype is not DType.BOOL:
        raise DTypeError(f"where() needs a BOOL condition, got {mask.dtype.name}")
    _broadcast(mask, x, y)
    dtype, backend = result_dtype(x, y), like._backend
    xp, chosen = backend.xp, mask._data
    out = xp.where(chosen, backend.astype(x._data, dtype), backend.astype(y._data, dtype))

    def backward(g: Any) -> tuple[Any, Any, Any]:
        return (None,
                sum_to_shape(xp, xp.where(chosen, g, 0), x.shape) if x.requires_grad else None,
                sum_to_shape(xp, xp.where(chosen, 0, g), y.shape) if y.requires_grad else None)

    return record(out, backend, (mask, x, y), backward, saves=(mask,))


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
from ...errors import DTypeError, InvalidArgumentError
from ..autograd import record
from ..tensor import Tensor, wrap
from .elementwise import check_broadcast, operand, result_dtype, sum_to_shape

#: What a comparison operand may be; anything else (None, a string) compares as Python
#: objects do, so ``t == None`` is False as in PyTorch.
_COMPARABLE = (Tensor, numbers.Number, np.generic, np.ndarray, list, tuple)


def _element_wise(combine: Callable[[Any, Any], Any], symbol: str, logical: bool,
                  swapped: bool = False) -> Callable[[Tensor, Any], Any]:
    """``a <symbol> other`` (``other <symbol> a`` when `swapped`) on the promoted operands,
    recording no gradient: a comparison, or (`logical`) a logical / bitwise operation of
    BOOL or integer tensors."""

    def method(a: Tensor, other: Any) -> Any:
        if not isinstance(other, _COMPARABLE):
            return NotImplemented
        b = operand(other, a)
        check_broadcast(a, b)
        dtype, backend = result_dtype(a, b), a._backend
        if logical and dtype.is_float:
            raise DTypeError(f"{symbol} needs BOOL or integer tensors, got {a.dtype.name} and {b.dtype.name}")
        x, y = backend.astype(a._data, dtype), backend.astype(b._data, dtype)
        return wrap(backend.xp.asarray(combine(y, x) if swapped else combine(x, y)), backend)

    kind = "logical (BOOL) or bitwise (integer)" if logical else "comparison of the promoted operands"
    method.__doc__ = f"Element-wise ``{symbol}``: a {kind}, as a tensor without gradient."
    return method


eq, ne, lt, le, gt, ge = (_element_wise(op, symbol, logical=False) for op, symbol in (
    (operator.eq, "=="), (operator.ne, "!="), (operator.lt, "<"), (operator.le, "<="), (operator.gt, ">"),
    (operator.ge, ">=")))
logical_and, logical_or, logical_xor = (_element_wise(op, symbol, logical=True) for op, symbol in (
    (operator.and_, "&"), (operator.or_, "|"), (operator.xor, "^")))
reflected_and, reflected_or, reflected_xor = (_element_wise(op, symbol, logical=True, swapped=True)
                                              for op, symbol in ((operator.and_, "&"), (operator.or_, "|"),
                                                                 (operator.xor, "^")))


def invert(a: Tensor) -> Tensor:
    """``~a``: logical not of a BOOL tensor, bitwise not of an integer one."""
    if a.dtype.is_float:
        raise DTypeError(f"~ needs a BOOL or integer tensor, got {a.dtype.name}")
    return wrap(a._backend.xp.asarray(~a._data), a._backend)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """``a`` where `condition` holds, else ``b``, broadcast together; the gradient of each
    element goes to the operand it came from. `condition` must be BOOL; `a` and `b` may be
    tensors, arrays or scalars (one of the three must be a tensor)."""
    like = next((x for x in (condition, a, b) if isinstance(x, Tensor)), None)
    if like is None:
        raise InvalidArgumentError("where() needs at least one Tensor among condition, a and b")
    mask, x, y = operand(condition, like), operand(a, like), operand(b, like)
    if mask.dtype is not DType.BOOL:
        raise DTypeError(f"where() needs a BOOL condition, got {mask.dtype.name}")
    check_broadcast(mask, x, y)
    dtype, backend = result_dtype(x, y), like._backend
    xp, chosen = backend.xp, mask._data
    out = xp.where(chosen, backend.astype(x._data, dtype), backend.astype(y._data, dtype))

    def backward(g: Any) -> tuple[Any, Any, Any]:
        return (None,
                sum_to_shape(xp, xp.where(chosen, g, 0), x.shape) if x.requires_grad else None,
                sum_to_shape(xp, xp.where(chosen, 0, g), y.shape) if y.requires_grad else None)

    return record(out, backend, (mask, x, y), backward, saves=(mask,))


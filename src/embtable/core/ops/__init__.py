"""Differentiable operations on tensors, and the methods and operators they give `Tensor`.

Importing this package installs them on the class (as JAX does for its arrays): `Tensor`
itself imports no operation, so the modules here can build on it without an import cycle.
"""

from __future__ import annotations

from typing import Any

from ..autograd import backward
from ..tensor import Tensor
from . import conversions, elementwise, linalg, losses, reductions, rows, shapes
from .elementwise import add, div, mul, power, reflected, sub


def _backward(self: Tensor, grad: Any = None) -> None:
    """Add the gradient of this tensor with respect to each leaf it was computed from into
    that leaf's ``.grad`` (gradients accumulate until zeroed). `grad` is the gradient of
    some scalar with respect to this tensor; it may be omitted for a one-element tensor."""
    backward(self, grad)


def _transposed(self: Tensor) -> Tensor:
    """All axes reversed (the transpose of a matrix)."""
    return shapes.permute(self)


_METHODS = {
    "__add__": add, "__radd__": reflected(add), "__sub__": sub, "__rsub__": reflected(sub),
    "__mul__": mul, "__rmul__": reflected(mul), "__truediv__": div, "__rtruediv__": reflected(div),
    "__pow__": power, "__rpow__": reflected(power),
    "__matmul__": linalg.matmul, "__rmatmul__": reflected(linalg.matmul),
    "__neg__": elementwise.negative, "__getitem__": shapes.getitem,
    "exp": elementwise.exp, "log": elementwise.log, "tanh": elementwise.tanh,
    "sigmoid": elementwise.sigmoid, "relu": elementwise.relu,
    "sum": reductions.sum, "mean": reductions.mean, "max": reductions.max, "norm": reductions.norm,
    "reshape": shapes.reshape, "permute": shapes.permute, "transpose": shapes.transpose,
    "T": property(_transposed), "to": conversions.to, "backward": _backward,
}
for _name, _method in _METHODS.items():
    setattr(Tensor, _name, _method)

__all__ = ["conversions", "elementwise", "linalg", "losses", "reductions", "rows", "shapes"]

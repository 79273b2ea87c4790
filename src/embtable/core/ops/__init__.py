"""Differentiable operations on tensors, and the methods and operators they give `Tensor`.

Importing this package installs them on the class (as JAX does for its arrays): `Tensor`
itself imports no operation, so the modules here can build on it without an import cycle.
"""

from __future__ import annotations

from typing import Any

from ..autograd import backward
from ..tensor import Tensor
from . import comparisons, conversions, elementwise, inplace, linalg, losses, reductions, rows, shapes
from .elementwise import add, div, mul, power, reflected, sub


def _backward(self: Tensor, grad: Any = None) -> None:
    """Add the gradient of this tensor with respect to each leaf it was computed from into
    that leaf's ``.grad`` (gradients accumulate until zeroed). `grad` is the gradient of
    some scalar with respect to this tensor; it may be omitted for a one-element tensor."""
    backward(self, grad)


def _transposed(self: Tensor) -> Tensor:
    """All axes reversed (the transpose of a matrix)."""
    return shapes.permute(self)


def _dim(self: Tensor) -> int:
    """The number of dimensions (``ndim``), as PyTorch's ``dim()``."""
    return self.ndim


_METHODS = {
    "__add__": add, "__radd__": reflected(add), "__sub__": sub, "__rsub__": reflected(sub),
    "__mul__": mul, "__rmul__": reflected(mul), "__truediv__": div, "__rtruediv__": reflected(div),
    "__pow__": power, "__rpow__": reflected(power),
    "__matmul__": linalg.matmul, "__rmatmul__": reflected(linalg.matmul),
    "__neg__": elementwise.negative, "__abs__": elementwise.abs,
    "__eq__": comparisons.eq, "__ne__": comparisons.ne, "__lt__": comparisons.lt, "__le__": comparisons.le,
    "__gt__": comparisons.gt, "__ge__": comparisons.ge, "__hash__": object.__hash__,
    "__and__": comparisons.logical_and, "__or__": comparisons.logical_or, "__xor__": comparisons.logical_xor,
    "__rand__": comparisons.reflected_and, "__ror__": comparisons.reflected_or,
    "__rxor__": comparisons.reflected_xor, "__invert__": comparisons.invert,
    "__getitem__": shapes.getitem, "__setitem__": inplace.setitem,
    "exp": elementwise.exp, "log": elementwise.log, "tanh": elementwise.tanh,
    "sigmoid": elementwise.sigmoid, "relu": elementwise.relu, "abs": elementwise.abs, "sqrt": elementwise.sqrt,
    "clamp": elementwise.clamp, "clip": elementwise.clamp, "softmax": losses.softmax,
    "sum": reductions.sum, "mean": reductions.mean, "max": reductions.max, "min": reductions.min,
    "amax": reductions.amax, "amin": reductions.amin, "argmax": reductions.argmax, "argmin": reductions.argmin,
    "topk": reductions.topk, "norm": reductions.norm,
    "reshape": shapes.reshape, "view": shapes.reshape, "unsqueeze": shapes.unsqueeze, "squeeze": shapes.squeeze,
    "flatten": shapes.flatten, "size": shapes.size, "dim": _dim,
    "permute": shapes.permute, "transpose": shapes.transpose, "T": property(_transposed),
    "zero_": inplace.zero_, "fill_": inplace.fill_, "copy_": inplace.copy_,
    "to": conversions.to, "clone": conversions.clone, "requires_grad_": conversions.requires_grad_,
    "cpu": conversions.cpu, "cuda": conversions.cuda, **conversions.CASTS,
    "backward": _backward,
}
for _name, _method in _METHODS.items():
    setattr(Tensor, _name, _method)

__all__ = ["comparisons", "conversions", "elementwise", "inplace", "linalg", "losses", "reductions", "rows",
           "shapes"]

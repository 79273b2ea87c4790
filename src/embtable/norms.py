"""p-norms and their gradients over any array namespace (``xp``): used by `Tensor.norm`, by
``max_norm`` clipping, and by the renorm of half-precision tables."""

from __future__ import annotations

import math
from typing import Any


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

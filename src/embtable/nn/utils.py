"""Helpers for training loops: `clip_grad_norm_`."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from ..core import RowSparseGrad, Tensor
from ..errors import InvalidArgumentError


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> Tensor:
    """Scale the gradients of `parameters` together so that their total `norm_type`-norm
    (the norm of all their elements as one vector; a `RowSparseGrad` counts its stored
    rows) is at most `max_norm`, as ``torch.nn.utils.clip_grad_norm_``: each ``.grad`` is
    replaced by itself times ``max_norm / (total + 1e-6)`` when that is below 1. Returns the
    total norm before clipping (a 0-d float64 tensor on the CPU)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    if not all(isinstance(p, Tensor) for p in params):
        raise InvalidArgumentError("clip_grad_norm_ takes a Tensor or an iterable of Tensors")
    if not (isinstance(max_norm, (int, float)) and max_norm >= 0):
        raise InvalidArgumentError(f"max_norm must be a number >= 0, got {max_norm!r}")
    if not (isinstance(norm_type, (int, float)) and norm_type > 0):
        raise InvalidArgumentError(f"norm_type must be > 0 (inf allowed), got {norm_type!r}")
    with_grads = [p for p in params if p.grad is not None]
    norms = [float(_values(p.grad).norm(p=norm_type)) for p in with_grads]
    if not norms:
        total = 0.0
    elif math.isinf(norm_type):
        total = max(norms)
    else:
        total = float(np.linalg.norm(np.asarray(norms, np.float64), ord=norm_type))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for p in with_grads:
            grad = p.grad
            p.grad = (RowSparseGrad(grad.indices, grad.values * scale, grad.shape)
                      if isinstance(grad, RowSparseGrad) else grad * scale)
    return Tensor(total, dtype="float64")


def _values(grad: Tensor | RowSparseGrad) -> Tensor:
    return grad.values if isinstance(grad, RowSparseGrad) else grad

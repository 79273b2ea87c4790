"""Matrix products."""

from __future__ import annotations

from typing import Any

from ...dtype import accumulation_dtype
from ...errors import ShapeError
from ..autograd import record
from ..ieee import ieee
from ..tensor import Tensor
from .elementwise import operand, result_dtype, sum_to_shape


@ieee
def matmul(a: Tensor, b: Any) -> Tensor:
    """``a @ b`` as NumPy's matmul, 1-D operands included; half precision sums in F32."""
    b = operand(b, a)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul needs tensors of at least 1 dimension, got {a.shape} and {b.shape}")
    inner_a, inner_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if inner_a != inner_b:
        raise ShapeError(f"matmul shapes {a.shape} and {b.shape} do not fit: {inner_a} != {inner_b}")
    dtype = result_dtype(a, b)
    wide = accumulation_dtype(dtype) if dtype.is_float else dtype
    backend = a._backend
    xp = backend.xp
    left, right = backend.astype(a._data, wide), backend.astype(b._data, wide)
    out = backend.astype(xp.matmul(left, right), dtype)

    def backward(g: Any) -> tuple[Any, Any]:
        x = left if a.ndim > 1 else left[None, :]
        y = right if b.ndim > 1 else right[:, None]
        g = g if b.ndim > 1 else g[..., None]
        g = g if a.ndim > 1 else g[..., None, :]
        grad_a = grad_b = None
        if a.requires_grad:
            grad_a = sum_to_shape(xp, xp.matmul(g, xp.swapaxes(y, -1, -2)), x.shape).reshape(a.shape)
        if b.requires_grad:
            grad_b = sum_to_shape(xp, xp.matmul(xp.swapaxes(x, -1, -2), g), y.shape).reshape(b.shape)
        return grad_a, grad_b

    return record(out, backend, (a, b), backward)

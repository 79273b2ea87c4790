"""Row-wise Adagrad: one accumulator per table row."""

from __future__ import annotations

from typing import Any, Iterable

from ..core import Tensor
from ..errors import ShapeError
from .optimizer import Optimizer, non_negative


class RowWiseAdagrad(Optimizer):
    """Adagrad with one accumulator per row of a table, as FBGEMM's EXACT_ROWWISE_ADAGRAD:
    for each row ``r`` with gradient ``g_r``, ``s_r += mean(g_r ** 2)``, then
    ``w_r -= lr * g_r / (sqrt(s_r) + eps)``.

    Its state is ``[num_embeddings]`` instead of ``[num_embeddings, embedding_dim]``, which
    keeps the optimizer of a huge table small. With a `RowSparseGrad` only the rows present
    change. Parameters must be 2-D (tables).
    """

    hyper = {"lr": non_negative, "eps": non_negative}

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, eps: float = 1e-10) -> None:
        super().__init__(params, lr=lr, eps=eps)
        for i, param in enumerate(self.params):
            if param.ndim != 2:
                raise ShapeError(f"RowWiseAdagrad updates tables (2-D parameters); parameter {i} has shape "
                                 f"{param.shape}")

    def buffer_names(self) -> tuple[str, ...]:
        return ("sum",)

    def buffer_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape[:1]

    def scalars(self, step: int) -> tuple:
        return (self.lr, self.eps)

    def update(self, xp: Any, p: Any, g: Any, buffers: list[Any], scalars: tuple,
               sparse: bool) -> list[Any]:
        lr, eps = scalars
        total = buffers[0] + xp.sum(g * g, axis=1) / max(g.shape[1], 1)
        return [p + -lr * (g / (xp.sqrt(total)[:, None] + eps)), total]

"""Adagrad."""

from __future__ import annotations

from typing import Any, Iterable

from ..backends import FusedStep
from ..core import Tensor
from .optimizer import Optimizer, non_negative


class Adagrad(Optimizer):
    """``torch.optim.Adagrad`` step for step: ``g += weight_decay * p``, ``sum += g * g``,
    ``p -= lr * g / (sqrt(sum) + eps)``.

    With a `RowSparseGrad` only the rows present change (as PyTorch does for sparse
    gradients); weight decay, which PyTorch refuses there, applies to those rows only.
    """

    hyper = {"lr": non_negative, "eps": non_negative, "weight_decay": non_negative}
    fused_step = FusedStep.ADAGRAD

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, eps: float = 1e-10,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, eps=eps, weight_decay=weight_decay)

    def buffer_names(self) -> tuple[str, ...]:
        return ("sum",)

    def scalars(self, step: int) -> tuple:
        return (self.lr, self.eps, self.weight_decay)

    def update(self, xp: Any, p: Any, g: Any, buffers: list[Any], scalars: tuple,
               sparse: bool) -> list[Any]:
        lr, eps, weight_decay = scalars
        if weight_decay:
            g = g + weight_decay * p
        total = buffers[0] + g * g
        return [p + -lr * (g / (xp.sqrt(total) + eps)), total]

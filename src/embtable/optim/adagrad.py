"""Adagrad."""

from __future__ import annotations

from typing import Any, Iterable

from ..tensor import Tensor
from .optimizer import Optimizer, non_negative


class Adagrad(Optimizer):
    """``torch.optim.Adagrad`` step for step: ``g += weight_decay * p``, ``sum += g * g``,
    ``p -= lr * g / (sqrt(sum) + eps)``.

    With a `RowSparseGrad` only the rows present change (as PyTorch does for sparse
    gradients); weight decay, which PyTorch refuses there, applies to those rows only.
    """

    hyper = ("lr", "eps", "weight_decay")

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, eps: float = 1e-10,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=non_negative("lr", lr), eps=non_negative("eps", eps),
                         weight_decay=non_negative("weight_decay", weight_decay))

    def _update(self, p: Any, g: Any, rows: Any, state: dict[str, Any], param: Tensor) -> Any:
        xp = param._backend.xp
        state["step"] = state.get("step", 0) + 1
        if self.weight_decay:
            g = g + self.weight_decay * p
        total = self._buffer(state, "sum", param, rows) + g * g
        self._store(state, "sum", rows, total)
        return p + -self.lr * (g / (xp.sqrt(total) + self.eps))

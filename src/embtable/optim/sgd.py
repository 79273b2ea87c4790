"""Stochastic gradient descent, with momentum and weight decay."""

from __future__ import annotations

from typing import Any, Iterable

from ..backends import FusedStep
from ..core import Tensor
from .optimizer import Optimizer, non_negative


class SGD(Optimizer):
    """``torch.optim.SGD`` (no dampening, no Nesterov), step for step.

    Each step: ``d = grad + weight_decay * p``; with momentum, ``buf = momentum * buf + d``
    (a buffer starts as its first ``d``) and ``d = buf``; then ``p -= lr * d``.

    With a `RowSparseGrad` only the rows present are updated. Weight decay then applies to
    those rows only, and momentum is lazy: a row's buffer starts as that row's first
    gradient and moves only at the steps where the row has one.
    """

    hyper = {"lr": non_negative, "momentum": non_negative, "weight_decay": non_negative}
    fused_step = FusedStep.SGD

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def buffer_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    def scalars(self, step: int) -> tuple:
        return (self.lr, self.momentum, self.weight_decay)

    def update(self, xp: Any, p: Any, g: Any, buffers: list[Any], scalars: tuple,
               sparse: bool) -> list[Any]:
        lr, momentum, weight_decay = scalars
        if weight_decay:
            g = g + weight_decay * p
        if not momentum:
            return [p - lr * g]
        buf = momentum * buffers[0] + g  # starts at zero: its first value is exactly g
        return [p - lr * buf, buf]

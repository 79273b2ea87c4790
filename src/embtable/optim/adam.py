"""Adam and AdamW."""

from __future__ import annotations

import math
from typing import Any, Iterable

from ..backends import FusedStep
from ..core import Tensor
from .optimizer import Optimizer, betas_pair, non_negative


class Adam(Optimizer):
    """``torch.optim.Adam`` step for step on dense gradients (``weight_decay`` adds
    ``weight_decay * p`` to the gradient).

    With a `RowSparseGrad` the update is lazy and equals ``torch.optim.SparseAdam``: only the
    rows present change, their moments decay only at the steps where they are present, the
    bias correction uses the parameter's step count, and ``eps`` is added before the bias
    correction (SparseAdam's formula). Weight decay then applies to the rows present only.
    """

    hyper = {"lr": non_negative, "betas": betas_pair, "eps": non_negative, "weight_decay": non_negative}
    fused_step = FusedStep.ADAM
    decoupled = False

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def buffer_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def scalars(self, step: int) -> tuple:
        return (step, self.lr, *self.betas, self.eps, self.weight_decay, self.decoupled)

    def update(self, xp: Any, p: Any, g: Any, buffers: list[Any], scalars: tuple,
               sparse: bool) -> list[Any]:
        step, lr, beta1, beta2, eps, weight_decay, decoupled = scalars
        m, v = buffers
        if decoupled:
            p = p * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * p
        m = m + (1 - beta1) * (g - m)
        correction1 = 1 - beta1**step
        correction2 = 1 - beta2**step
        if sparse:  # SparseAdam
            v = v + (1 - beta2) * (g * g - v)
            step_size = lr * math.sqrt(correction2) / correction1
            return [p + -step_size * (m / (xp.sqrt(v) + eps)), m, v]
        v = v * beta2 + (1 - beta2) * (g * g)
        denominator = xp.sqrt(v) / math.sqrt(correction2) + eps
        return [p - (lr / correction1) * (m / denominator), m, v]


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay, ``p *= 1 - lr * weight_decay``
    before each update. With a `RowSparseGrad` the decay applies to the rows present only,
    followed by the lazy (SparseAdam) update of `Adam`."""

    decoupled = True

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

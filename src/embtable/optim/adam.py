"""Adam and AdamW."""

from __future__ import annotations

import math
from typing import Any, Iterable

from ..tensor import Tensor
from .optimizer import Optimizer, betas_pair, non_negative


class Adam(Optimizer):
    """``torch.optim.Adam`` step for step on dense gradients (``weight_decay`` adds
    ``weight_decay * p`` to the gradient).

    With a `RowSparseGrad` the update is lazy and equals ``torch.optim.SparseAdam``: only the
    rows present change, their moments decay only at the steps where they are present, the
    bias correction uses the parameter's step count, and ``eps`` is added before the bias
    correction (SparseAdam's formula). Weight decay then applies to the rows present only.
    """

    hyper = ("lr", "betas", "eps", "weight_decay")
    decoupled = False

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=non_negative("lr", lr), betas=betas_pair(betas),
                         eps=non_negative("eps", eps),
                         weight_decay=non_negative("weight_decay", weight_decay))

    def _update(self, p: Any, g: Any, rows: Any, state: dict[str, Any], param: Tensor) -> Any:
        xp = param._backend.xp
        beta1, beta2 = self.betas
        state["step"] = step = state.get("step", 0) + 1
        if self.decoupled:
            p = p * (1 - self.lr * self.weight_decay)
        elif self.weight_decay:
            g = g + self.weight_decay * p
        m = self._buffer(state, "exp_avg", param, rows)
        v = self._buffer(state, "exp_avg_sq", param, rows)
        m = m + (1 - beta1) * (g - m)
        v = v * beta2 + (1 - beta2) * (g * g) if rows is None else v + (1 - beta2) * (g * g - v)
        self._store(state, "exp_avg", rows, m)
        self._store(state, "exp_avg_sq", rows, v)
        correction1 = 1 - beta1**step
        correction2 = 1 - beta2**step
        if rows is None:
            denominator = xp.sqrt(v) / math.sqrt(correction2) + self.eps
            return p - (self.lr / correction1) * (m / denominator)
        step_size = self.lr * math.sqrt(correction2) / correction1
        return p + -step_size * (m / (xp.sqrt(v) + self.eps))


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay, ``p *= 1 - lr * weight_decay``
    before each update. With a `RowSparseGrad` the decay applies to the rows present only,
    followed by the lazy (SparseAdam) update of `Adam`."""

    decoupled = True

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

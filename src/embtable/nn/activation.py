"""Layers without parameters for the models around a table: `ReLU` and `Dropout`."""

from __future__ import annotations

from typing import Any

from ..core import Tensor
from ..validate import probability
from .functional import dropout
from .layer import Layer


class ReLU(Layer):
    """``max(x, 0)`` of each element."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()

    def config(self) -> dict[str, Any]:
        return {}


class Dropout(Layer):
    """In training, zeroes each element with probability `p` and scales the rest by
    ``1 / (1 - p)``; in evaluation, passes `x` through (see `functional.dropout`)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = probability("dropout probability p", p)

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def extra_repr(self) -> str:
        return f"p={self.p}"

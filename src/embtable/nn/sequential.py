"""`Sequential`: layers applied one after another."""

from __future__ import annotations

from typing import Any, Iterator

from ..errors import InvalidArgumentError
from .layer import Layer


class Sequential(Layer):
    """Calls each of `layers` on the previous one's output, in order, as
    ``torch.nn.Sequential``. The children are named ``"0"``, ``"1"``, ... so a state dict's
    keys (``"0.weight"``) match PyTorch's."""

    def __init__(self, *layers: Layer) -> None:
        for layer in layers:
            self.append(layer)

    def append(self, layer: Layer) -> Sequential:
        """Add `layer` at the end; returns this sequence."""
        if not isinstance(layer, Layer):
            raise InvalidArgumentError(f"Sequential holds embtable layers, got {type(layer).__name__}")
        setattr(self, str(len(self)), layer)
        return self

    def forward(self, x: Any) -> Any:
        for layer in self:
            x = layer(x)
        return x

    def __len__(self) -> int:
        return sum(1 for _ in self.named_children())

    def __iter__(self) -> Iterator[Layer]:
        return (layer for _, layer in self.named_children())

    def __getitem__(self, index: int) -> Layer:
        layers = list(self)
        try:
            return layers[index]
        except (IndexError, TypeError):
            raise InvalidArgumentError(f"Sequential of {len(layers)} layers has no layer {index!r}") from None

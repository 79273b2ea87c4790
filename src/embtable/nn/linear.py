"""`Linear`: ``y = x @ weight.T + bias``, so that real models can be built around an embedding."""

from __future__ import annotations

import math
from typing import Any

from ..core import Tensor
from ..device import DeviceLike
from ..dtype import DTypeLike
from ..rng import generator
from ..validate import positive_int
from .functional import linear
from .init import parameter, placement
from .layer import Layer


class Linear(Layer):
    """An affine map from `in_features` to `out_features`, as ``torch.nn.Linear``.

    The weight has shape ``[out_features, in_features]`` and the bias ``[out_features]``;
    both start uniform in ``[-1/sqrt(in_features), 1/sqrt(in_features)]`` (PyTorch's default).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: DeviceLike = None, dtype: DTypeLike = None) -> None:
        fan_in = positive_int("in_features", in_features)
        fan_out = positive_int("out_features", out_features)
        device, dtype = placement(device, dtype)
        bound = 1.0 / math.sqrt(fan_in)

        def uniform(*shape: int) -> Tensor:
            return parameter(generator().uniform(-bound, bound, shape).astype(dtype.numpy), device)

        self.register_parameter("weight", uniform(fan_out, fan_in))
        self.register_parameter("bias", uniform(fan_out) if bias else None)

    @property
    def in_features(self) -> int:
        """The length of each input vector."""
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        """The length of each output vector."""
        return self.weight.shape[0]

    def forward(self, x: Any) -> Tensor:
        """``x @ weight.T + bias`` for `x` of shape ``[..., in_features]``: a float `Tensor`
        of the weight's dtype, or a NumPy array or (nested) list, taken in that dtype."""
        return linear(x, self.weight, self.bias)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer's shape and dtype."""
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "dtype": self.weight.dtype.name}

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"

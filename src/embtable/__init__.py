"""embtable: a trainable Embedding layer system — integer indices in, dense vectors out."""

from . import io, nn, optim
from .backends import set_default_device
from .backends.host_cache import empty_host_cache, set_host_cache_limit
from .core import RowSparseGrad, Tensor, no_grad
from .core.ops.comparisons import where
from .core.ops.shapes import cat, stack
from .device import Device, get_default_device
from .dtype import DType, get_default_dtype, set_default_dtype
from .errors import (DeviceError, DTypeError, Error, IndexOutOfRangeError,
                     InvalidArgumentError, ModifiedTensorError, SerializationError,
                     ShapeError, ShardLostError)
from .nn import LayerState
from .rng import manual_seed

from_dlpack = Tensor.from_dlpack

__all__ = [
    "Device", "DType", "Tensor", "RowSparseGrad", "LayerState", "nn", "optim", "io", "no_grad", "from_dlpack",
    "cat", "stack", "where",
    "get_default_device", "set_default_device", "get_default_dtype", "set_default_dtype",
    "manual_seed", "empty_host_cache", "set_host_cache_limit",
    "Error", "IndexOutOfRangeError", "DTypeError", "ShapeError", "InvalidArgumentError",
    "DeviceError", "SerializationError", "ModifiedTensorError", "ShardLostError",
]

"""What every layer's constructor does before its own work: check where its parameters go,
and turn freshly drawn host values into parameters there."""

from __future__ import annotations

import numpy as np

from ..backends import backend_for
from ..core import Tensor
from ..device import Device, DeviceLike, as_device
from ..dtype import DType, DTypeLike, as_float_dtype


def placement(device: DeviceLike, dtype: DTypeLike) -> tuple[Device, DType]:
    """The device and float dtype of a new layer's parameters, checked (`DeviceError`,
    `DTypeError`) before any value is drawn."""
    resolved_dtype = as_float_dtype(dtype)
    resolved_device = as_device(device)
    backend_for(resolved_device)
    return resolved_device, resolved_dtype


def parameter(values: np.ndarray, device: Device) -> Tensor:
    """A trainable tensor on `device` holding `values` (a host array the caller gives up:
    on the CPU it is used as it is, not copied)."""
    tensor = Tensor.from_dlpack(values, device)
    tensor.requires_grad = True
    return tensor

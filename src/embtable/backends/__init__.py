"""Backends: one per array library. A backend is a module offering the same small set of
array functions and kernels (see `numpy_backend` for the list); `backend_for` picks the one
that holds a device's data.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from ..device import Device
from ..errors import DeviceError
from . import numpy_backend


def backend_for(device: Device) -> ModuleType:
    """The backend that holds data on `device`; `DeviceError` if none can."""
    if device.kind == "cpu":
        return numpy_backend
    raise DeviceError(_unavailable(device))


def _unavailable(device: Device) -> str:
    if importlib.util.find_spec("torch") is None:
        hint = "embtable runs CUDA and MPS through PyTorch: pip install 'embtable[torch]'"
    else:
        hint = "embtable's PyTorch backend for CUDA and MPS is not built yet; only 'cpu' works"
    return f"device {device} is not available: {hint}"

"""Backends: one per array library. A backend offers the same small set of array functions
and kernels (see `numpy_backend` for the list); `backend_for` picks the one that holds a
device's data: NumPy (with numba kernels) on the CPU, PyTorch on CUDA and MPS, and PyTorch
on the CPU too when the environment variable ``EMBTABLE_CPU_BACKEND=torch`` is set (read at
import), so that the accelerators' code path runs everywhere.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

from ..device import Device
from ..errors import DeviceError, InvalidArgumentError
from . import numpy_backend

_CPU_BACKEND = os.environ.get("EMBTABLE_CPU_BACKEND", "numpy").strip().lower() or "numpy"
if _CPU_BACKEND not in ("numpy", "torch"):
    raise InvalidArgumentError(f"EMBTABLE_CPU_BACKEND must be 'numpy' or 'torch', got {_CPU_BACKEND!r}")


def backend_for(device: Device) -> Any:
    """The backend that holds data on `device`; `DeviceError` if none can."""
    if device.kind == "cpu" and _CPU_BACKEND == "numpy":
        return numpy_backend
    return _torch_backend(device)


@functools.lru_cache(maxsize=None)
def _torch_backend(device: Device) -> Any:
    if importlib.util.find_spec("torch") is None:
        raise DeviceError(f"device {device} is not available: embtable runs {device.kind.upper()} "
                          f"through PyTorch, which is not installed: pip install 'embtable[torch]'")
    import torch

    if device.kind == "cuda" and not (torch.cuda.is_available() and device.index < torch.cuda.device_count()):
        raise DeviceError(f"device {device} is not available: PyTorch sees "
                          f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} CUDA devices "
                          f"(a CUDA build of PyTorch and a GPU are needed)")
    if device.kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device} is not available: PyTorch's MPS backend needs an Apple GPU")
    from .torch_backend import TorchBackend

    return TorchBackend(device)

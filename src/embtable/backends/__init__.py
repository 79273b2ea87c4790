"""Backends: one per array library, each a `Backend` (see `base`). `backend_for` picks the
one that holds a device's data: NumPy (with numba kernels) on the CPU, PyTorch on CUDA and
MPS, and PyTorch on the CPU too when the environment variable ``EMBTABLE_CPU_BACKEND=torch``
is set (read at import), so that the accelerators' code path runs everywhere.
"""

from __future__ import annotations

import importlib.util
import os

from ..device import Device, DeviceLike, as_device, use_as_default_device
from ..errors import DeviceError, InvalidArgumentError
from .base import BagGradient, Backend, FusedStep
from .numpy_backend import NUMPY

__all__ = ["BagGradient", "Backend", "FusedStep", "backend_for", "set_default_device"]

_CPU_BACKEND = os.environ.get("EMBTABLE_CPU_BACKEND", "numpy").strip().lower() or "numpy"
if _CPU_BACKEND not in ("numpy", "torch"):
    raise InvalidArgumentError(f"EMBTABLE_CPU_BACKEND must be 'numpy' or 'torch', got {_CPU_BACKEND!r}")

#: The backend of each device asked for so far (PyTorch's are made on first use).
_backends: dict[Device, Backend] = {Device.CPU: NUMPY} if _CPU_BACKEND == "numpy" else {}


def backend_for(device: Device) -> Backend:
    """The backend that holds data on `device`; `DeviceError` if none can."""
    backend = _backends.get(device)
    if backend is None:
        backend = _backends[device] = _torch_backend(device)
    return backend


def set_default_device(device: DeviceLike) -> None:
    """Make `device` the device that new tensors and layers use when given ``device=None``;
    `DeviceError` (and no change) if it cannot hold data."""
    resolved = as_device(device)
    backend_for(resolved)
    use_as_default_device(resolved)


def _torch_backend(device: Device) -> Backend:
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

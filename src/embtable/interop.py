"""Turning what users hand us (Python scalars and lists, NumPy arrays, DLPack or array
objects from PyTorch, JAX, CuPy, ...) into host NumPy arrays.
"""

from __future__ import annotations

import sys
from typing import Any

import ml_dtypes
import numpy as np

from .errors import DTypeError, ShapeError


def host_array(data: Any) -> np.ndarray:
    """`data` as a NumPy array, without copying when `data` already is one (or shares memory
    through DLPack). Python floats come back as float64 and ints as int64; the caller decides
    what dtype they become.
    """
    if isinstance(data, np.ndarray):
        return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))
    if is_array_list(data):
        parts = [host_array(x) for x in data]  # a list of tensors or arrays, as torch.tensor takes
        if len({p.shape for p in parts}) != 1:
            raise ShapeError(f"cannot stack arrays of shapes {[p.shape for p in parts]} into one tensor")
        return np.stack(parts)
    if getattr(data, "requires_grad", False) and hasattr(data, "detach"):
        data = data.detach()  # a PyTorch tensor that records gradients refuses export
    if _is_torch_bfloat16(data):
        return _torch_bfloat16_to_numpy(data)
    if hasattr(data, "__dlpack__"):
        try:
            return np.from_dlpack(data, device="cpu")
        except (BufferError, TypeError, ValueError, RuntimeError):
            pass  # fall through to the array protocol, which some producers handle better
    try:
        array = host_array(np.asarray(data))
    except ValueError as error:  # ragged nested lists
        raise ShapeError(f"cannot build a tensor from {describe(data)}: {error}") from None
    if array.dtype == object or array.dtype.kind in "USVcmM":
        raise DTypeError(f"cannot build a tensor from {describe(data)}: "
                         f"expected numbers or booleans, got NumPy dtype {array.dtype}")
    return array


def _is_torch_bfloat16(data: Any) -> bool:
    return type(data).__module__.startswith("torch") and str(getattr(data, "dtype", "")) == "torch.bfloat16"


def _torch_bfloat16_to_numpy(data: Any) -> np.ndarray:
    # NumPy cannot import bfloat16 through DLPack; the bits travel as int16.
    bits = data.cpu().contiguous().view(dtype=sys.modules["torch"].int16)
    return np.from_dlpack(bits).view(ml_dtypes.bfloat16)


def describe(data: Any) -> str:
    """A short repr of `data` for error messages."""
    text = repr(data)
    return text if len(text) <= 60 else f"{text[:57]}..."


def is_array_list(data: Any) -> bool:
    """Whether `data` is a non-empty list or tuple of array objects (stacked, keeping their dtype)."""
    return isinstance(data, (list, tuple)) and bool(data) and all(hasattr(x, "__array__") for x in data)


def exportable(array: Any) -> Any:
    """An object whose ``__dlpack__`` exports `array`. NumPy cannot export bfloat16, so a
    bfloat16 array travels as a PyTorch tensor that shares its memory."""
    if not (isinstance(array, np.ndarray) and array.dtype == ml_dtypes.bfloat16):
        return array
    try:
        import torch
    except ImportError:
        raise DTypeError("NumPy cannot export bfloat16 through DLPack; install PyTorch "
                         "(pip install 'embtable[torch]') to export BF16 tensors") from None
    return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)

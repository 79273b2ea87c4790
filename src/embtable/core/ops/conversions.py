"""Copies of a tensor on another device or in another dtype."""

from __future__ import annotations

from typing import Any

from ...backends import backend_for
from ...device import DeviceLike, as_device
from ...dtype import DTypeLike, accumulation_dtype, as_dtype
from ..autograd import record
from ..sparse_grad import RowSparseGrad
from ..tensor import Tensor, wrap


def to(a: Tensor, device: DeviceLike = None, dtype: DTypeLike = None) -> Tensor:
    """A copy on `device` with `dtype`; ``None`` keeps the current device / dtype.

    The copy is labelled with the device its data is on. Its gradient flows back to `a`,
    moved back to `a`'s device and cast to `a`'s accumulation dtype (a row-sparse one stays
    row-sparse); an integer copy records nothing.
    """
    source = a._backend
    target = source if device is None else backend_for(as_device(device))
    resolved = a.dtype if dtype is None else as_dtype(dtype)
    array = a._data if target is source else target.from_host(source.to_host(a._data))
    data = target.astype(array, resolved, copy=True)
    if not resolved.is_float:
        return wrap(data, target)

    wide = accumulation_dtype(a.dtype)

    def backward(g: Any) -> tuple[Any]:
        if isinstance(g, RowSparseGrad):
            return (g.to(a.device, wide),)
        return (source.astype(g if target is source else source.from_host(target.to_host(g)), wide),)

    return record(data, target, (a,), backward, saves=())

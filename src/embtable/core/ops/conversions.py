"""Copies of a tensor on another device or in another dtype (`to` and PyTorch's shortcuts
for it), and `clone`."""

from __future__ import annotations

from typing import Any, Callable

from ...backends import backend_for
from ...device import Device, DeviceLike, as_device
from ...dtype import DType, DTypeLike, accumulation_dtype, as_dtype
from ..autograd import record
from ..sparse_grad import RowSparseGrad
from ..tensor import Tensor, wrap


def to(a: Tensor, device: DeviceLike = None, dtype: DTypeLike = None) -> Tensor:
    """A copy on `device` with `dtype`; ``None`` keeps the current device / dtype.

    This is the explicit cast, and like PyTorch's ``.to`` (and NumPy's ``astype``) it never
    refuses a value: integers that the new dtype cannot hold wrap around (I64 200 becomes
    I8 -56), floats are truncated toward zero into an integer dtype (NaN, infinities and
    out-of-range floats give whatever the platform's conversion gives, without a warning),
    and floats beyond a float dtype's range become infinities. Building a tensor from data,
    ``Tensor(data, dtype=...)``, is the checked way: it refuses such values.

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


def _cast(dtype: DType, name: str) -> Callable[[Tensor], Tensor]:
    def cast(a: Tensor) -> Tensor:
        return a if a.dtype is dtype else to(a, dtype=dtype)

    cast.__name__ = cast.__qualname__ = name
    cast.__doc__ = f"This tensor as {dtype.name} (itself when it already is), as PyTorch's ``{name}()``."
    return cast


#: PyTorch's cast methods, by name.
CASTS = {name: _cast(dtype, name) for name, dtype in (
    ("float", DType.F32), ("double", DType.F64), ("half", DType.F16), ("bfloat16", DType.BF16),
    ("long", DType.I64), ("int", DType.I32), ("bool", DType.BOOL))}


def clone(a: Tensor) -> Tensor:
    """A copy of the values, its gradient flowing back to `a`."""
    return record(a._backend.astype(a._data, a.dtype, copy=True), a._backend, (a,), lambda g: (g,), saves=())


def requires_grad_(a: Tensor, requires_grad: bool = True) -> Tensor:
    """Set ``requires_grad`` in place; returns `a`."""
    a.requires_grad = requires_grad
    return a


def cpu(a: Tensor) -> Tensor:
    """This tensor on the CPU (itself when it already is there)."""
    return a if a.device == Device.CPU else to(a, Device.CPU)


def cuda(a: Tensor, device: int = 0) -> Tensor:
    """This tensor on CUDA device `device` (itself when it already is there)."""
    target = as_device(f"cuda:{device}")
    return a if a.device == target else to(a, target)

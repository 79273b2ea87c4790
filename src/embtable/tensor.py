"""`Tensor`: an n-dimensional array on a device, with the links autograd needs.

A tensor owns a backend array (`_data`: NumPy on the CPU) and knows its device. Inputs are
validated and converted here, once; layers and functional ops work on tensors, kernels on
backend arrays.
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np

from .backends import backend_for
from .device import Device, DeviceLike, as_device
from .dtype import DType, DTypeLike, as_dtype, get_default_dtype
from .errors import DTypeError, ShapeError
from .interop import exportable as _exportable
from .interop import host_array

_PYTHON_DATA = (bool, int, float, list, tuple)


def _is_python_float_data(data: Any, array: np.ndarray) -> bool:
    """Python floats (not NumPy's float64 scalar, a float subclass) take the default dtype."""
    return isinstance(data, _PYTHON_DATA) and not isinstance(data, np.generic) and array.dtype.kind == "f"


class Tensor:
    """An n-dimensional array of one `DType` on one `Device`.

    Args:
        data: a Python scalar or nested lists, a NumPy array, a `Tensor`, or any object that
            offers ``__dlpack__`` or ``__array__`` (PyTorch, JAX, CuPy arrays). The values are
            always copied.
        dtype: the element type. ``None`` keeps the dtype of an array argument; for Python
            data, ints give ``I64``, bools ``BOOL`` and floats the default float dtype.
        device: where the data lives; ``None`` is the default device.
        requires_grad: whether autograd records operations on this tensor (float only).
    """

    __slots__ = ("_data", "_device", "_requires_grad", "grad", "__weakref__")

    def __init__(self, data: Any, dtype: DTypeLike = None, device: DeviceLike = None,
                 requires_grad: bool = False) -> None:
        target = as_device(device)
        backend = backend_for(target)
        if isinstance(data, Tensor):
            array = data.numpy()
        else:
            array = host_array(data)
            if dtype is None and _is_python_float_data(data, array):
                dtype = get_default_dtype()
        resolved = DType.from_numpy(array.dtype) if dtype is None else as_dtype(dtype)
        self._data = backend.from_host(array.astype(resolved.numpy, copy=True))
        self._device = target
        self._requires_grad = False
        self.requires_grad = requires_grad
        self.grad: Tensor | None = None

    @classmethod
    def new(cls, data: Any, dtype: DTypeLike = None, device: DeviceLike = None,
            requires_grad: bool = False) -> Tensor:
        """The seed's ``Tensor::new``: the same as ``Tensor(data, ...)``."""
        return cls(data, dtype=dtype, device=device, requires_grad=requires_grad)

    @classmethod
    def _wrap(cls, array: Any, device: Device, requires_grad: bool = False) -> Tensor:
        """A tensor around an existing backend array, without copying or validating."""
        tensor = cls.__new__(cls)
        tensor._data = array
        tensor._device = device
        tensor._requires_grad = requires_grad
        tensor.grad = None
        return tensor

    # --- what it is ---------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    def numel(self) -> int:
        """The number of elements."""
        return int(np.prod(self._data.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self._data.shape:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    @property
    def dtype(self) -> DType:
        return self._backend.dtype_of(self._data)

    @property
    def device(self) -> Device:
        return self._device

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not self.dtype.is_float:
            raise DTypeError(f"only float tensors can require gradients, this one is {self.dtype.name}")
        self._requires_grad = bool(value)

    @property
    def _backend(self):
        return backend_for(self._device)

    # --- getting the values out ---------------------------------------------------------

    def numpy(self) -> np.ndarray:
        """A NumPy copy of the values, on the host."""
        return np.array(self._backend.to_host(self._data), copy=True)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        host = self._backend.to_host(self._data)
        if copy:
            host = host.copy()
        return host if dtype is None else host.astype(dtype, copy=False)

    def __dlpack__(self, **kwargs: Any) -> Any:
        return _exportable(self._data).__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return _exportable(self._data).__dlpack_device__()

    def tolist(self) -> Any:
        """The values as (nested) Python lists of Python scalars."""
        return self._backend.to_host(self._data).tolist()

    def item(self) -> bool | int | float:
        """The value of a one-element tensor as a Python scalar."""
        if self.numel() != 1:
            raise ShapeError(f"item() needs a tensor with exactly one element, "
                             f"this one has shape {self.shape}")
        value = self._backend.to_host(self._data).reshape(()).item()
        return float(value) if self.dtype is DType.BF16 else value

    # --- new tensors from this one ------------------------------------------------------

    def to(self, device: DeviceLike = None, dtype: DTypeLike = None) -> Tensor:
        """A copy on `device` with `dtype`; ``None`` keeps the current device / dtype."""
        target = self._device if device is None else as_device(device)
        resolved = self.dtype if dtype is None else as_dtype(dtype)
        backend = backend_for(target)
        array = backend.from_host(self._backend.to_host(self._data))
        return Tensor._wrap(backend.astype(array, resolved, copy=True), target)

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, outside any autograd graph."""
        return Tensor._wrap(self._data, self._device)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        """The same values in a new shape; one dimension may be -1 (inferred).

        Accepts ``reshape(2, 3)``, ``reshape((2, 3))`` and ``reshape([2, 3])``.
        """
        target = _target_shape(shape, self.shape)
        return Tensor._wrap(self._data.reshape(target), self._device)

    def __repr__(self) -> str:
        body = np.array2string(np.asarray(self._backend.to_host(self._data), dtype=np.float64)
                               if self.dtype is DType.BF16 else self._backend.to_host(self._data),
                               separator=", ", prefix="Tensor(", threshold=200)
        extras = [f"dtype={self.dtype.name}"]
        if self._device != Device.CPU:
            extras.append(f"device={self._device}")
        if self._requires_grad:
            extras.append("requires_grad=True")
        return f"Tensor({body}, {', '.join(extras)})"


def _target_shape(args: tuple, current: tuple[int, ...]) -> tuple[int, ...]:
    """Validate a reshape request against `current`; resolve its -1."""
    dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    try:
        wanted = [operator.index(d) for d in dims]
    except TypeError:
        raise ShapeError(f"a shape must be ints, got {dims!r}") from None
    if sum(d == -1 for d in wanted) > 1 or any(d < -1 for d in wanted):
        raise ShapeError(f"invalid shape {tuple(wanted)}: dimensions must be >= 0, with at most one -1")
    size = int(np.prod(current, dtype=np.int64))
    known = int(np.prod([d for d in wanted if d != -1], dtype=np.int64))
    if -1 in wanted:
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape a tensor of shape {current} ({size} elements) "
                             f"into {tuple(wanted)}")
        wanted[wanted.index(-1)] = size // known
    elif known != size:
        raise ShapeError(f"cannot reshape a tensor of shape {current} ({size} elements) "
                         f"into {tuple(wanted)}")
    return tuple(wanted)

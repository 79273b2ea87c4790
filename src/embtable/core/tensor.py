"""`Tensor`: an n-dimensional array on a device, with the links autograd needs.

A tensor owns a backend array and the `Backend` that holds it (so its device is always
where its data is). Inputs are validated and converted here, once. This module defines what
a tensor *is*; what can be done with one (arithmetic, reductions, reshapes, ``backward``)
is installed on the class by `embtable.core.ops`, which imports this module, never the
other way round.

The functions at the end (`wrap`, `data_of`, `backend_of`, `replace_data`, `mark_modified`,
`keep_values`)
are the one seam between tensors and backend arrays, for the code that must cross it: the
ops and autograd here in `core`, and the table storages (`embtable.tables`).
"""

from __future__ import annotations

import abc
from typing import Any, Protocol

import numpy as np

from ..backends import Backend, backend_for
from ..device import Device, DeviceLike, as_device
from ..dtype import DType, DTypeLike, as_dtype, check_values_fit, get_default_dtype
from ..errors import DeviceError, DTypeError, InvalidArgumentError, ShapeError
from ..interop import describe, exportable, host_array, is_array_list

_PYTHON_DATA = (bool, int, float, list, tuple)


class SparseGradient(abc.ABC):
    """A gradient that stores only part of a tensor's values (`RowSparseGrad` is the one
    kind): what ``Tensor.grad`` accepts besides a dense `Tensor`."""

    __slots__ = ()
    shape: tuple[int, ...]

    @property
    @abc.abstractmethod
    def dtype(self) -> DType: ...

    @property
    @abc.abstractmethod
    def device(self) -> Device: ...

    @abc.abstractmethod
    def to_dense(self) -> Tensor:
        """The same gradient as a dense tensor."""


class Tensor:
    """An n-dimensional array of one `DType` on one `Device`.

    Args:
        data: a Python scalar or nested lists, a NumPy array, a `Tensor`, or any object that
            offers ``__dlpack__`` or ``__array__`` (PyTorch, JAX, CuPy arrays). The values are
            always copied.
        dtype: the element type. ``None`` keeps the dtype of an array argument; for Python
            data, ints give ``I64``, bools ``BOOL`` and floats the default float dtype. A
            value that an integer dtype cannot hold (``Tensor([200], dtype=I8)``, a float
            beyond its range, NaN, an infinity) raises `InvalidArgumentError` naming it and
            the range, as ``torch.tensor`` refuses it (a float inside the range is truncated
            toward zero); a NumPy array whose values do not fit is refused too (PyTorch
            wraps those). An embtable `Tensor` given as `data` is cast as `to` casts it:
            wrapping around, as PyTorch's ``torch.tensor(tensor, dtype=...)``.
        device: where the data lives; ``None`` is the default device.
        requires_grad: whether autograd records operations on this tensor (float only).
    """

    __slots__ = ("_array", "_keeper", "_backend", "_requires_grad", "_node", "_grad", "_versions", "__weakref__")
    __array_ufunc__ = None  # `numpy_value * tensor` calls Tensor.__rmul__, keeping gradients

    def __init__(self, data: Any, dtype: DTypeLike = None, device: DeviceLike = None,
                 requires_grad: bool = False) -> None:
        backend = backend_for(as_device(device))
        self._array = as_array(data, dtype, backend, copy=True)
        self._keeper = None
        self._backend = backend
        self._requires_grad = False
        self._node = None
        self._grad = None
        self._versions = [0]
        self.requires_grad = requires_grad

    @classmethod
    def new(cls, data: Any, dtype: DTypeLike = None, device: DeviceLike = None,
            requires_grad: bool = False) -> Tensor:
        """The seed's ``Tensor::new``: the same as ``Tensor(data, ...)``."""
        return cls(data, dtype=dtype, device=device, requires_grad=requires_grad)

    @classmethod
    def from_dlpack(cls, data: Any, device: DeviceLike = None) -> Tensor:
        """A tensor sharing memory with `data` (any object offering ``__dlpack__``: NumPy, PyTorch,
        JAX, CuPy arrays) wherever the devices allow: changes to one show in the other.
        Unlike ``Tensor(data)``, which always copies."""
        backend = backend_for(as_device(device))
        return wrap(backend.from_host(host_array(data)), backend)

    # --- what it is ---------------------------------------------------------------------

    @property
    def _data(self) -> Any:
        """The backend array of the values, brought up to date first when a `ValueKeeper`
        keeps them (reading the metadata — shape, dtype — never asks it)."""
        if self._keeper is not None:
            self._keeper.bring_up_to_date()
        return self._array

    @_data.setter
    def _data(self, array: Any) -> None:
        self._array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    @property
    def ndim(self) -> int:
        return len(self._array.shape)

    def numel(self) -> int:
        """The number of elements."""
        return int(np.prod(self._array.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self._array.shape:
            raise TypeError("len() of a 0-d tensor")
        return self._array.shape[0]

    @property
    def dtype(self) -> DType:
        return self._backend.dtype_of(self._array)

    @property
    def device(self) -> Device:
        return self._backend.device

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self._node is not None:
            raise InvalidArgumentError("requires_grad can only be set on a leaf tensor (one not "
                                       "computed by an operation); use detach() first")
        if value and not self.dtype.is_float:
            raise DTypeError(f"only float tensors can require gradients, this one is {self.dtype.name}")
        self._requires_grad = bool(value)

    @property
    def grad(self) -> Tensor | SparseGradient | None:
        """The gradient accumulated by `backward` (a `RowSparseGrad` for sparse tables), or
        None. Assigning checks that it fits: same shape, dtype and device."""
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | SparseGradient | None) -> None:
        if value is not None:
            if not isinstance(value, (Tensor, SparseGradient)):
                raise InvalidArgumentError(f"a gradient must be a Tensor, a RowSparseGrad or None, "
                                           f"got {type(value).__name__}")
            if tuple(value.shape) != self.shape:
                raise ShapeError(f"a gradient of shape {tuple(value.shape)} does not fit a tensor of "
                                 f"shape {self.shape}")
            if value.dtype != self.dtype:
                raise DTypeError(f"a gradient of dtype {value.dtype.name} does not fit a tensor of "
                                 f"dtype {self.dtype.name}")
            if value.device != self.device:
                raise DeviceError(f"a gradient on {value.device} does not fit a tensor on {self.device}")
        self._grad = value

    @property
    def is_leaf(self) -> bool:
        """True for a tensor not computed by a recorded operation (gradients stop here)."""
        return self._node is None

    @property
    def _version(self) -> int:
        """How often this tensor's data (or that of a tensor it is a view of) changed in place."""
        return self._versions[0]

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
        return exportable(self._data).__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return exportable(self._data).__dlpack_device__()

    def tolist(self) -> Any:
        """The values as (nested) Python lists of Python scalars."""
        return self._backend.to_host(self._data).tolist()

    def item(self) -> bool | int | float:
        """The value of a one-element tensor as a Python scalar."""
        return self._scalar("item()")

    def _scalar(self, what: str) -> bool | int | float:
        """The one element as a Python scalar, or `ShapeError` saying that `what` needs one."""
        if self.numel() != 1:
            raise ShapeError(f"{what} needs a tensor with exactly one element, this one has shape {self.shape}")
        value = self._backend.to_host(self._data).reshape(()).item()
        return float(value) if self.dtype is DType.BF16 else value

    def __bool__(self) -> bool:
        """The truth of a one-element tensor; a larger (or empty) one raises `ShapeError`
        rather than being silently true."""
        return bool(self._scalar("bool(tensor)"))

    def __float__(self) -> float:
        return float(self._scalar("float(tensor)"))

    def __int__(self) -> int:
        return int(self._scalar("int(tensor)"))

    def __index__(self) -> int:
        """A one-element integer tensor used as an index (``range(t)``, ``xs[t]``)."""
        if not (self.dtype.is_integer or self.dtype is DType.BOOL):
            raise TypeError(f"only integer tensors of one element can be used as an index, got {self.dtype.name}")
        return int(self._scalar("an index"))

    def __format__(self, spec: str) -> str:
        """``f"{loss:.3f}"`` formats a one-element tensor's value (as PyTorch, a 0-d tensor's
        value with any spec); a larger tensor takes only the empty spec, giving its repr."""
        if spec or self.ndim == 0:
            return format(self._scalar(f"format(tensor, {spec!r})"), spec)
        return str(self)

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, outside any autograd graph."""
        return wrap(self._data, self._backend, view_of=self)

    def __repr__(self) -> str:
        host = self._backend.to_host(self._data)
        body = np.array2string(np.asarray(host, dtype=np.float64) if self.dtype is DType.BF16 else host,
                               separator=", ", prefix="Tensor(", threshold=200)
        extras = [f"dtype={self.dtype.name}"]
        if self.device != Device.CPU:
            extras.append(f"device={self.device}")
        if self._requires_grad:
            extras.append("requires_grad=True")
        return f"Tensor({body}, {', '.join(extras)})"


def as_array(data: Any, dtype: DTypeLike, backend: Backend, copy: bool = False, *, wrap_around: bool = False) -> Any:
    """`data` as an array of `backend`, following `Tensor`'s dtype rules; copied only when a
    conversion needs it or `copy` is set (a tensor of another backend crosses via the host).

    A `Tensor` is cast as ``Tensor.to`` casts it. Other data (Python numbers and lists,
    NumPy and DLPack arrays) must fit an integer `dtype` (`check_values_fit`), unless
    `wrap_around` asks for the cast's wrapping, as PyTorch takes a scalar operand of
    arithmetic (``int8_tensor + 200``)."""
    if isinstance(data, Tensor):
        array = data._data if data._backend is backend else backend.from_host(data._backend.to_host(data._data))
        resolved = data.dtype if dtype is None else as_dtype(dtype)
    else:
        host = _host_data(data, dtype)
        if dtype is None and _is_python_data(data) and host.dtype.kind in "fu":
            if host.dtype.kind == "u":
                raise DTypeError(f"Python ints become I64, and {describe(data)} does not fit in I64")
            dtype = get_default_dtype()
        resolved = DType.from_numpy(host.dtype) if dtype is None else as_dtype(dtype)
        if not wrap_around:
            check_values_fit(host, resolved)
        array = backend.from_host(host)
    return backend.astype(array, resolved, copy=copy)


def _host_data(data: Any, dtype: DTypeLike) -> np.ndarray:
    """`host_array(data)`, but Python ints bound for an integer `dtype` kept exact: NumPy
    holds ints past int64 beside negative ones only as (rounded) float64, and ints past 64
    bits only as objects; such ints are checked against `dtype` as Python ints
    (`check_values_fit`) and converted without rounding."""
    target = None if dtype is None else as_dtype(dtype)
    exact = target is not None and target.is_integer and _is_python_data(data)
    try:
        host = host_array(data)
    except DTypeError:
        ints = _python_ints(data) if exact else None
        if ints is None:
            raise
        host = ints
    if exact and host.dtype.kind in "fO":
        ints = host if host.dtype.kind == "O" else _python_ints(data)
        if ints is not None:
            check_values_fit(ints, target)
            return ints.astype(target.numpy)
    return host


def _python_ints(data: Any) -> np.ndarray | None:
    """The Python data `data` as an object array of its ints, or None if it holds anything else."""
    objects = np.asarray(data, dtype=object)
    return objects if all(isinstance(value, int) for value in objects.flat) else None


def _is_python_data(data: Any) -> bool:
    """Python scalars and lists of them (not NumPy's float64 scalar, a float subclass, nor a
    list of arrays, which keeps their dtype): their floats take the default dtype, ints I64."""
    return isinstance(data, _PYTHON_DATA) and not isinstance(data, np.generic) and not is_array_list(data)


# --- the seam between tensors and backend arrays ---------------------------------------------

def wrap(array: Any, backend: Backend, *, requires_grad: bool = False, view_of: Tensor | None = None) -> Tensor:
    """A tensor around an existing array of `backend`, without copying or validating; a view
    of another tensor's data shares that tensor's version counter."""
    tensor = Tensor.__new__(Tensor)
    tensor._array = array
    tensor._keeper = None
    tensor._backend = backend
    tensor._requires_grad = requires_grad
    tensor._node = None
    tensor._grad = None
    tensor._versions = [0] if view_of is None else view_of._versions
    return tensor


def data_of(tensor: Tensor) -> Any:
    """The backend array holding `tensor`'s values (shared, not copied)."""
    return tensor._data


def backend_of(tensor: Tensor) -> Backend:
    """The backend holding `tensor`'s data."""
    return tensor._backend


def replace_data(tensor: Tensor, array: Any, backend: Backend | None = None) -> None:
    """Give `tensor` new values (an array of `backend`, by default its own): a load or a move,
    which counts as an in-place change."""
    tensor._data = array
    if backend is not None:
        tensor._backend = backend
    mark_modified(tensor)


def mark_modified(tensor: Tensor) -> None:
    """Record that `tensor`'s values changed in place (an optimizer step, a renorm): a pending
    backward that needs the old values then refuses to run."""
    tensor._versions[0] += 1


class ValueKeeper(Protocol):
    """What keeps a tensor's values somewhere the tensor's array does not fully hold (a
    file-backed table keeps changed rows in a cache before writing them to its file)."""

    def bring_up_to_date(self) -> None:
        """Make the tensor's array hold every current value: called before each read of it."""

    def refuse_in_place(self, what: str) -> None:
        """Raise the error that says why `what` (``"fill_()"``, ...) cannot change the values."""


def keep_values(tensor: Tensor, keeper: ValueKeeper) -> None:
    """Let `keeper` keep `tensor`'s values: it is asked to bring the array up to date before
    every read of the values, and in-place changes go through it."""
    tensor._keeper = keeper


def keeper_of(tensor: Tensor) -> ValueKeeper | None:
    """The `ValueKeeper` of `tensor`, or None: its array holds its values."""
    return tensor._keeper

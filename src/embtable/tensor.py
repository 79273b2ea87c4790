"""`Tensor`: an n-dimensional array on a device, with the links autograd needs.

A tensor owns a backend array (`_data`: NumPy on the CPU) and knows its device. Inputs are
validated and converted here, once; layers and functional ops work on tensors, kernels on
backend arrays.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .backends import backend_for
from .device import Device, DeviceLike, as_device
from .dtype import DType, DTypeLike, as_dtype, get_default_dtype
from .errors import DeviceError, DTypeError, InvalidArgumentError, ShapeError
from .interop import exportable as _exportable
from .interop import describe, host_array, is_array_list

if TYPE_CHECKING:
    from .sparse import RowSparseGrad

_PYTHON_DATA = (bool, int, float, list, tuple)


def _is_python_data(data: Any) -> bool:
    """Python scalars and lists of them (not NumPy's float64 scalar, a float subclass, nor a
    list of arrays, which keeps their dtype): their floats take the default dtype, ints I64."""
    return isinstance(data, _PYTHON_DATA) and not isinstance(data, np.generic) and not is_array_list(data)



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

    __slots__ = ("_data", "_device", "_requires_grad", "_node", "_grad", "_versions", "__weakref__")
    __array_ufunc__ = None  # `numpy_value * tensor` calls Tensor.__rmul__, keeping gradients

    def __init__(self, data: Any, dtype: DTypeLike = None, device: DeviceLike = None,
                 requires_grad: bool = False) -> None:
        target = as_device(device)
        self._data = as_array(data, dtype, target, copy=True)
        self._device = target
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
        target = as_device(device)
        backend = backend_for(target)
        return cls._wrap(backend.from_host(host_array(data)), target)

    @classmethod
    def _wrap(cls, array: Any, device: Device, requires_grad: bool = False,
              view_of: Tensor | None = None) -> Tensor:
        """A tensor around an existing backend array, without copying or validating; a view
        of another tensor's data shares that tensor's version counter."""
        tensor = cls.__new__(cls)
        tensor._data = array
        tensor._device = device
        tensor._requires_grad = requires_grad
        tensor._node = None
        tensor._grad = None
        tensor._versions = [0] if view_of is None else view_of._versions
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
        if self._node is not None:
            raise InvalidArgumentError("requires_grad can only be set on a leaf tensor (one not "
                                       "computed by an operation); use detach() first")
        if value and not self.dtype.is_float:
            raise DTypeError(f"only float tensors can require gradients, this one is {self.dtype.name}")
        self._requires_grad = bool(value)

    @property
    def grad(self) -> Tensor | RowSparseGrad | None:
        """The gradient accumulated by `backward` (a `RowSparseGrad` for sparse tables), or
        None. Assigning checks that it fits: same shape, dtype and device."""
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | RowSparseGrad | None) -> None:
        from .sparse import RowSparseGrad

        if value is not None:
            if not isinstance(value, (Tensor, RowSparseGrad)):
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

    def _replace_data(self, array: Any, device: Device | None = None) -> None:
        """Give this tensor new values (a load, a move); counts as an in-place change."""
        self._data = array
        if device is not None:
            self._device = device
        self._modified_in_place()

    def _modified_in_place(self) -> None:
        """Record that the values changed in place (an optimizer step, a renorm): a pending
        backward that needs the old values then refuses to run."""
        self._versions[0] += 1

    @property
    def _version(self) -> int:
        """How often this tensor's data (or that of a tensor it is a view of) changed in place."""
        return self._versions[0]

    @property
    def is_leaf(self) -> bool:
        """True for a tensor not computed by a recorded operation (gradients stop here)."""
        return self._node is None

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
        return ops.to(self, backend.astype(array, resolved, copy=True))

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, outside any autograd graph."""
        return Tensor._wrap(self._data, self._device, view_of=self)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        """The same values in a new shape; one dimension may be -1 (inferred).

        Accepts ``reshape(2, 3)``, ``reshape((2, 3))`` and ``reshape([2, 3])``.
        """
        return ops.reshape(self, _target_shape(shape, self.shape))

    # --- autograd -------------------------------------------------------------------------

    def backward(self, grad: Any = None) -> None:
        """Add the gradient of this tensor with respect to each leaf it was computed from into
        that leaf's ``.grad`` (gradients accumulate until zeroed). `grad` is the gradient of
        some scalar with respect to this tensor; it may be omitted for a one-element tensor."""
        autograd.backward(self, grad)

    # --- arithmetic (NumPy broadcasting; see `embtable.ops`) ------------------------------

    def __add__(self, other: Any) -> Tensor:
        return ops.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return ops.add(ops.operand(other, self), self)

    def __sub__(self, other: Any) -> Tensor:
        return ops.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return ops.sub(ops.operand(other, self), self)

    def __mul__(self, other: Any) -> Tensor:
        return ops.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return ops.mul(ops.operand(other, self), self)

    def __truediv__(self, other: Any) -> Tensor:
        return ops.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return ops.div(ops.operand(other, self), self)

    def __pow__(self, other: Any) -> Tensor:
        return ops.power(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return ops.power(ops.operand(other, self), self)

    def __matmul__(self, other: Any) -> Tensor:
        return ops.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return ops.matmul(ops.operand(other, self), self)

    def __neg__(self) -> Tensor:
        return ops.negative(self)

    def __getitem__(self, key: Any) -> Tensor:
        return ops.getitem(self, key)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """The sum over `axis` (an int, ints, or None for all); integers sum to I64."""
        return ops.sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """The mean over `axis` (an int, ints, or None for all)."""
        return ops.mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """The largest value over `axis`; tied maxima share the gradient equally (``torch.amax``)."""
        return ops.max(self, axis, keepdims)

    def norm(self, p: float = 2.0, axis: Any = None, keepdims: bool = False) -> Tensor:
        """The p-norm (p > 0, inf allowed) over `axis` (None: all elements, as one vector)."""
        return ops.norm(self, p, axis, keepdims)

    def exp(self) -> Tensor:
        """e to the power of each element."""
        return ops.exp(self)

    def log(self) -> Tensor:
        """The natural logarithm of each element."""
        return ops.log(self)

    def tanh(self) -> Tensor:
        """The hyperbolic tangent of each element."""
        return ops.tanh(self)

    def sigmoid(self) -> Tensor:
        """``1 / (1 + exp(-x))`` of each element, without overflow."""
        return ops.sigmoid(self)

    def relu(self) -> Tensor:
        """``max(x, 0)`` of each element."""
        return ops.relu(self)

    def transpose(self, *dims: int) -> Tensor:
        """``transpose(dim0, dim1)`` swaps two axes, as in PyTorch; ``transpose()`` reverses
        all of them (``.T``). `permute` reorders axes freely."""
        if not dims:
            return ops.permute(self)
        if len(dims) != 2:
            raise ShapeError(f"transpose takes two axes to swap (or none), got {dims}; use permute")
        order = list(range(self.ndim))
        try:
            order[dims[0]], order[dims[1]] = order[dims[1]], order[dims[0]]
        except (IndexError, TypeError):
            raise ShapeError(f"cannot swap axes {dims} of a tensor of {self.ndim} dimensions") from None
        return ops.permute(self, tuple(order))

    def permute(self, *axes: int) -> Tensor:
        """The axes in the given order (``permute(2, 0, 1)`` or ``permute((2, 0, 1))``)."""
        return ops.permute(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes)

    @property
    def T(self) -> Tensor:  # noqa: N802
        """All axes reversed (the transpose of a matrix)."""
        return ops.permute(self)

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


def as_array(data: Any, dtype: DTypeLike, device: Device, copy: bool = False) -> Any:
    """`data` as a backend array on `device`, following `Tensor`'s dtype rules; copied only
    when a conversion needs it or `copy` is set."""
    backend = backend_for(device)
    if isinstance(data, Tensor):
        array = data._data if data.device == device else backend.from_host(data._backend.to_host(data._data))
        resolved = data.dtype if dtype is None else as_dtype(dtype)
    else:
        host = host_array(data)
        if dtype is None and _is_python_data(data) and host.dtype.kind in "fu":
            if host.dtype.kind == "u":
                raise DTypeError(f"Python ints become I64, and {describe(data)} does not fit in I64")
            dtype = get_default_dtype()
        resolved = DType.from_numpy(host.dtype) if dtype is None else as_dtype(dtype)
        array = backend.from_host(host)
    return backend.astype(array, resolved, copy=copy)


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


# The operations are defined over Tensor, so they are imported once it exists.
from . import autograd, ops  # noqa: E402

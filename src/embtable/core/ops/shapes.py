"""A tensor's values in another shape or order, selected by an index, or joined with
others: reshape (view), unsqueeze, squeeze, flatten, permute, transpose, indexing, cat and
stack. Reshapes, permutations and basic indexing are views sharing the input's data (and
so its version counter); advanced indexing, cat and stack copy."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
import numbers
import operator
from typing import Any, Sequence

import numpy as np

from ...backends import Backend
from ...dtype import DType
from ...errors import DeviceError, DTypeError, IndexOutOfRangeError, InvalidArgumentError, ShapeError
from ..autograd import record
from ..tensor import Tensor
from .elementwise import promoted
from .reductions import normalized_axes


def reshape(a: Tensor, *shape: int | Sequence[int]) -> Tensor:
    """The same values in a new shape; one dimension may be -1 (inferred).

    Accepts ``reshape(2, 3)``, ``reshape((2, 3))`` and ``reshape([2, 3])``.
    """
    target = _target_shape(shape, a.shape)
    return record(a._data.reshape(target), a._backend, (a,), lambda g: (g.reshape(a.shape),), saves=(),
                  view_of=a)


def _target_shape(args: tuple, current: tuple[int, ...]) -> tuple[int, ...]:
    """Validate a reshape request against `current`; resolve its -1."""
    dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    try:
        wanted = [operator.index(d) for d in dims]
    except TypeError:
        raise ShapeError(f"a shape must be ints, got {dims!r}") from None
    if sum(d == -1 for d in wanted) > 1 or any(d < -1 for d in wanted):
        raise ShapeError(f"invalid shape {tuple(wanted)}: dimensions must be >= 0, with at most one -1")
    size = math.prod(current)
    known = math.prod(d for d in wanted if d != -1)
    if -1 in wanted:
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape a tensor of shape {current} ({size} elements) "
                             f"into {tuple(wanted)}")
        wanted[wanted.index(-1)] = size // known
    elif known != size:
        raise ShapeError(f"cannot reshape a tensor of shape {current} ({size} elements) "
                         f"into {tuple(wanted)}")
    return tuple(wanted)


def permute(a: Tensor, *axes: int | Sequence[int]) -> Tensor:
    """The axes in the given order (``permute(2, 0, 1)`` or ``permute((2, 0, 1))``; all
    reversed when none are given)."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    if axes and not all(isinstance(i, numbers.Integral) for i in axes):
        raise ShapeError(f"permute axes must be ints, got {axes!r}")
    order = tuple(range(a.ndim))[::-1] if not axes else tuple(int(i) + a.ndim * (int(i) < 0) for i in axes)
    if sorted(order) != list(range(a.ndim)):
        raise ShapeError(f"transpose axes {axes} are not a permutation of {a.ndim} axes")
    xp = a._backend.xp
    inverse = tuple(int(i) for i in np.argsort(order))
    return record(xp.permute_dims(a._data, order), a._backend, (a,), lambda g: (xp.permute_dims(g, inverse),),
                  saves=(), view_of=a)


def transpose(a: Tensor, *dims: int) -> Tensor:
    """``transpose(dim0, dim1)`` swaps two axes, as in PyTorch; ``transpose()`` reverses
    all of them (``.T``). `permute` reorders axes freely."""
    if not dims:
        return permute(a)
    if len(dims) != 2:
        raise ShapeError(f"transpose takes two axes to swap (or none), got {dims}; use permute")
    order = list(range(a.ndim))
    try:
        order[dims[0]], order[dims[1]] = order[dims[1]], order[dims[0]]
    except (IndexError, TypeError):
        raise ShapeError(f"cannot swap axes {dims} of a tensor of {a.ndim} dimensions") from None
    return permute(a, tuple(order))


def unsqueeze(a: Tensor, dim: int) -> Tensor:
    """A view with a new axis of size 1 at `dim` (``-a.ndim - 1 <= dim <= a.ndim``)."""
    if not isinstance(dim, numbers.Integral) or not -a.ndim - 1 <= dim <= a.ndim:
        raise ShapeError(f"unsqueeze dim must be an int in [{-a.ndim - 1}, {a.ndim}], got {dim!r}")
    at = int(dim) % (a.ndim + 1)
    return reshape(a, a.shape[:at] + (1,) + a.shape[at:])


def squeeze(a: Tensor, dim: int | Sequence[int] | None = None) -> Tensor:
    """A view without the axes of size 1 (only those among `dim` when given; a listed axis
    of another size stays, as PyTorch)."""
    axes = range(a.ndim) if dim is None else normalized_axes(dim, max(a.ndim, 1))
    return reshape(a, tuple(n for i, n in enumerate(a.shape) if not (i in axes and n == 1)))


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """A view with axes `start_dim` to `end_dim` (inclusive) merged into one; a 0-d tensor
    becomes 1-D."""
    if a.ndim == 0:
        return reshape(a, 1)
    start, end = normalized_axes(start_dim, a.ndim)[0], normalized_axes(end_dim, a.ndim)[0]
    if start > end:
        raise ShapeError(f"flatten needs start_dim <= end_dim, got {start_dim} and {end_dim} for {a.ndim} axes")
    return reshape(a, a.shape[:start] + (math.prod(a.shape[start:end + 1]),) + a.shape[end + 1:])


def size(a: Tensor, dim: int | None = None) -> tuple[int, ...] | int:
    """The shape, or the length of axis `dim`."""
    return a.shape if dim is None else a.shape[normalized_axes(dim, max(a.ndim, 1))[0]]


def getitem(a: Tensor, key: Any) -> Tensor:
    """``a[key]`` as NumPy indexes: ints (and 0-d integer tensors), slices, None and
    Ellipsis give a view; integer arrays, lists or tensors and boolean masks give a copy,
    whose gradient is summed back into the positions it came from (repeats add up)."""
    backend = a._backend
    index = index_of(key, backend)
    values = read_indexed(a, index)

    def backward(g: Any) -> tuple[Any]:
        grad = backend.zeros(a.shape, backend.dtype_of(g))
        if index.advanced:
            backend.index_add_(grad, index.key, g)
        else:
            grad[index.key] = g
        return (grad,)

    return record(values, backend, (a,), backward, saves=index.tensors, view_of=None if index.advanced else a)


@dataclass(frozen=True)
class Index:
    """An indexing key as a backend's arrays index with it: `key` (a tuple), whether any
    part is `advanced` (an integer or boolean array), and the index `tensors` among the
    parts (a backward that reads them checks they did not change)."""

    key: tuple[Any, ...]
    advanced: bool
    tensors: tuple[Tensor, ...]


def index_of(key: Any, backend: Backend) -> Index:
    """`key` checked and converted for `backend`: integer arrays as int64 (a uint8 array is
    indices on every backend), a basic key ended by ``...`` (so NumPy returns a view, never
    a scalar copy)."""
    parts: list[Any] = []
    tensors: list[Tensor] = []
    for part in key if isinstance(key, tuple) else (key,):
        if isinstance(part, (bool, np.bool_)):
            raise InvalidArgumentError(f"a bool index ({part!r}) is not supported; index with a boolean mask")
        if _is_integer_scalar(part):
            part = operator.index(int(np.asarray(part)))  # indexes as an int, giving a view, as in PyTorch
        if isinstance(part, (numbers.Integral, slice)) or part is None or part is Ellipsis:
            parts.append(operator.index(part) if isinstance(part, numbers.Integral) else part)
            continue
        if isinstance(part, Tensor):
            if part._backend is not backend:
                raise DeviceError(f"an index on {part.device} cannot index a tensor on {backend.device}")
            array = part._data
            tensors.append(part)
        else:
            try:
                host = np.asarray(part)
            except (TypeError, ValueError):
                host = None
            if host is None or host.dtype.kind not in "biu" and host.size:
                raise InvalidArgumentError(f"an index must be ints, slices, None, ..., or integer or boolean "
                                           f"arrays, lists or tensors; got {part!r}")
            array = backend.from_host(host if host.size else host.astype(np.int64))
        dtype = backend.dtype_of(array)
        if dtype is not DType.BOOL and not dtype.is_integer:
            raise DTypeError(f"an index tensor must be integer or BOOL, got {dtype.name}")
        parts.append(array if dtype is DType.BOOL else backend.astype(array, DType.I64))
    advanced = len(parts) > sum(isinstance(p, (int, slice)) or p is None or p is Ellipsis for p in parts)
    if not advanced and not any(p is Ellipsis for p in parts):
        parts.append(Ellipsis)
    return Index(tuple(parts), advanced, tuple(tensors))


def _is_integer_scalar(part: Any) -> bool:
    """A 0-d integer array or tensor of any library (not a Python int, not a bool)."""
    if isinstance(part, (numbers.Integral, bool, np.bool_)):
        return False
    if isinstance(part, Tensor):
        return part.ndim == 0 and part.dtype.is_integer
    if getattr(part, "shape", None) != () or not hasattr(part, "dtype"):
        return False
    try:
        return np.dtype(str(part.dtype).removeprefix("torch.")).kind in "iu"
    except TypeError:  # a dtype NumPy does not name (bfloat16)
        return False


def read_indexed(a: Tensor, index: Index) -> Any:
    """``a``'s array at `index`: a key with two ``...`` or more indexed axes than `a` has
    raises `ShapeError`, an index out of range `IndexOutOfRangeError`."""
    if sum(p is Ellipsis for p in index.key) > 1:
        raise ShapeError("an index can hold one ... at most")
    used = sum(getattr(p, "ndim", 1) if _is_bool_array(p) else p is not None and p is not Ellipsis
               for p in index.key)
    if used > a.ndim:
        raise ShapeError(f"an index of {used} axes for a tensor of shape {a.shape}")
    try:
        return a._data[index.key]
    except IndexError as error:
        raise IndexOutOfRangeError(f"index out of range for a tensor of shape {a.shape}: {error}") from None


def _is_bool_array(part: Any) -> bool:
    return hasattr(part, "dtype") and str(part.dtype).removeprefix("torch.") == "bool"


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """The tensors joined along the existing axis `dim` (their other axes equal; dtypes
    promoted as arithmetic does); each gets its slice of the gradient."""
    tensors, arrays, backend = _joined_inputs(tensors, "cat")
    first = tensors[0]
    axis = normalized_axes(dim, max(first.ndim, 1))[0]
    if first.ndim == 0 or any(t.shape[:axis] + t.shape[axis + 1:] != first.shape[:axis] + first.shape[axis + 1:]
                              or t.ndim != first.ndim for t in tensors):
        raise ShapeError(f"cat needs tensors of one shape except along dim {dim}, got "
                         f"{[t.shape for t in tensors]}")
    xp = backend.xp
    ends = np.cumsum([t.shape[axis] for t in tensors])

    def backward(g: Any) -> tuple[Any, ...]:
        lead = (slice(None),) * axis
        return tuple(g[lead + (slice(int(end) - t.shape[axis], int(end)),)] for t, end in zip(tensors, ends))

    return record(xp.concatenate(arrays, axis=axis), backend, tuple(tensors), backward, saves=())


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """The tensors (all of one shape) joined along a new axis `dim`."""
    tensors = _joined_inputs(tensors, "stack")[0]
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ShapeError(f"stack needs tensors of one shape, got {[t.shape for t in tensors]}")
    if not isinstance(dim, numbers.Integral) or not -tensors[0].ndim - 1 <= dim <= tensors[0].ndim:
        raise ShapeError(f"stack dim must be an int in [{-tensors[0].ndim - 1}, {tensors[0].ndim}], got {dim!r}")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def _joined_inputs(tensors: Sequence[Any], what: str) -> tuple[list[Tensor], list[Any], Backend]:
    """The tensors to join (arrays and lists made tensors), their arrays cast to their
    common dtype, and their backend."""
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise InvalidArgumentError(f"{what} takes a non-empty list or tuple of Tensors, got {tensors!r}")
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    tensors = [t if isinstance(t, Tensor) else Tensor(t, device=None if like is None else like.device)
               for t in tensors]
    backend = tensors[0]._backend
    if any(t._backend is not backend for t in tensors):
        raise DeviceError(f"{what} needs tensors on one device, got {[str(t.device) for t in tensors]}")
    dtype = functools.reduce(promoted, (t.dtype for t in tensors))
    return tensors, [backend.astype(t._data, dtype) for t in tensors], backend

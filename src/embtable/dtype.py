"""Element types: `DType`, its NumPy equivalents and the default float dtype.

bfloat16 on NumPy comes from ml_dtypes, the standard NumPy bf16 dtype.
"""

from __future__ import annotations

import enum
import functools
from typing import Any, Union

import ml_dtypes
import numpy as np

from .errors import DTypeError, InvalidArgumentError


class DType(enum.Enum):
    """An element type. The value is the type's name in safetensors files."""

    BF16 = "BF16"
    F16 = "F16"
    F32 = "F32"
    F64 = "F64"
    BOOL = "BOOL"
    U8 = "U8"
    U16 = "U16"
    U32 = "U32"
    U64 = "U64"
    I8 = "I8"
    I16 = "I16"
    I32 = "I32"
    I64 = "I64"

    @property
    def numpy(self) -> np.dtype:
        """The NumPy dtype that holds this type (bf16: ``ml_dtypes.bfloat16``)."""
        return _NUMPY[self]

    @property
    def is_float(self) -> bool:
        return self in _FLOATS

    @property
    def is_integer(self) -> bool:
        return self.name[0] in "IU"

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    def __repr__(self) -> str:
        return f"DType.{self.name}"

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def from_numpy(dtype: Any) -> DType:
        """The `DType` of a NumPy dtype; `DTypeError` for one embtable does not hold."""
        found = _FROM_NUMPY.get(dtype)  # a NumPy dtype already: the common case, no conversion
        if found is None:
            found = _FROM_NUMPY.get(np.dtype(dtype))
        if found is None:
            raise DTypeError(f"embtable has no dtype for NumPy's {np.dtype(dtype)}; "
                             f"expected one of {', '.join(t.name for t in DType)}")
        return found


_NUMPY = {
    DType.BF16: np.dtype(ml_dtypes.bfloat16),
    DType.F16: np.dtype(np.float16),
    DType.F32: np.dtype(np.float32),
    DType.F64: np.dtype(np.float64),
    DType.BOOL: np.dtype(np.bool_),
    DType.U8: np.dtype(np.uint8),
    DType.U16: np.dtype(np.uint16),
    DType.U32: np.dtype(np.uint32),
    DType.U64: np.dtype(np.uint64),
    DType.I8: np.dtype(np.int8),
    DType.I16: np.dtype(np.int16),
    DType.I32: np.dtype(np.int32),
    DType.I64: np.dtype(np.int64),
}
_FROM_NUMPY = {np_dtype: dtype for dtype, np_dtype in _NUMPY.items()}
_INTEGER_RANGES = {dtype: (int(np.iinfo(np_dtype).min), int(np.iinfo(np_dtype).max))
                   for dtype, np_dtype in _NUMPY.items() if dtype.is_integer}
_FLOATS = frozenset({DType.BF16, DType.F16, DType.F32, DType.F64})

DTypeLike = Union[DType, np.dtype, type, str, None]

_default_dtype = DType.F32


def as_dtype(dtype: DTypeLike) -> DType:
    """The `DType` that `dtype` names.

    Accepts a `DType`, a NumPy dtype or scalar type, a name (``"float32"``, ``"bfloat16"``,
    ``"F32"``, ``"torch.float16"``) or ``None``, which means the default float dtype.
    """
    if dtype is None:
        return _default_dtype
    if isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, str) or type(dtype).__module__ == "torch":
        name = str(dtype).removeprefix("torch.")
        if name in DType.__members__:  # "F32", "BF16"; lower-case names are NumPy's ("i8": int64)
            return DType[name]
        dtype = name
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"{dtype!r} does not name a dtype; expected one of "
                         f"{', '.join(t.name for t in DType)} or a NumPy dtype") from None
    return DType.from_numpy(np_dtype)


def as_float_dtype(dtype: DTypeLike) -> DType:
    """Like `as_dtype`, but only a float dtype (F16, BF16, F32, F64) is accepted."""
    resolved = as_dtype(dtype)
    if not resolved.is_float:
        raise DTypeError(f"expected a float dtype (F16, BF16, F32, F64), got {resolved.name}")
    return resolved


def check_values_fit(values: np.ndarray, dtype: DType) -> None:
    """Raise `InvalidArgumentError` naming the first of the host `values` that the integer
    `dtype` cannot hold, and that dtype's range: an integer outside it, a float outside it
    (before truncation toward zero, so 127.5 does not fit I8: PyTorch's rule), NaN or an
    infinity. Building a tensor from data refuses such values rather than wrapping them
    around (explicit casts, ``Tensor.to``, do wrap). Float and BOOL dtypes take anything;
    values of a dtype that casts safely into `dtype` are not scanned."""
    bounds = _INTEGER_RANGES.get(dtype)
    if bounds is None or _casts_safely(values.dtype, dtype):
        return
    low, high = bounds
    if values.dtype.kind not in "iuO":  # "O": Python ints too wide for NumPy's
        values = values.astype(np.float64)  # half and bfloat16 too, exactly
        fits = (values >= float(low)) & (values <= _largest_float_up_to(high))  # NaN: False
    else:
        fits = (values >= low) & (values <= high)  # NumPy compares with Python ints exactly
    if fits.all():
        return
    first = int(np.argmin(fits.reshape(-1)))
    value = values.item(first)
    where = f" at position {tuple(int(i) for i in np.unravel_index(first, values.shape))}" if values.ndim else ""
    raise InvalidArgumentError(f"value {value!r}{where} does not fit {dtype.name}, whose values run from "
                               f"{low} to {high} (.to(dtype=...) converts without this check, wrapping around)")


@functools.lru_cache(maxsize=None)
def _casts_safely(source: np.dtype, dtype: DType) -> bool:
    """Whether every value of NumPy's `source` dtype fits `dtype` (cached: NumPy's check is slow)."""
    return bool(np.can_cast(source, dtype.numpy, "safe"))


def _largest_float_up_to(limit: int) -> float:
    """The largest float64 not above the integer `limit` (``float(2**63 - 1)`` rounds up)."""
    nearest = float(limit)
    return nearest if int(nearest) <= limit else float(np.nextafter(nearest, -np.inf))


def accumulation_dtype(dtype: DType) -> DType:
    """The dtype that sums over `dtype` values run in (gradients, reductions, optimizer
    state): F32 for the half types, `dtype` itself otherwise."""
    return DType.F32 if dtype in (DType.F16, DType.BF16) else dtype


def set_default_dtype(dtype: DTypeLike) -> None:
    """Make `dtype` (a float dtype) the dtype of new float tensors and layers."""
    global _default_dtype
    _default_dtype = as_float_dtype(dtype)


def get_default_dtype() -> DType:
    """The float dtype used when ``dtype=None`` (``DType.F32`` unless changed)."""
    return _default_dtype

"""`QuantizedTable`: a table stored as 8- or 4-bit codes with a float32 scale and offset per
group of columns (`kernels/cpu/quantized.py` has the layout), read by lookups and pooled
lookups that dequantize each value where they read it. Its one array (codes, scales and
offsets row by row) is the buffer of a quantized layer (`nn/quantized.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..backends.host_cache import host_cache
from ..core import Tensor, backend_of, data_of, wrap
from ..core.ops.bags import Bags
from ..dtype import DType
from ..errors import InvalidArgumentError

BITS = (8, 4)
POOL_MODES = {"sum": 0, "mean": 1, "max": 2}  # the kernel's mode codes
SCALE_OFFSET_BYTES = 8  # a group's float32 scale and offset, after a row's codes


def _kernels() -> Any:
    from ..kernels.cpu import quantized  # numba: imported on first use

    return quantized


def _rows_kernels() -> Any:
    from ..kernels.cpu import rows

    return rows


def row_bytes(dim: int, bits: int, group: int) -> int:
    """The bytes of a quantized row: its codes (one a value at 8 bits, two values a byte at
    4) padded to whole float32 words, then a float32 scale and offset per group."""
    return _codes_end(dim, bits) + SCALE_OFFSET_BYTES * (dim // group)


def _codes_end(dim: int, bits: int) -> int:
    """Where a row's scales and offsets start: after its codes, on a float32 word."""
    return -(-(dim if bits == 8 else (dim + 1) // 2) // 4) * 4


def checked_layout(dim: int, bits: Any, group_size: Any) -> tuple[int, int]:
    """`bits` and the group size of `dim` columns (`group_size`, or the whole row when
    None), validated; `InvalidArgumentError` naming what is wrong."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits not in BITS:
        raise InvalidArgumentError(f"bits must be 8 or 4, got {bits!r}")
    if group_size is None:
        return int(bits), dim
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1 \
            or dim % group_size:
        raise InvalidArgumentError(f"group_size must be None or a positive int that divides embedding_dim {dim}, "
                                   f"got {group_size!r}")
    return int(bits), int(group_size)


class QuantizedTable:
    """The ``[num_rows, dim]`` table whose rows are the rows of `packed` (U8 ``[num_rows,
    row_bytes(dim, bits, group)]``, the layout of `kernels/cpu/quantized.py`): a quantized
    layer's buffer, on any device (the kernels read it on the host: on the CPU without a
    copy)."""

    __slots__ = ("_packed", "bits", "dim", "group")

    def __init__(self, packed: Tensor, bits: int, dim: int, group: int) -> None:
        self._packed, self.bits, self.dim, self.group = packed, bits, dim, group

    @classmethod
    def quantized(cls, values: Tensor, bits: int, group: int, max_norm: float | None = None,
                  norm_type: float = 2.0) -> QuantizedTable:
        """`values` (``[rows, dim]``, float, finite) quantized per group of `group` columns,
        on `values`' device; with `max_norm`, each row whose `norm_type`-norm exceeds it is
        first scaled as a renorm does (on a copy: `values` stay as they are)."""
        backend = backend_of(values)
        host = backend.to_host(data_of(values))
        kernel_dtype = np.float64 if host.dtype == np.float64 else np.float32  # F16 / BF16: exact in float32
        host = np.array(host, kernel_dtype) if max_norm is not None else np.ascontiguousarray(host, kernel_dtype)
        representable = np.abs(host) <= np.finfo(np.float32).max  # (False for NaN too)
        if not representable.all():
            row = int(np.flatnonzero(~representable.all(axis=1))[0])
            raise InvalidArgumentError(f"only finite values within float32's range can be quantized (offsets are "
                                       f"float32); row {row} holds {host[row].tolist()}")
        if max_norm is not None:
            _rows_kernels().renorm(host, np.arange(host.shape[0], dtype=np.int64), max_norm, norm_type)
        rows, dim = host.shape
        grouped = host.reshape(rows, dim // group, group)
        ranges = grouped.max(axis=2).astype(np.float64) - grouped.min(axis=2)
        if (ranges > np.finfo(np.float32).max).any():
            row = int(np.flatnonzero((ranges > np.finfo(np.float32).max).any(axis=1))[0])
            raise InvalidArgumentError(f"a group's range must fit in float32 (its scale and offset are float32); "
                                       f"row {row} spans {ranges[row].max():.3g}")
        packed = np.zeros((rows, row_bytes(dim, bits, group)), np.uint8)
        _kernels().quantize(host, bits, group, packed, packed.view(np.float32), _codes_end(dim, bits) // 4)
        return cls(wrap(backend.from_host(packed), backend), bits, dim, group)

    @classmethod
    def from_packed_rows(cls, packed: Tensor) -> QuantizedTable:
        """The 8-bit row-wise table whose rows `packed` (U8 ``[rows, dim + 8]``) hold as
        `packed_rows` gives them, copied onto `packed`'s device; `InvalidArgumentError` if
        it is not such a table."""
        if packed.dtype.name != "U8" or packed.ndim != 2 or packed.shape[1] <= SCALE_OFFSET_BYTES \
                or packed.shape[0] < 1:
            raise InvalidArgumentError(f"packed rows must be U8 [rows >= 1, embedding_dim + {SCALE_OFFSET_BYTES}], "
                                       f"got {packed.dtype.name} {list(packed.shape)}")
        backend = backend_of(packed)
        host = backend.to_host(data_of(packed))
        dim = host.shape[1] - SCALE_OFFSET_BYTES
        _check_pairs(host[:, dim:].copy().view("<f4"))
        rows = np.zeros((host.shape[0], row_bytes(dim, 8, dim)), np.uint8)
        end = _codes_end(dim, 8)
        rows[:, :dim], rows[:, end:] = host[:, :dim], host[:, dim:]
        return cls(wrap(backend.from_host(rows), backend), 8, dim, dim)

    @classmethod
    def stored(cls, packed: Tensor, bits: int, dim: int, group: int) -> QuantizedTable:
        """The table whose rows `packed` holds as `quantized` lays them out (U8 ``[rows,
        row_bytes(dim, bits, group)]``: a quantized layer's buffer, as a checkpoint stores
        it), `InvalidArgumentError` unless its scales and offsets are finite and its scales
        >= 0, as `quantized` makes them (the codes are any bytes)."""
        table = cls(packed, bits, dim, group)
        _, words, first = table._rows()
        _check_pairs(words[:, first:])
        return table

    def packed_rows(self) -> Tensor:
        """An 8-bit row-wise table in the byte layout of PyTorch's (FBGEMM's)
        ``embedding_bag_byte_prepack`` (its own when `dim` is a multiple of 4): U8 ``[rows,
        dim + 8]``, each row its codes, then its scale and its offset (the bias) as
        little-endian float32."""
        if self.bits != 8 or self.group != self.dim:
            raise InvalidArgumentError(f"packed rows hold 8-bit codes with one scale and offset per row; this "
                                       f"table has {self.bits}-bit codes in groups of {self.group}")
        rows, end = self._host(self._packed), _codes_end(self.dim, 8)
        packed = np.empty((self.num_rows, self.dim + SCALE_OFFSET_BYTES), np.uint8)
        packed[:, :self.dim], packed[:, self.dim:] = rows[:, :self.dim], rows[:, end:]
        backend = self.backend
        return wrap(backend.from_host(packed), backend)

    @property
    def num_rows(self) -> int:
        return self._packed.shape[0]

    @property
    def backend(self) -> Backend:
        return backend_of(self._packed)

    @property
    def packed(self) -> Tensor:
        """The rows, as stored."""
        return self._packed

    @property
    def nbytes(self) -> int:
        """The bytes of the rows: codes, scales and offsets."""
        return self._packed.numel()

    def gather(self, index: Tensor, dtype: DType) -> Tensor:
        """The dequantized rows of `index` (checked: int64, in range), ``[*index.shape,
        dim]`` of `dtype`, on the table's device."""
        rows = self._host(index).reshape(-1)
        out = host_cache.empty((rows.shape[0], self.dim), _kernel_dtype(dtype))
        _kernels().gather(*self._rows(), self.bits, self.group, rows, out)
        return self._tensor(out.reshape(*index.shape, self.dim), dtype)

    def dequantized(self, dtype: DType) -> Tensor:
        """Every row, dequantized: the table the lookups read."""
        backend = self.backend
        return self.gather(wrap(backend.from_host(np.arange(self.num_rows, dtype=np.int64)), backend), dtype)

    def pool(self, index: Tensor, bags: Bags, weights: Tensor | None, mode: str, dtype: DType) -> Tensor:
        """Each bag of the flat `index` (checked) pooled by `mode` over its dequantized rows
        (positions of the bags' padding index left out), each times its `weights` entry when
        given: ``[bags, dim]`` of `dtype`, summed in float32 (float64 for a float64 `dtype`)."""
        kernel_dtype = _kernel_dtype(dtype)
        out = np.empty((bags.count, self.dim), kernel_dtype)
        host_weights = np.empty(0, kernel_dtype) if weights is None else self._host(weights).astype(kernel_dtype)
        rows, bounds = self._host(index), self._host(bags.offsets)
        padding = -1 if bags.padding_idx is None else bags.padding_idx
        if kernel_dtype == np.float32 and mode != "max" and (self.group == self.dim or self.group % 8 == 0):
            _kernels().sum_codes(*self._rows(), self.bits, self.group, rows, bounds, padding, host_weights,
                                 mode == "mean", out)
        else:
            _kernels().pool(*self._rows(), self.bits, self.group, rows, bounds, padding, host_weights,
                            POOL_MODES[mode], out)
        return self._tensor(out, dtype)

    def _rows(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The rows as bytes and as float32 words (the same memory), and the word where each
        row's scales and offsets start: as the kernels take them."""
        rows = np.ascontiguousarray(self._host(self._packed))
        return rows, rows.view(np.float32), _codes_end(self.dim, self.bits) // 4

    def _host(self, tensor: Tensor) -> np.ndarray:
        return backend_of(tensor).to_host(data_of(tensor))

    def _tensor(self, array: np.ndarray, dtype: DType) -> Tensor:
        backend = self.backend
        return wrap(backend.from_host(array.astype(dtype.numpy, copy=False)), backend)


def _check_pairs(pairs: np.ndarray) -> None:
    """`InvalidArgumentError` unless `pairs` (float32 ``[rows, 2 * groups]``: each group's
    scale, then its offset) are finite and the scales >= 0."""
    bad = ~(np.isfinite(pairs).all(axis=1) & (pairs[:, 0::2] >= 0).all(axis=1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidArgumentError(f"quantized rows hold finite scales >= 0 and finite offsets; row {row} holds "
                                   f"(scale, offset) pairs {pairs[row].tolist()}")


def _kernel_dtype(dtype: DType) -> np.dtype:
    """Where the kernels compute values of `dtype`: float64 for float64, else float32."""
    return np.dtype(np.float64) if dtype.numpy == np.float64 else np.dtype(np.float32)

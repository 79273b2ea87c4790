"""`QuantizedTable`: a table stored as 8- or 4-bit codes with a float32 scale and offset per
group of columns (`kernels/cpu/quantized.py` has the layout), read by lookups and pooled
lookups that dequantize each value where they read it. Its arrays are the buffers of a
quantized layer (`nn/quantized.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..core import Tensor, backend_of, data_of, wrap
from ..core.ops.bags import Bags
from ..dtype import DType
from ..errors import InvalidArgumentError

BITS = (8, 4)
POOL_MODES = {"sum": 0, "mean": 1, "max": 2}  # the kernel's mode codes
PACKED_EXTRA = 8  # bytes after a packed row's codes: its float32 scale and offset


def _kernels() -> Any:
    from ..kernels.cpu import quantized  # numba: imported on first use

    return quantized


def _rows_kernels() -> Any:
    from ..kernels.cpu import rows

    return rows


def code_bytes(dim: int, bits: int) -> int:
    """The bytes of a row's codes: one a value at 8 bits, two values a byte at 4."""
    return dim if bits == 8 else (dim + 1) // 2


def checked_layout(dim: int, bits: Any, group_size: Any) -> tuple[int, int]:
    """`bits` and the group size of `dim` columns (`group_size`, or the whole row when
    None), validated; `InvalidArgumentError` naming what is wrong."""
    if isinstance(bits, bool) or bits not in BITS:
        raise InvalidArgumentError(f"bits must be 8 or 4, got {bits!r}")
    if group_size is None:
        return bits, dim
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1 \
            or dim % group_size:
        raise InvalidArgumentError(f"group_size must be None or a positive int that divides embedding_dim {dim}, "
                                   f"got {group_size!r}")
    return bits, int(group_size)


class QuantizedTable:
    """The ``[num_rows, dim]`` table whose row r, group g holds the codes of `codes` (U8
    ``[num_rows, code_bytes(dim, bits)]``) with ``scales[r, g]`` and ``offsets[r, g]`` (F32
    ``[num_rows, dim // group]``): a quantized layer's buffers, on any device (the kernels
    read them on the host: on the CPU without a copy)."""

    __slots__ = ("_codes", "_scales", "_offsets", "bits", "dim", "group")

    def __init__(self, codes: Tensor, scales: Tensor, offsets: Tensor, bits: int, dim: int) -> None:
        self._codes, self._scales, self._offsets = codes, scales, offsets
        self.bits, self.dim = bits, dim
        self.group = dim // scales.shape[1]

    @classmethod
    def quantized(cls, values: Tensor, bits: int, group: int, max_norm: float | None = None,
                  norm_type: float = 2.0) -> QuantizedTable:
        """`values` (``[rows, dim]``, float, finite) quantized per group of `group` columns,
        its buffers on `values`' device; with `max_norm`, each row whose `norm_type`-norm
        exceeds it is first scaled as a renorm does (on a copy: `values` stay as they are)."""
        backend = backend_of(values)
        host = backend.to_host(data_of(values))
        kernel_dtype = np.float64 if host.dtype == np.float64 else np.float32  # F16 / BF16: exact in float32
        host = np.array(host, kernel_dtype) if max_norm is not None else np.ascontiguousarray(host, kernel_dtype)
        if not np.isfinite(host).all():
            row = int(np.flatnonzero(~np.isfinite(host).all(axis=1))[0])
            raise InvalidArgumentError(f"only finite values can be quantized; row {row} holds {host[row].tolist()}")
        if max_norm is not None:
            _rows_kernels().renorm(host, np.arange(host.shape[0], dtype=np.int64), max_norm, norm_type)
        rows, dim = host.shape
        grouped = host.reshape(rows, dim // group, group)
        ranges = grouped.max(axis=2).astype(np.float64) - grouped.min(axis=2)
        if (ranges > np.finfo(np.float32).max).any():
            row = int(np.flatnonzero((ranges > np.finfo(np.float32).max).any(axis=1))[0])
            raise InvalidArgumentError(f"a group's range must fit in float32 (its scale and offset are float32); "
                                       f"row {row} spans {ranges[row].max():.3g}")
        codes = np.zeros((rows, code_bytes(dim, bits)), np.uint8)
        scales = np.empty((rows, dim // group), np.float32)
        offsets = np.empty((rows, dim // group), np.float32)
        _kernels().quantize(host, bits, group, codes, scales, offsets)
        return cls(*(wrap(backend.from_host(array), backend) for array in (codes, scales, offsets)), bits, dim)

    @classmethod
    def from_packed_rows(cls, packed: Tensor) -> QuantizedTable:
        """The 8-bit row-wise table whose rows `packed` (U8 ``[rows, dim + 8]``) hold as
        `packed_rows` writes them, its buffers on `packed`'s device; `InvalidArgumentError`
        if it is not such a table."""
        if packed.dtype.name != "U8" or packed.ndim != 2 or packed.shape[1] <= PACKED_EXTRA or packed.shape[0] < 1:
            raise InvalidArgumentError(f"packed rows must be U8 [rows >= 1, embedding_dim + {PACKED_EXTRA}], got "
                                       f"{packed.dtype.name} {list(packed.shape)}")
        backend = backend_of(packed)
        host = backend.to_host(data_of(packed))
        dim = host.shape[1] - PACKED_EXTRA
        scales, offsets = (np.ascontiguousarray(host[:, dim + 4 * k:dim + 4 * (k + 1)]).view("<f4").astype(np.float32)
                           for k in range(2))
        if not (np.isfinite(scales).all() and np.isfinite(offsets).all() and (scales >= 0).all()):
            raise InvalidArgumentError("packed rows must hold finite, non-negative scales and finite offsets")
        arrays = (np.ascontiguousarray(host[:, :dim]), scales, offsets)
        return cls(*(wrap(backend.from_host(array), backend) for array in arrays), 8, dim)

    def packed_rows(self) -> Tensor:
        """An 8-bit row-wise table in the byte layout of PyTorch's (FBGEMM's)
        ``embedding_bag_byte_prepack``: U8 ``[rows, dim + 8]``, each row its codes, then its
        scale and its offset (the bias) as little-endian float32."""
        if self.bits != 8 or self.group != self.dim:
            raise InvalidArgumentError(f"packed rows hold 8-bit codes with one scale and offset per row; this "
                                       f"table has {self.bits}-bit codes in groups of {self.group}")
        codes, scales, offsets = self._arrays()
        packed = np.empty((self.num_rows, self.dim + PACKED_EXTRA), np.uint8)
        packed[:, :self.dim] = codes
        packed[:, self.dim:self.dim + 4] = scales.astype("<f4").view(np.uint8)
        packed[:, self.dim + 4:] = offsets.astype("<f4").view(np.uint8)
        backend = self.backend
        return wrap(backend.from_host(packed), backend)

    @property
    def num_rows(self) -> int:
        return self._codes.shape[0]

    @property
    def backend(self) -> Backend:
        return backend_of(self._codes)

    @property
    def buffers(self) -> tuple[Tensor, Tensor, Tensor]:
        """The codes, scales and offsets."""
        return self._codes, self._scales, self._offsets

    @property
    def nbytes(self) -> int:
        """The bytes of the codes, scales and offsets."""
        return sum(tensor.numel() * tensor.dtype.itemsize for tensor in self.buffers)

    def gather(self, index: Tensor, dtype: DType) -> Tensor:
        """The dequantized rows of `index` (checked: int64, in range), ``[*index.shape,
        dim]`` of `dtype`, on the table's device."""
        rows = self._host(index).reshape(-1)
        out = np.empty((rows.shape[0], self.dim), _kernel_dtype(dtype))
        _kernels().gather(*self._arrays(), self.bits, self.group, rows, out)
        return self._tensor(out.reshape(*index.shape, self.dim), dtype)

    def dequantized(self, dtype: DType) -> Tensor:
        """Every row, dequantized: the table the lookups read."""
        backend = backend_of(self._codes)
        return self.gather(wrap(backend.from_host(np.arange(self.num_rows, dtype=np.int64)), backend), dtype)

    def pool(self, index: Tensor, bags: Bags, weights: Tensor | None, mode: str, dtype: DType) -> Tensor:
        """Each bag of the flat `index` (checked) pooled by `mode` over its dequantized rows
        (positions of the bags' padding index left out), each times its `weights` entry when
        given: ``[bags, dim]`` of `dtype`, summed in float32 (float64 for a float64 `dtype`)."""
        kernel_dtype = _kernel_dtype(dtype)
        out = np.empty((bags.count, self.dim), kernel_dtype)
        host_weights = np.empty(0, kernel_dtype) if weights is None else self._host(weights).astype(kernel_dtype)
        _kernels().pool(*self._arrays(), self.bits, self.group, self._host(index), self._host(bags.offsets),
                        -1 if bags.padding_idx is None else bags.padding_idx, host_weights, POOL_MODES[mode], out)
        return self._tensor(out, dtype)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.ascontiguousarray(self._host(tensor)) for tensor in self.buffers)

    def _host(self, tensor: Tensor) -> np.ndarray:
        return backend_of(tensor).to_host(data_of(tensor))

    def _tensor(self, array: np.ndarray, dtype: DType) -> Tensor:
        backend = backend_of(self._codes)
        return wrap(backend.from_host(array.astype(dtype.numpy, copy=False)), backend)


def _kernel_dtype(dtype: DType) -> np.dtype:
    """Where the kernels compute values of `dtype`: float64 for float64, else float32."""
    return np.dtype(np.float64) if dtype.numpy == np.float64 else np.dtype(np.float32)

"""`RowSparseGrad`: the gradient of an embedding table that is zero outside a few rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..device import Device
from ..dtype import DType, accumulation_dtype
from .tensor import SparseGradient, Tensor, wrap


class RowSparseGrad(SparseGradient):
    """A ``[num_rows, dim]`` gradient stored as the rows that are not zero.

    Attributes:
        indices: I64 tensor ``[k]`` of distinct row numbers, ascending.
        values: tensor ``[k, dim]``; ``values[i]`` is the gradient of row ``indices[i]``.
        shape: the shape of the dense gradient (the weight's shape).

    ``to_dense()`` gives exactly the dense gradient. Building one never allocates the dense
    shape: a backward into a sparse table costs memory in proportion to the rows it touches.
    """

    __slots__ = ("indices", "values", "shape")

    def __init__(self, indices: Tensor, values: Tensor, shape: tuple[int, int]) -> None:
        self.indices = indices
        self.values = values
        self.shape = tuple(shape)

    @classmethod
    def from_arrays(cls, rows: Any, values: Any, shape: tuple[int, int], backend: Backend) -> RowSparseGrad:
        """A gradient around arrays of `backend` (int64 `rows`, `values` ``[k, dim]``)."""
        return cls(wrap(rows, backend), wrap(values, backend), shape)

    @property
    def dtype(self) -> DType:
        return self.values.dtype

    @property
    def device(self) -> Device:
        return self.values.device

    def to_dense(self) -> Tensor:
        """The dense ``[num_rows, dim]`` gradient."""
        backend = self.values._backend
        return wrap(self.added_to(backend.zeros(self.shape, self.dtype)), backend)

    def to(self, device: Device, dtype: DType | None = None) -> RowSparseGrad:
        """The same rows on `device`, values cast to `dtype` (None keeps theirs)."""
        return RowSparseGrad(self.indices.to(device), self.values.to(device, dtype), self.shape)

    def added_to(self, dense: Any) -> Any:
        """``dense`` (a backend array of `shape`) plus this gradient, as a new array."""
        backend = self.values._backend
        dtype = backend.dtype_of(dense)
        total = backend.astype(dense, dtype, copy=True)
        backend.add_rows_(total, self.indices._data, backend.astype(self.values._data, dtype))
        return total

    def merged(self, other: RowSparseGrad) -> RowSparseGrad:
        """The sum of two row-sparse gradients of one table, rows merged, summed in the
        accumulation dtype (F32 for half precision)."""
        backend = self.values._backend
        wide = DType.from_numpy(np.promote_types(accumulation_dtype(self.dtype).numpy,
                                                 accumulation_dtype(other.dtype).numpy))
        # not bounded by the shape: a gradient set by hand may hold any rows (the optimizer checks them)
        rows, _, slots = backend.group_rows(backend.concat([self.indices._data, other.indices._data]))
        values = backend.concat([backend.astype(g.values._data, wide) for g in (self, other)])
        return RowSparseGrad.from_arrays(rows, backend.scatter_sum(values, slots, rows.shape[0]),
                                         self.shape, backend)

    def astype(self, dtype: DType) -> RowSparseGrad:
        """The same rows with values cast to `dtype`."""
        backend = self.values._backend
        return RowSparseGrad.from_arrays(self.indices._data, backend.astype(self.values._data, dtype),
                                         self.shape, backend)

    def __repr__(self) -> str:
        return (f"RowSparseGrad(shape={self.shape}, rows={self.indices.numel()}, "
                f"dtype={self.dtype.name})")

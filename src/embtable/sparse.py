"""`RowSparseGrad`: the gradient of an embedding table that is zero outside a few rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .dtype import DType

if TYPE_CHECKING:
    from .device import Device
    from .tensor import Tensor


class RowSparseGrad:
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
    def _from_arrays(cls, rows: Any, values: Any, shape: tuple[int, int], device: Device) -> RowSparseGrad:
        from .tensor import Tensor

        return cls(Tensor._wrap(rows, device), Tensor._wrap(values, device), shape)

    @property
    def dtype(self) -> DType:
        return self.values.dtype

    @property
    def device(self) -> Device:
        return self.values.device

    def to_dense(self) -> Tensor:
        """The dense ``[num_rows, dim]`` gradient."""
        from .tensor import Tensor

        backend = self.values._backend
        dense = backend.zeros(self.shape, self.dtype)
        return Tensor._wrap(self.added_to(dense), self.device)

    def added_to(self, dense: Any) -> Any:
        """``dense`` (a backend array of `shape`) plus this gradient, as a new array."""
        backend = self.values._backend
        dtype = backend.dtype_of(dense)
        total = backend.astype(dense, dtype, copy=True)
        backend.add_rows_(total, self.indices._data, backend.astype(self.values._data, dtype))
        return total

    def merged(self, other: RowSparseGrad) -> RowSparseGrad:
        """The sum of two row-sparse gradients of one table, rows merged."""
        backend = self.values._backend
        rows, _, slots = backend.group_rows(backend.concat([self.indices._data, other.indices._data]))
        values = backend.concat([self.values._data, other.values._data])
        sums = backend.scatter_sum(values, slots, rows.shape[0])
        return RowSparseGrad._from_arrays(rows, sums, self.shape, self.device)

    def astype(self, dtype: DType) -> RowSparseGrad:
        """The same rows with values cast to `dtype`."""
        backend = self.values._backend
        return RowSparseGrad._from_arrays(self.indices._data, backend.astype(self.values._data, dtype),
                                          self.shape, self.device)

    def __repr__(self) -> str:
        return (f"RowSparseGrad(shape={self.shape}, rows={self.indices.numel()}, "
                f"dtype={self.dtype.name})")

"""The CPU backend: NumPy arrays, with numba kernels (``embtable.kernels.cpu``) on the hot
paths, compiled on first use. See `Backend` for what each method promises."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from ..device import Device
from ..dtype import DType, accumulation_dtype
from ..memory import aligned_empty, aligned_zeros
from ..norms import p_norm
from .base import BagGradient, FusedStep
from .host_cache import host_cache

_KERNEL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: Below this many output bytes NumPy's ``take`` beats waking the gather kernel's threads.
#: Measured on 2 cores, 64-float rows of a 1e5-row table: with rows already in cache, take
#: wins below about 1024 rows (64 rows: 2 us against 20 us) and ties at 1024; with rows
#: fetched from memory, as in serving, the two tie at 512 rows and the prefetching threads
#: win at 1024 (80 us against 109 us). So from 256 KiB of output (1024 such rows) on,
#: the threads gather.
SMALL_GATHER_BYTES = 2**18

#: Copies at least this large start on a cache line (`embtable.memory`); smaller ones are
#: not worth the extra step.
ALIGNED_FROM_BYTES = 4096

#: Elements per segment of a dense optimizer update: large enough to vectorise, small
#: enough to share the work between threads.
DENSE_BLOCK = 4096

#: The most elements of rows that `row_dots` gathers at once where it cannot read them in
#: place (half precision).
CHUNK_ELEMENTS = 2**22

#: `distinct` marks rows in a table-sized bitmap (fast) only while the table has at most
#: this many rows per index; beyond, it sorts the indices, so a lookup into a huge table
#: allocates nothing of the table's size.
BITMAP_ROWS_PER_INDEX = 64

#: `group_rows` counts rows in a table-sized array of int64 rather than sorting the indices
#: while the table has at most this many rows per index. Measured on 2 cores, for 24576
#: indices counting takes 0.03 ms in 0.2 rows per index, 0.05 in 1, 0.12 in 4, 0.39 in 16;
#: sorting (`sorted_rows`) 0.15 whatever the table (65536 indices: 0.09, 0.17, 0.63, 1.11
#: against 0.47-0.53).
COUNTING_ROWS_PER_INDEX = 4


@functools.lru_cache(maxsize=None)
def _rows_kernels() -> Any:
    """The numba row kernels, imported (and so numba itself) on first use only."""
    from ..kernels.cpu import rows

    return rows


@functools.lru_cache(maxsize=None)
def _bag_kernels() -> Any:
    """The numba pooled-lookup kernels, imported on first use only."""
    from ..kernels.cpu import bags

    return bags


_POOL_MODES = {"sum": 0, "mean": 1, "max": 2}  # the kernels' mode codes (kernels.cpu.bags)
_NONE = np.empty(0, np.int64)
_NO_WEIGHTS = {dtype: np.empty(0, dtype) for dtype in _KERNEL_FLOATS}  # the kernels' "no weights"


@functools.lru_cache(maxsize=None)
def _dot_kernels() -> Any:
    """The numba dot-product kernels, imported on first use only."""
    from ..kernels.cpu import dots

    return dots


@functools.lru_cache(maxsize=None)
def _fused_kernels() -> dict[FusedStep, Callable[..., None]]:
    """The typed registry of fused optimizer kernels."""
    from ..kernels.cpu import optim

    return {FusedStep.SGD: optim.sgd, FusedStep.ADAM: optim.adam, FusedStep.ADAGRAD: optim.adagrad}


def as_row_words(array: np.ndarray) -> np.ndarray:
    """A 2-D `array` viewed as the widest unsigned integers that tile its rows: numba copies
    any dtype that way, and wide words copy faster."""
    row_bytes = array.shape[1] * array.dtype.itemsize
    return array.view(f"u{next(w for w in (8, 4, 2, 1) if row_bytes % w == 0)}")


class NumpyBackend:
    """NumPy arrays on the CPU."""

    device = Device.CPU
    xp = np

    def owns(self, array: object) -> bool:
        return isinstance(array, np.ndarray)

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return array

    def from_host(self, array: np.ndarray) -> np.ndarray:
        return array

    def dtype_of(self, array: np.ndarray) -> DType:
        return DType.from_numpy(array.dtype)

    def astype(self, array: np.ndarray, dtype: DType, copy: bool = False) -> np.ndarray:
        if array.dtype == dtype.numpy:
            return self._astype(array, dtype, copy)
        # A conversion's overflow gives inf, and a NaN or out-of-range float cast to an integer
        # what C gives, as in PyTorch's casts: without NumPy's RuntimeWarning.
        with np.errstate(over="ignore", invalid="ignore"):
            return self._astype(array, dtype, copy)

    def _astype(self, array: np.ndarray, dtype: DType, copy: bool) -> np.ndarray:
        if not copy or array.size * dtype.itemsize < ALIGNED_FROM_BYTES:
            return array.astype(dtype.numpy, order="C", copy=copy)
        out = aligned_empty(array.shape, dtype.numpy)  # a new table or state: rows on cache lines
        np.copyto(out, array, casting="unsafe")
        return out

    def zeros(self, shape: Sequence[int], dtype: DType) -> np.ndarray:
        return aligned_zeros(shape, dtype.numpy)

    def ones(self, shape: Sequence[int], dtype: DType) -> np.ndarray:
        return np.ones(shape, dtype.numpy)

    def concat(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays)

    def index_add_(self, array: np.ndarray, key: Any, values: np.ndarray) -> None:
        np.add.at(array, key, values)

    # --- indices --------------------------------------------------------------------------

    def first_out_of_range(self, indices: np.ndarray, limit: int) -> int:
        return int(_rows_kernels().first_out_of_range(indices if indices.ndim == 1 else indices.reshape(-1), limit))

    def index_array(self, indices: np.ndarray) -> np.ndarray:
        return indices.astype(np.int64, copy=False)

    def bincount(self, indices: np.ndarray, length: int) -> np.ndarray:
        return np.bincount(indices.reshape(-1), minlength=length)

    def distinct(self, indices: np.ndarray, num_rows: int) -> np.ndarray:
        flat = indices.reshape(-1)
        if num_rows > BITMAP_ROWS_PER_INDEX * max(flat.size, 1):
            return np.unique(flat)
        return _rows_kernels().distinct(flat, num_rows)

    def group_rows(self, indices: np.ndarray, num_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        indices = indices.reshape(-1)
        if num_rows is not None and num_rows <= COUNTING_ROWS_PER_INDEX * indices.size:
            return _rows_kernels().count_rows(indices, num_rows)
        bits = int(indices.max()).bit_length() if indices.size else 0
        return _rows_kernels().sorted_rows(indices, bits)

    # --- rows of a table ----------------------------------------------------------------------

    def take_rows(self, table: np.ndarray, indices: np.ndarray) -> np.ndarray:
        small = indices.size * table.shape[1] * table.itemsize < SMALL_GATHER_BYTES
        if small or not table.flags.c_contiguous:  # (a view, e.g. a transposed weight: rare)
            return table.take(indices, axis=0)
        out = host_cache.empty((indices.size, table.shape[1]), table.dtype)
        _rows_kernels().gather(as_row_words(table), indices.reshape(-1), as_row_words(out))
        return out.reshape(indices.shape + (table.shape[1],))

    def scatter_sum(self, values: np.ndarray, slots: np.ndarray, rows: int,
                    targets: np.ndarray | None = None, counts: np.ndarray | None = None,
                    bags: BagGradient | None = None) -> np.ndarray:
        import numba

        out = host_cache.empty((rows, values.shape[1]), values.dtype)
        sources, coefficients, selected = (_NONE, _NONE, _NONE.reshape(0, 0)) if bags is None else \
            (bags.sources, bags.coefficients, _NONE.reshape(0, 0) if bags.selected is None else bags.selected)
        _rows_kernels().scatter_sum(values, sources, coefficients, selected, slots,
                                    _NONE if targets is None else targets, _NONE if counts is None else counts,
                                    out, numba.get_num_threads())
        return out

    def bag_weight_grad(self, g: np.ndarray, table: np.ndarray, indices: np.ndarray,
                        bags: BagGradient) -> np.ndarray:
        table, indices = self._kernel_rows(table, indices)
        out = np.empty(indices.shape[0], g.dtype)
        _bag_kernels().weight_grad(g, table, indices, bags.sources,
                                   _NONE.reshape(0, 0) if bags.selected is None else bags.selected, bags.scales, out)
        return out

    def row_dots(self, table_a: np.ndarray, ids_a: np.ndarray, table_b: np.ndarray, ids_b: np.ndarray) -> np.ndarray:
        if table_a.dtype in _KERNEL_FLOATS and table_a.flags.c_contiguous and table_b.flags.c_contiguous:
            out = np.empty(ids_b.shape, table_a.dtype)
            _dot_kernels().row_dots(table_a, ids_a, table_b, ids_b, out)
            return out
        # half precision (which numba cannot compute in), or a view: the rows a chunk at a time
        wide = accumulation_dtype(DType.from_numpy(table_a.dtype)).numpy
        out = np.empty(ids_b.shape, wide)
        step = max(1, CHUNK_ELEMENTS // max(ids_b.shape[1] * table_a.shape[1], 1))
        for start in range(0, ids_b.shape[0], step):
            part = slice(start, start + step)
            out[part] = np.einsum("nd,nkd->nk", table_a[ids_a[part]].astype(wide), table_b[ids_b[part]].astype(wide))
        return out.astype(table_a.dtype)

    def bag_of(self, offsets: np.ndarray, size: int) -> np.ndarray:
        return _bag_kernels().bag_of_positions(offsets, size)

    def pool_rows(self, table: np.ndarray, indices: np.ndarray, offsets: np.ndarray, weights: np.ndarray | None,
                  mode: str, padding_idx: int | None, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        dtype = table.dtype
        rows, positions = self._kernel_rows(table, indices)
        wide = accumulation_dtype(DType.from_numpy(dtype)).numpy
        out = aligned_empty((offsets.shape[0] - 1, table.shape[1]), wide)
        argmax = np.full(out.shape, -1, np.int64) if mode == "max" else _NONE.reshape(0, 0)
        weights = _NO_WEIGHTS[wide] if weights is None else weights.astype(wide, copy=False)
        _bag_kernels().pool(*map(np.ascontiguousarray, (rows, positions, indices if ids is None else ids)), offsets,
                            -1 if padding_idx is None else padding_idx, np.ascontiguousarray(weights),
                            _POOL_MODES[mode], out, argmax)
        return out.astype(dtype, copy=False), argmax if mode == "max" else None

    def _kernel_rows(self, table: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A table and indices the bag kernels read: the table itself, or for half precision
        (which numba cannot compute in) its looked-up rows in float32, read in order."""
        if table.dtype in _KERNEL_FLOATS:
            return table, indices
        return np.take(table, indices, axis=0).astype(np.float32), np.arange(indices.shape[0])

    def add_rows_(self, table: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
        table[rows] += values

    def renorm_rows_(self, table: np.ndarray, rows: np.ndarray, max_norm: float, norm_type: float) -> None:
        if table.dtype in _KERNEL_FLOATS:
            _rows_kernels().renorm(table, rows, float(max_norm), float(norm_type))
            return
        with np.errstate(over="ignore", invalid="ignore"):  # an infinite row becomes nan, as in PyTorch
            norms = p_norm(np, table[rows].astype(np.float32), norm_type, (1,))[:, 0]  # half precision
            too_long = norms > max_norm
            rows, norms = rows[too_long], norms[too_long]
            table[rows] = (table[rows] * (max_norm / (norms + 1e-7))[:, None]).astype(table.dtype)

    # --- optimizers -----------------------------------------------------------------------------

    def fused_step(self, step: FusedStep | None, param: np.ndarray, rows: np.ndarray | None, grad: np.ndarray,
                   buffers: Sequence[np.ndarray], scalars: Sequence[float]) -> bool:
        kernel = None if step is None else _fused_kernels().get(step)
        arrays = (param, *buffers)
        if kernel is None or param.dtype not in _KERNEL_FLOATS or \
                not all(a.flags.c_contiguous and a.dtype == param.dtype for a in arrays):
            return False
        dense = rows is None
        empty = [param.reshape(-1)[:0]] * (step.buffers - len(buffers))  # state the rule does not keep
        flat = [a.reshape(-1) for a in (param, np.ascontiguousarray(grad), *buffers)] + empty
        kernel(*flat, dense, np.empty(0, np.int64) if dense else rows, DENSE_BLOCK if dense else param.shape[1],
               *scalars)
        return True


NUMPY = NumpyBackend()

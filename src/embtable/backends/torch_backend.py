"""The PyTorch backend: CUDA and MPS devices, and the CPU when ``EMBTABLE_CPU_BACKEND=torch``
(so that the path the accelerators take runs in CI). `Backend` over ``torch.Tensor``s on one
device; PyTorch's own index kernels do the work.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Sequence

import ml_dtypes
import numpy as np
import torch

from ..device import Device
from ..dtype import DType, accumulation_dtype
from .base import BagGradient, FusedStep

_TORCH = {
    DType.BF16: torch.bfloat16, DType.F16: torch.float16, DType.F32: torch.float32,
    DType.F64: torch.float64, DType.BOOL: torch.bool, DType.U8: torch.uint8,
    DType.U16: torch.uint16, DType.U32: torch.uint32, DType.U64: torch.uint64, DType.I8: torch.int8,
    DType.I16: torch.int16, DType.I32: torch.int32, DType.I64: torch.int64,
}
_FROM_TORCH = {t: d for d, t in _TORCH.items()}

#: The most elements of gathered rows that `row_dots` and a pooled gradient's `scatter_sum`
#: hold at once: PyTorch gathers rows to compute with them, so they go a chunk at a time.
CHUNK_ELEMENTS = 2**22


def _dims(x: torch.Tensor, axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    return (axis,) if isinstance(axis, int) else tuple(axis)


class Namespace:
    """NumPy's names for the element-wise math and reductions that ops use, over torch; the
    functions that create arrays create them on `device`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    abs, exp, log, log1p, sqrt, sign, tanh = torch.abs, torch.exp, torch.log, torch.log1p, torch.sqrt, torch.sign, torch.tanh
    matmul, swapaxes, broadcast_to = torch.matmul, torch.swapaxes, torch.broadcast_to

    @staticmethod
    def sum(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        dims = _dims(x, axis)
        return x.clone() if not dims else torch.sum(x, dim=dims, keepdim=keepdims)

    @staticmethod
    def mean(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        dims = _dims(x, axis)
        return x.clone() if not dims else torch.mean(x, dim=dims, keepdim=keepdims)

    @staticmethod
    def max(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        dims = _dims(x, axis)
        return x.clone() if not dims else torch.amax(x, dim=dims, keepdim=keepdims)

    @staticmethod
    def min(x: torch.Tensor, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        dims = _dims(x, axis)
        return x.clone() if not dims else torch.amin(x, dim=dims, keepdim=keepdims)

    @staticmethod
    def argmax(x: torch.Tensor, axis: int, keepdims: bool = False) -> torch.Tensor:
        return torch.argmax(x, dim=axis, keepdim=keepdims)

    @staticmethod
    def argmin(x: torch.Tensor, axis: int, keepdims: bool = False) -> torch.Tensor:
        return torch.argmin(x, dim=axis, keepdim=keepdims)

    @staticmethod
    def argsort(x: torch.Tensor, axis: int = -1, kind: str | None = None) -> torch.Tensor:
        return torch.argsort(x, dim=axis, stable=kind == "stable")

    @staticmethod
    def take(x: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.index_select(x, axis, indices.to(x.device))

    @staticmethod
    def take_along_axis(x: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.gather(x, axis, indices)

    @staticmethod
    def put_along_axis(x: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, axis: int) -> None:
        x.scatter_(axis, indices, values)

    @staticmethod
    def clip(x: torch.Tensor, lower: Any, upper: Any) -> torch.Tensor:
        return torch.clamp(x, lower, upper)

    @staticmethod
    def concatenate(arrays: Sequence[torch.Tensor], axis: int = 0) -> torch.Tensor:
        return torch.cat(tuple(arrays), dim=axis)

    @staticmethod
    def where(condition: Any, a: Any, b: Any) -> torch.Tensor:
        like = next((t for t in (a, b, condition) if isinstance(t, torch.Tensor)))
        a, b = (t if isinstance(t, torch.Tensor) else torch.tensor(t, device=like.device) for t in (a, b))
        return torch.where(condition, a, b)

    @staticmethod
    def maximum(x: torch.Tensor, y: Any) -> torch.Tensor:
        return torch.clamp_min(x, y) if not isinstance(y, torch.Tensor) else torch.maximum(x, y)

    @staticmethod
    def squeeze(x: torch.Tensor, axis: Any) -> torch.Tensor:
        return torch.squeeze(x, dim=_dims(x, axis)) if _dims(x, axis) else x

    @staticmethod
    def expand_dims(x: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
        for axis in sorted(axes):
            x = x.unsqueeze(axis)
        return x

    @staticmethod
    def permute_dims(x: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
        return x.permute(tuple(order))

    @staticmethod
    def cumsum(x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, 0)

    def asarray(self, x: Any) -> torch.Tensor:
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), device=self.device)

    def zeros(self, shape: Sequence[int], dtype: Any) -> torch.Tensor:
        return torch.zeros(tuple(shape), dtype=dtype, device=self.device)

    def arange(self, n: int) -> torch.Tensor:
        return torch.arange(n, device=self.device)


class _Deterministic:
    """``with _deterministic:`` runs under PyTorch's deterministic algorithms (sorted, not
    atomic, accumulation). The switch is process-wide and changes results (on the CPU too:
    another summation order), so threads share it: the first one in turns it on, the last
    one out restores the user's setting. (Each thread restoring what it saw let one thread's
    exit turn it off under another, whose sum then rounded otherwise, and could leave it on.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._before = (False, False)  # the user's setting: enabled, warn_only

    def __enter__(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._before = (torch.are_deterministic_algorithms_enabled(),
                                torch.is_deterministic_algorithms_warn_only_enabled())
                torch.use_deterministic_algorithms(True)
            self._inside += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                enabled, warn_only = self._before
                torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


_deterministic = _Deterministic()


class TorchBackend:
    """`Backend` for one torch device: `device` is the embtable device that tensors here are
    labelled with, `torch_device` where PyTorch keeps their data (the same device, except in
    tests that stand a torch CPU backend in for a second device)."""

    def __init__(self, device: Device, torch_device: str | None = None) -> None:
        self.device = device
        self.torch_device = torch.device(torch_device or str(device))
        self.xp = Namespace(self.torch_device)

    def owns(self, array: object) -> bool:
        return isinstance(array, torch.Tensor) and array.device == self.torch_device

    def to_host(self, array: torch.Tensor) -> np.ndarray:
        array = array.detach().to("cpu")
        if array.dtype == torch.bfloat16:  # NumPy has no bfloat16: the bits travel as int16
            return array.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return array.numpy()

    def from_host(self, array: np.ndarray) -> torch.Tensor:
        array = array if array.flags.c_contiguous and array.flags.writeable else array.copy(order="C")
        if array.dtype == ml_dtypes.bfloat16:
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16).to(self.torch_device)
        return torch.from_numpy(array).to(self.torch_device)

    def dtype_of(self, array: torch.Tensor) -> DType:
        return _FROM_TORCH[array.dtype]

    def astype(self, array: torch.Tensor, dtype: DType, copy: bool = False) -> torch.Tensor:
        out = array.to(_TORCH[dtype], copy=copy)
        return out if out.is_contiguous() else out.contiguous()

    def zeros(self, shape: Sequence[int], dtype: DType) -> torch.Tensor:
        return torch.zeros(tuple(shape), dtype=_TORCH[dtype], device=self.torch_device)

    def ones(self, shape: Sequence[int], dtype: DType) -> torch.Tensor:
        return torch.ones(tuple(shape), dtype=_TORCH[dtype], device=self.torch_device)

    def concat(self, arrays: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(arrays))

    def index_add_(self, array: torch.Tensor, key: Any, values: torch.Tensor) -> None:
        source = torch.zeros_like(array, requires_grad=True)
        with torch.enable_grad():  # PyTorch's own indexing backward: accumulates repeats
            (summed,) = torch.autograd.grad(source[key], source, values)
        array += summed

    def first_out_of_range(self, indices: torch.Tensor, limit: int) -> int:
        if indices.numel() == 0:
            return -1
        # in int64: torch would wrap `limit` into a narrower dtype, and cannot compare U16-U64
        wide = indices.to(torch.int64)
        bad = ((wide < 0) | (wide >= limit)).reshape(-1)
        if not bool(bad.any()):  # one synchronising check before any kernel runs
            return -1
        return int(torch.nonzero(bad)[0])

    def index_array(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.dtype in (torch.uint16, torch.uint32, torch.uint64):  # validated: they fit
            return self.from_host(self.to_host(indices).astype(np.int64))
        return indices.to(torch.int64)

    def bincount(self, indices: torch.Tensor, length: int) -> torch.Tensor:
        return torch.bincount(indices.reshape(-1), minlength=length)

    def take_rows(self, table: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return torch.index_select(table, 0, indices.reshape(-1)).reshape(tuple(indices.shape) + (table.shape[1],))

    def distinct(self, indices: torch.Tensor, num_rows: int) -> torch.Tensor:
        return torch.unique(indices.reshape(-1))

    def group_rows(self, indices: torch.Tensor, num_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, slots, counts = torch.unique(indices.reshape(-1), sorted=True, return_inverse=True,
                                           return_counts=True)
        return rows.to(torch.int64), counts, slots

    def scatter_sum(self, values: torch.Tensor, slots: torch.Tensor, rows: int,
                    targets: torch.Tensor | None = None, counts: torch.Tensor | None = None,
                    bags: BagGradient | None = None) -> torch.Tensor:
        destinations = slots if targets is None else targets[slots]
        out = torch.zeros((rows, values.shape[1]), dtype=values.dtype, device=values.device)
        chunk = max(1, slots.shape[0] if bags is None else CHUNK_ELEMENTS // max(values.shape[1], 1))
        for start in range(0, slots.shape[0], chunk):  # in position order: the same sums whatever the chunk
            part = slice(start, start + chunk)
            shares = values[part] if bags is None else \
                self._bag_shares(values, bags, part) * bags.coefficients[part].to(values.dtype)[:, None]
            keep = destinations[part] >= 0
            with _deterministic:  # GPUs would otherwise add with atomics, in no fixed order
                out.index_put_((destinations[part][keep],), shares[keep], accumulate=True)
        if counts is not None:
            touched = torch.nonzero(counts).reshape(-1)
            where = touched if targets is None else targets[touched]
            keep = where >= 0
            out[where[keep]] /= counts[touched[keep]].to(out.dtype)[:, None]
        return out

    def _bag_shares(self, g: torch.Tensor, bags: BagGradient, part: slice = slice(None)) -> torch.Tensor:
        """``[N, dim]`` (the positions of `part`): each position's bag gradient, zero for
        positions left out and, in a max-pool, for the elements a position did not win."""
        sources = bags.sources[part]
        source = sources.clamp(min=0)
        shares = g[source] * (sources >= 0).to(g.dtype)[:, None]
        if bags.selected is not None:
            positions = torch.arange(bags.sources.shape[0], device=source.device)[part, None]
            shares = shares * (bags.selected[source] == positions).to(g.dtype)
        return shares

    def bag_weight_grad(self, g: torch.Tensor, table: torch.Tensor, indices: torch.Tensor,
                        bags: BagGradient) -> torch.Tensor:
        rows = table[indices].to(g.dtype)
        return (self._bag_shares(g, bags) * rows).sum(1) * bags.scales.to(g.dtype)

    def row_dots(self, table_a: torch.Tensor, ids_a: torch.Tensor, table_b: torch.Tensor,
                 ids_b: torch.Tensor) -> torch.Tensor:
        wide = _TORCH[accumulation_dtype(_FROM_TORCH[table_a.dtype])]
        out = torch.empty(tuple(ids_b.shape), dtype=wide, device=table_a.device)
        chunk = max(1, CHUNK_ELEMENTS // max(ids_b.shape[1] * table_a.shape[1], 1))
        for start in range(0, ids_b.shape[0], chunk):
            part = slice(start, start + chunk)
            rows_b = table_b[ids_b[part]].to(wide)
            out[part] = torch.bmm(rows_b, table_a[ids_a[part]].to(wide)[:, :, None])[:, :, 0]
        return out.to(table_a.dtype)

    def bag_of(self, offsets: torch.Tensor, size: int) -> torch.Tensor:
        bag = torch.repeat_interleave(torch.arange(offsets.shape[0] - 1, device=offsets.device),
                                      offsets[1:] - offsets[:-1])
        out = torch.full((size,), -1, dtype=torch.int64, device=offsets.device)
        out[:bag.shape[0]] = bag  # offsets[0] is 0: the bags cover the positions before offsets[-1]
        return out

    def pool_rows(self, table: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                  weights: torch.Tensor | None, mode: str, padding_idx: int | None,
                  ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        wide = _TORCH[accumulation_dtype(_FROM_TORCH[table.dtype])]
        bag_of = self.bag_of(offsets, indices.shape[0])
        if padding_idx is not None:
            bag_of = torch.where((indices if ids is None else ids) == padding_idx, -1, bag_of)
        rows = table[indices].to(wide)
        if weights is not None:
            rows = rows * weights.to(wide)[:, None]
        bags, kept = offsets.shape[0] - 1, bag_of >= 0
        if mode != "max":
            counts = self.bincount(bag_of[kept], bags) if mode == "mean" else None
            return self.scatter_sum(rows, bag_of, bags, counts=counts).to(table.dtype), None
        where = bag_of.clamp(min=0)[:, None].expand_as(rows)
        out = torch.full((bags, rows.shape[1]), -math.inf, dtype=wide, device=rows.device)
        out.scatter_reduce_(0, where[kept], rows[kept], "amax")
        positions = torch.arange(rows.shape[0], device=rows.device)[:, None].expand_as(rows)
        winners = kept[:, None] & (rows == out[where[:, 0]])
        argmax = torch.full(out.shape, rows.shape[0], dtype=torch.int64, device=rows.device)
        argmax.scatter_reduce_(0, where, torch.where(winners, positions, rows.shape[0]), "amin")
        empty = argmax == rows.shape[0]
        return out.masked_fill(empty, 0).to(table.dtype), argmax.masked_fill(empty, -1)

    def add_rows_(self, table: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
        table[rows] += values

    def renorm_rows_(self, table: torch.Tensor, rows: torch.Tensor, max_norm: float, norm_type: float) -> None:
        with torch.no_grad():
            torch.embedding_renorm_(table, rows, max_norm, norm_type if norm_type != math.inf else float("inf"))

    def fused_step(self, step: FusedStep, param: torch.Tensor, rows: torch.Tensor | None, grad: torch.Tensor,
                   buffers: Sequence[torch.Tensor], scalars: Sequence[float]) -> bool:
        return False  # the optimizers' reference rules run as torch ops

"""Pooled lookups (`EmbeddingBag`): where the bags are, and pooled rows whose gradient flows
into the table (or into the looked-up rows) and into the per-sample weights.

`embtable.nn.lookup` holds the semantics and validates; a table storage pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...backends import BagGradient, Backend
from ...dtype import DType, accumulation_dtype
from ..autograd import is_grad_enabled, record
from ..tensor import Tensor, wrap
from .rows import table_grad


@dataclass(frozen=True)
class Bags:
    """Where the bags of a pooled lookup are: `offsets` (I64 ``[bags + 1]``: bag b is
    positions ``offsets[b]:offsets[b + 1]`` of the flat indices), and the `padding_idx`
    whose positions are left out."""

    offsets: Tensor
    padding_idx: int | None

    @property
    def count(self) -> int:
        return self.offsets.shape[0] - 1

    def bag_of(self, index: Any) -> Any:
        """Each position's bag (a backend array, int64), -1 for a position left out: a
        padding index, or past the last bag."""
        backend = self.offsets._backend
        bag_of = backend.bag_of(self.offsets._data, index.shape[0])
        if self.padding_idx is not None:
            bag_of = backend.xp.where(index == self.padding_idx, -1, bag_of)
        return bag_of


def bags_of(offsets: np.ndarray, backend: Backend, padding_idx: int | None) -> Bags:
    """The `Bags` of validated host `offsets` (int64, ``[bags + 1]``) on `backend`'s device."""
    return Bags(wrap(backend.from_host(offsets), backend), padding_idx)


def pooled(values: Tensor, argmax: Tensor | None, table: Tensor, index: Tensor, bags: Bags,
           weights: Tensor | None, mode: str, *, scale_grad_by_freq: bool, sparse: bool) -> Tensor:
    """`values` (each bag's pooled rows of `table`, pooled by the table's storage; `argmax`
    for a max-pool) as the result of a pooled lookup whose gradient flows into `table`, as
    a lookup's does (`rows.gathered`: padding, frequency scaling, dense or row-sparse), and
    into `weights` when they require it (which reads the table's rows again, so the table
    must not change in between)."""
    inputs = (table,) if weights is None else (table, weights)
    if not (is_grad_enabled() and any(t._requires_grad for t in inputs)):
        return values
    backend = table._backend

    def backward(g: Any) -> tuple[Any, ...]:
        shares = _shares(backend, bags, index._data, weights, None if argmax is None else argmax._data, mode,
                         backend.dtype_of(g))
        grads = [table_grad(g, index._data, table, bags.padding_idx, scale_grad_by_freq, sparse, shares)
                 if table._requires_grad else None]
        if weights is not None:
            grads.append(_weight_grad(backend, g, table._data, index._data, shares, weights))
        return tuple(grads)

    reads_table = weights is not None and weights._requires_grad
    return record(values._data, backend, inputs, backward, saves=(table,) if reads_table else ())


def pooled_rows(rows: Tensor, index: Tensor, bags: Bags, weights: Tensor | None, mode: str) -> Tensor:
    """The bags pooled from `rows` (``[N, dim]``, the rows of the flat `index` already looked
    up: for ``max_norm_mode="clip"``), with gradients into `rows` and `weights`."""
    backend = rows._backend
    positions = backend.xp.arange(rows.shape[0])
    values, argmax = backend.pool_rows(rows._data, positions, bags.offsets._data,
                                       None if weights is None else weights._data, mode, bags.padding_idx,
                                       ids=index._data)
    inputs = (rows,) if weights is None else (rows, weights)

    def backward(g: Any) -> tuple[Any, ...]:
        shares = _shares(backend, bags, index._data, weights, argmax, mode, backend.dtype_of(g))
        grads = [backend.scatter_sum(g, positions, rows.shape[0], bags=shares) if rows._requires_grad else None]
        if weights is not None:
            grads.append(_weight_grad(backend, g, rows._data, positions, shares, weights))
        return tuple(grads)

    return record(values, backend, inputs, backward)


def _shares(backend: Backend, bags: Bags, index: Any, weights: Tensor | None, argmax: Any, mode: str,
            dtype: DType) -> BagGradient:
    """How each position shares its bag's gradient: its weight, over the bag's count in a
    mean; the argmax in a max-pool."""
    xp, bag_of = backend.xp, bags.bag_of(index)
    scales = backend.ones(bag_of.shape, dtype)
    if mode == "mean":
        kept = bag_of >= 0
        counts = backend.bincount(bag_of[kept], bags.count)
        scales = (1 / backend.astype(xp.maximum(counts, 1), dtype))[xp.maximum(bag_of, 0)]
    coefficients = scales if weights is None else scales * backend.astype(weights._data.reshape(-1), dtype)
    return BagGradient(bag_of, coefficients, scales, argmax if mode == "max" else None)


def _weight_grad(backend: Backend, g: Any, table: Any, index: Any, shares: BagGradient, weights: Tensor) -> Any:
    """The per-sample weights' gradient, in their shape and accumulation dtype (None when
    they do not require one)."""
    if not weights._requires_grad:
        return None
    grad = backend.bag_weight_grad(g, table, index, shares)
    return backend.astype(grad, accumulation_dtype(weights.dtype)).reshape(weights.shape)

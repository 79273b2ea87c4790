"""Dot products of looked-up rows of two tables, as one op whose gradient flows straight
into both tables: the fused form of ``(table_a[ids_a][:, None] * table_b[ids_b]).sum(-1)``.

`embtable.nn.pairs` holds the semantics and validates; this computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...backends import BagGradient
from ...dtype import accumulation_dtype
from ..autograd import record
from ..tensor import Tensor
from .rows import table_grad


@dataclass(frozen=True)
class GradientRoute:
    """Where a lookup's gradient goes in its table (as `rows.table_grad` takes it): none
    into the `padding_idx` row, divided by each row's count in the lookup's indices when
    `scale_grad_by_freq`, row-sparse when `sparse`."""

    padding_idx: int | None = None
    scale_grad_by_freq: bool = False
    sparse: bool = False


def row_dots(table_a: Tensor, index_a: Tensor, route_a: GradientRoute,
             table_b: Tensor, index_b: Tensor, route_b: GradientRoute) -> Tensor:
    """``out[..., k]`` = the dot product of ``table_a[index_a[...]]`` and
    ``table_b[index_b[..., k]]`` (`index_b` of `index_a`'s shape, or that plus one axis of
    K): validated int64 indices into two tables of one dtype, width and device. Neither
    the rows nor their ``[..., K, dim]`` products are gathered. The gradient reaches each
    table as a lookup's of its indices would (`route_a`, `route_b`), computed from the
    tables' values at backward time (so they must not change in between: checked)."""
    backend = table_a._backend
    n = index_a.numel()
    flat_a = index_a._data.reshape(n)
    k = 1 if index_b.ndim == index_a.ndim else index_b.shape[-1]
    flat_b = index_b._data.reshape(n, k)
    dots = backend.row_dots(table_a._data, flat_a, table_b._data, flat_b)

    def backward(g: Any) -> tuple[Any, Any]:
        g = g.reshape(n * k)
        offsets = backend.from_host(np.arange(n + 1, dtype=np.int64) * k)  # anchor i's K positions
        grad_a = grad_b = None
        if table_a._requires_grad:  # row i of a: sum over k of g[i, k] * b[ids_b[i, k]], a weighted bag
            pulled, _ = backend.pool_rows(table_b._data, flat_b.reshape(-1), offsets, g, "sum", None)
            grad_a = table_grad(pulled, flat_a, table_a, route_a.padding_idx, route_a.scale_grad_by_freq,
                                route_a.sparse)
        if table_b._requires_grad:  # position (i, k) of b: g[i, k] * a[ids_a[i]], shared out as a bag's
            anchor = backend.bag_of(offsets, n * k)
            if accumulation_dtype(table_a.dtype) == table_a.dtype:  # a's rows read where they lie
                rows_a, sources = table_a._data, backend.xp.take(flat_a, anchor, axis=0)
            else:  # half precision: the anchors' rows, to be widened once
                rows_a, sources = backend.take_rows(table_a._data, flat_a), anchor
            shares = BagGradient(sources, g, backend.ones(g.shape, backend.dtype_of(g)))
            grad_b = table_grad(rows_a, flat_b.reshape(-1), table_b, route_b.padding_idx,
                                route_b.scale_grad_by_freq, route_b.sparse, shares)
        return grad_a, grad_b

    return record(dots.reshape(tuple(index_b.shape)), backend, (table_a, table_b), backward)


__all__ = ["GradientRoute", "row_dots"]

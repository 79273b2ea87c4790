"""Pooled lookups: the fused gather-and-pool of `EmbeddingBag` and the gradient of its
per-sample weights. (The gradient of the table is `rows.scatter_sum` with the bags'
gradients as its sources.)

A pooled lookup reads bag ``b`` from positions ``offsets[b]:offsets[b + 1]`` of its
indices; a position of the padding index is left out of its bag.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .launch import parallel_jit
from .prefetch import GATHER_AHEAD, prefetch_row
from .row_sums import TILE_BYTES, tile_sum


SUM, MEAN, MAX = 0, 1, 2


@parallel_jit
def bag_of_positions(offsets, size):
    """For each of `size` positions, the bag whose range holds it, or -1 past the last bag."""
    bag_of = np.full(size, -1, np.int64)
    for b in nb.prange(offsets.shape[0] - 1):
        for i in range(offsets[b], offsets[b + 1]):
            bag_of[i] = b
    return bag_of


@parallel_jit
def pool(table, rows, ids, offsets, padding_idx, weights, mode, out, argmax):
    """``out[b]`` = the sum (`mode` SUM), mean (MEAN: over the positions kept) or
    element-wise max (MAX) of ``weights[i] * table[rows[i]]`` over bag b's positions, those
    whose ``ids[i]`` is `padding_idx` left out; empty `weights` mean 1. For MAX, ``argmax[b,
    d]`` is the earliest position holding the maximum; an empty bag is a zero row (-1 in
    `argmax`). No ``[positions, dim]`` intermediate is made."""
    for b in nb.prange(offsets.shape[0] - 1):
        dst = out[b]
        if mode == MAX:
            count = _max_bag(table, rows, ids, offsets[b], offsets[b + 1], padding_idx, weights, dst, argmax[b])
        else:
            count = _sum_bag(table, rows, ids, offsets[b], offsets[b + 1], padding_idx, weights, dst)
        if count == 0:
            dst[:] = 0
        elif mode == MEAN and count > 1:
            reciprocal = out.dtype.type(1.0 / count)
            for d in range(dst.shape[0]):
                dst[d] *= reciprocal


@nb.njit(cache=True, inline="always")
def _kept(ids, i, padding_idx):
    return ids[i] != padding_idx


@nb.njit(cache=True, inline="always")
def _weight(weights, i, t):
    return t(1) if weights.shape[0] == 0 else t(weights[i])


@nb.njit(cache=True, inline="always")
def _prefetch_ahead(table, rows, i):
    prefetch_row(table, rows[min(i + GATHER_AHEAD, rows.shape[0] - 1)])


@nb.njit(cache=True, inline="always")
def _sum_bag(table, rows, ids, start, stop, padding_idx, weights, dst):
    """Sum a bag's kept (weighted) rows into `dst`, a tile of each row at a time; how many
    were kept."""
    tile = TILE_BYTES // dst.itemsize
    col = 0
    while True:  # one call site: each inlines 17 loops
        width = min(tile, dst.shape[0] - col)
        count = tile_sum(table, rows, ids, start, stop, padding_idx, weights, dst, col, width)
        col += width
        if col >= dst.shape[0]:
            return count


@nb.njit(cache=True, inline="always")
def _max_bag(table, rows, ids, start, stop, padding_idx, weights, dst, winners):
    """The element-wise max of a bag's kept (weighted) rows into `dst`, the earliest
    position of each maximum into `winners`; how many rows were kept."""
    t = dst.dtype.type
    count = 0
    for i in range(start, stop):
        _prefetch_ahead(table, rows, i)
        if not _kept(ids, i, padding_idx):
            continue
        source, w = table[rows[i]], _weight(weights, i, t)
        if count == 0:
            for d in range(dst.shape[0]):
                dst[d] = w * t(source[d])
                winners[d] = i
        else:
            for d in range(dst.shape[0]):
                value = w * t(source[d])
                if value > dst[d]:
                    dst[d] = value
                    winners[d] = i
        count += 1
    return count


@parallel_jit
def weight_grad(g, table, indices, bag_of, argmax, scale, out):
    """``out[i]`` = ``scale[i] * sum_d g[bag_of[i], d] * table[indices[i], d]`` (only over
    the d with ``argmax[bag_of[i], d] == i`` when `argmax` is not empty), 0 where
    ``bag_of[i] < 0``: the gradient of each position's per-sample weight."""
    dim = table.shape[1]
    for i in nb.prange(indices.shape[0]):
        b = bag_of[i]
        total = 0.0
        if b >= 0:
            row = indices[i]
            for d in range(dim):
                if argmax.shape[0] == 0 or argmax[b, d] == i:
                    total += g[b, d] * table[row, d]
        out[i] = total * scale[i]

"""Pooled lookups: the fused gather-and-pool of `EmbeddingBag` and the gradient of its
per-sample weights. (The gradient of the table is `rows.scatter_sum` with the bags'
gradients as its sources.)

A pooled lookup reads bag ``b`` from positions ``offsets[b]:offsets[b + 1]`` of `indices`;
a position whose ``bag_of`` is negative (padding) is left out of its bag.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .prefetch import GATHER_AHEAD, prefetch_row

parallel_jit = nb.njit(cache=True, nogil=True, parallel=True)

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
def pool(table, indices, offsets, bag_of, weights, mode, out, argmax):
    """``out[b]`` = the sum (`mode` SUM), mean (MEAN: over the positions kept) or
    element-wise max (MAX) of ``weights[i] * table[indices[i]]`` over bag b's kept
    positions, accumulated in `out`'s dtype; empty `weights` mean 1. For MAX, ``argmax[b,
    d]`` is the earliest position holding the maximum; an empty bag is a zero row (and -1
    in `argmax`). No ``[positions, dim]`` intermediate is made."""
    dim = table.shape[1]
    t = out.dtype.type
    for b in nb.prange(offsets.shape[0] - 1):
        start, stop = offsets[b], offsets[b + 1]
        count = 0
        for d in range(dim):
            out[b, d] = -np.inf if mode == MAX else 0
        for i in range(start, stop):
            prefetch_row(table, indices[min(i + GATHER_AHEAD, indices.shape[0] - 1)])
            if bag_of[i] < 0:
                continue
            count += 1
            row = indices[i]
            w = t(1) if weights.shape[0] == 0 else t(weights[i])
            if mode == MAX:
                for d in range(dim):
                    value = w * t(table[row, d])
                    if value > out[b, d] or argmax[b, d] < 0:
                        out[b, d] = value
                        argmax[b, d] = i
            else:
                for d in range(dim):
                    out[b, d] += w * t(table[row, d])
        if count == 0:
            for d in range(dim):
                out[b, d] = 0
        elif mode == MEAN and count > 1:
            reciprocal = t(1.0 / count)
            for d in range(dim):
                out[b, d] *= reciprocal


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

"""Pooled lookups: the fused gather-and-pool of `EmbeddingBag` and the gradient of its
per-sample weights. (The gradient of the table is `rows.scatter_sum` with the bags'
gradients as its sources.)

A pooled lookup reads bag ``b`` from positions ``offsets[b]:offsets[b + 1]`` of its
indices; a position of the padding index is left out of its bag.
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
def pool(table, rows, ids, offsets, padding_idx, weights, mode, out, argmax):
    """``out[b]`` = the sum (`mode` SUM), mean (MEAN: over the positions kept) or
    element-wise max (MAX) of ``weights[i] * table[rows[i]]`` over bag b's positions, those
    whose ``ids[i]`` is `padding_idx` left out; empty `weights` mean 1. For MAX, ``argmax[b,
    d]`` is the earliest position holding the maximum; an empty bag is a zero row (-1 in
    `argmax`). Sums fold `FOLD` rows into a bag's row at a time; no ``[positions, dim]``
    intermediate is made."""
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


#: Rows folded into a bag's sum at a time: the bag's row is read and written once per
#: group, not once per row (measured, 64 floats: 8 rows 1.06-1.24 ms where 4 took 1.61-1.81
#: and 1 took 2.2-2.5, PyTorch's FBGEMM 0.64-0.72).
FOLD = 8


@nb.njit(cache=True, inline="always")
def _all_kept(ids, i, padding_idx):
    """Whether the FOLD positions from `i` are all kept."""
    if padding_idx < 0:
        return True
    for k in range(FOLD):
        if ids[i + k] == padding_idx:
            return False
    return True


@nb.njit(cache=True, inline="always")
def _sum_bag(table, rows, ids, start, stop, padding_idx, weights, dst):
    """Sum a bag's kept (weighted) rows into `dst`, FOLD at a time; how many were kept."""
    t = dst.dtype.type
    dim = dst.shape[0]
    dst[:] = 0
    count = 0
    i = start
    while i < stop:
        if i + FOLD <= stop and _all_kept(ids, i, padding_idx):
            for k in range(FOLD):
                _prefetch_ahead(table, rows, i + k)
            s0, s1, s2, s3 = table[rows[i]], table[rows[i + 1]], table[rows[i + 2]], table[rows[i + 3]]
            s4, s5, s6, s7 = table[rows[i + 4]], table[rows[i + 5]], table[rows[i + 6]], table[rows[i + 7]]
            if weights.shape[0] == 0:
                for d in range(dim):
                    dst[d] += (((t(s0[d]) + t(s1[d])) + (t(s2[d]) + t(s3[d])))
                               + ((t(s4[d]) + t(s5[d])) + (t(s6[d]) + t(s7[d]))))
            else:
                w0, w1, w2, w3 = t(weights[i]), t(weights[i + 1]), t(weights[i + 2]), t(weights[i + 3])
                w4, w5, w6, w7 = t(weights[i + 4]), t(weights[i + 5]), t(weights[i + 6]), t(weights[i + 7])
                for d in range(dim):
                    dst[d] += (((w0 * t(s0[d]) + w1 * t(s1[d])) + (w2 * t(s2[d]) + w3 * t(s3[d])))
                               + ((w4 * t(s4[d]) + w5 * t(s5[d])) + (w6 * t(s6[d]) + w7 * t(s7[d]))))
            count += FOLD
            i += FOLD
            continue
        _prefetch_ahead(table, rows, i)
        if _kept(ids, i, padding_idx):
            source, w = table[rows[i]], _weight(weights, i, t)
            for d in range(dim):
                dst[d] += w * t(source[d])
            count += 1
        i += 1
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

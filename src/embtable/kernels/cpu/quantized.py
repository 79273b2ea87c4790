"""Quantized rows: each value an unsigned code of 8 or 4 bits (two 4-bit codes a byte, the
even column's in the low nibble), each group of `group` consecutive columns of a row with a
float32 scale and offset, the value being ``code * scale + offset`` rounded once to the
table's dtype (a fused multiply-add, as PyTorch's ``embedding_bag_byte_unpack``
computes it). Lookups and pooled lookups dequantize each value where they read it: no
float copy of the table, no ``[positions, dim]`` intermediate.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .prefetch import GATHER_AHEAD, prefetch_row

parallel_jit = nb.njit(cache=True, nogil=True, parallel=True)

SUM, MEAN, MAX = 0, 1, 2


@parallel_jit
def quantize(table, bits, group, codes, scales, offsets):
    """Quantize `table` (``[rows, dim]`` float32 or float64, finite) into `codes` (uint8,
    zeros on entry), `scales` and `offsets` (float32 ``[rows, dim // group]``): asymmetric
    min/max per group, the offset the group's minimum, the scale its range over the
    largest code, each code the nearest to its value."""
    levels = (1 << bits) - 1
    for r in nb.prange(table.shape[0]):
        for g in range(scales.shape[1]):
            start, stop = g * group, (g + 1) * group
            low, high = np.inf, -np.inf
            for d in range(start, stop):
                x = np.float64(table[r, d])
                low, high = min(low, x), max(high, x)
            offset = np.float32(low)
            scale = np.float32((high - np.float64(offset)) / levels)
            scales[r, g], offsets[r, g] = scale, offset
            if scale == 0:
                continue  # a constant group: every code 0, every value its offset
            for d in range(start, stop):
                code = np.floor((np.float64(table[r, d]) - np.float64(offset)) / np.float64(scale) + 0.5)
                code = min(max(code, 0.0), np.float64(levels))
                if bits == 8:
                    codes[r, d] = np.uint8(code)
                else:
                    codes[r, d >> 1] |= np.uint8(np.int64(code) << ((d & 1) * 4))


@nb.njit(cache=True, inline="always")
def _value(codes, bits, row, d, scale, offset):
    """The value of column d of `row` in float64 (exact: before its one rounding)."""
    code = codes[row, d] if bits == 8 else (codes[row, d >> 1] >> ((d & 1) * 4)) & 15
    return np.float64(code) * np.float64(scale) + np.float64(offset)


@parallel_jit
def gather(codes, scales, offsets, bits, group, rows, out):
    """``out[i]`` = the dequantized row ``rows[i]`` (`out` float32 or float64)."""
    t = out.dtype.type
    for i in nb.prange(rows.shape[0]):
        prefetch_row(codes, rows[min(i + GATHER_AHEAD, rows.shape[0] - 1)])
        row = rows[i]
        for g in range(scales.shape[1]):
            scale, offset = scales[row, g], offsets[row, g]
            for d in range(g * group, (g + 1) * group):
                out[i, d] = t(_value(codes, bits, row, d, scale, offset))


@parallel_jit
def pool(codes, scales, offsets, bits, group, rows, bounds, padding_idx, weights, mode, out):
    """``out[b]`` = the sum (`mode` SUM), mean (MEAN, over the positions kept) or element-wise
    max (MAX) of ``weights[i] * row(rows[i])`` over bag b's positions ``bounds[b]:bounds[b +
    1]``, each row dequantized as `gather` does, positions of `padding_idx` left out; empty
    `weights` mean 1; an empty bag is a zero row. `out` is float32 or float64 and holds the
    sums."""
    t = out.dtype.type
    for b in nb.prange(bounds.shape[0] - 1):
        dst = out[b]
        dst[:] = 0
        count = 0
        for i in range(bounds[b], bounds[b + 1]):
            prefetch_row(codes, rows[min(i + GATHER_AHEAD, rows.shape[0] - 1)])
            row = rows[i]
            if row == padding_idx:
                continue
            w = t(1) if weights.shape[0] == 0 else t(weights[i])
            for g in range(scales.shape[1]):
                scale, offset = scales[row, g], offsets[row, g]
                for d in range(g * group, (g + 1) * group):
                    value = w * t(_value(codes, bits, row, d, scale, offset))
                    if mode != MAX:
                        dst[d] += value
                    elif count == 0 or value > dst[d]:
                        dst[d] = value
            count += 1
        if mode == MEAN and count > 1:
            reciprocal = t(1.0 / count)
            for d in range(dst.shape[0]):
                dst[d] *= reciprocal

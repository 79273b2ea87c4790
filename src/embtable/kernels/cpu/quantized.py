"""Quantized rows. A table is one uint8 array, a row per table row: the row's codes (an
unsigned code of 8 or 4 bits per value, two 4-bit codes a byte, the even column's in the
low nibble; padded to whole float32 words), then for each group of `group` consecutive
columns its float32 scale and offset (little-endian: for 8 bits, one group and a width
that is a multiple of 4, the layout of PyTorch's ``embedding_bag_byte_prepack``). Kernels
take the array twice, as bytes (`packed`) and as float32 words (`words`, the same memory),
and `first`, the word where a row's scales and offsets start. A value is ``code * scale +
offset`` computed in float64 and rounded once to float32 (or kept in float64 for a float64
table): a fused multiply-add, as ``embedding_bag_byte_unpack`` computes it. A row's codes,
scales and offsets share its cache lines, and lookups and pooled lookups dequantize each
value where they read it: no float copy of the table, no ``[positions, dim]``
intermediate.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .code_sums import TILE_COLUMNS, code_tile_sum
from .launch import parallel_jit
from .prefetch import GATHER_AHEAD, prefetch_row


MEAN, MAX = 1, 2  # a pool's modes (0: sum)


@parallel_jit
def quantize(table, bits, group, packed, words, first):
    """Quantize `table` (``[rows, dim]`` float32 or float64, finite) into `packed` (zeros on
    entry): asymmetric min/max per group, the offset the group's minimum, the scale its
    range over the largest code, each code the nearest to its value."""
    levels = (1 << bits) - 1
    dim = table.shape[1]
    for r in nb.prange(table.shape[0]):
        for g in range(dim // group):
            start, stop = g * group, (g + 1) * group
            low, high = np.inf, -np.inf
            for d in range(start, stop):
                x = np.float64(table[r, d])
                low, high = min(low, x), max(high, x)
            offset = np.float32(low)
            scale = np.float32((high - np.float64(offset)) / levels)
            words[r, first + 2 * g], words[r, first + 2 * g + 1] = scale, offset
            if scale == 0:
                continue  # a constant group: every code 0, every value its offset
            for d in range(start, stop):
                code = np.floor((np.float64(table[r, d]) - np.float64(offset)) / np.float64(scale) + 0.5)
                code = min(max(code, 0.0), np.float64(levels))
                if bits == 8:
                    packed[r, d] = np.uint8(code)
                else:
                    packed[r, d >> 1] |= np.uint8(np.int64(code) << ((d & 1) * 4))


@nb.njit(cache=True, inline="always")
def _code_of(source, bits, d):
    """Column d's code in a row's bytes `source`."""
    return source[d] if bits == 8 else (source[d >> 1] >> ((d & 1) * 4)) & 15


@nb.njit(cache=True, inline="always")
def _value(packed, bits, row, d, scale, offset):
    """The value of column d of `row` in float64 (exact: before its one rounding)."""
    return np.float64(_code_of(packed[row], bits, d)) * np.float64(scale) + np.float64(offset)


@parallel_jit
def gather(packed, words, first, bits, group, rows, out):
    """``out[i]`` = the dequantized row ``rows[i]`` (`out` float32 or float64, ``[len(rows),
    dim]``)."""
    t = out.dtype.type
    dim = out.shape[1]
    for i in nb.prange(rows.shape[0]):
        prefetch_row(packed, rows[min(i + GATHER_AHEAD, rows.shape[0] - 1)])
        row = rows[i]
        dst = out[i]
        for g in range(dim // group):
            scale, offset = words[row, first + 2 * g], words[row, first + 2 * g + 1]
            scale64, offset64 = np.float64(scale), np.float64(offset)
            start = g * group
            if bits == 8:
                source = packed[row, start:start + group]
                for d in range(group):
                    dst[start + d] = t(np.float64(source[d]) * scale64 + offset64)
            elif group % 2 == 0:  # whole bytes
                source = packed[row, start // 2:(start + group) // 2]
                for j in range(group // 2):
                    byte = source[j]
                    dst[start + 2 * j] = t(np.float64(byte & 15) * scale64 + offset64)
                    dst[start + 2 * j + 1] = t(np.float64(byte >> 4) * scale64 + offset64)
            else:
                for d in range(start, start + group):
                    dst[d] = t(_value(packed, bits, row, d, scale, offset))


@parallel_jit
def pool(packed, words, first, bits, group, rows, bounds, padding_idx, weights, mode, out):
    """``out[b]`` = the sum (`mode` SUM), mean (MEAN, over the positions kept) or element-wise
    max (MAX) of ``weights[i] * row(rows[i])`` over bag b's positions ``bounds[b]:bounds[b +
    1]``, positions of `padding_idx` left out; empty `weights` mean 1; an empty bag is a
    zero row. `out` is float32 or float64 and holds the sums. A max compares the values
    `gather` gives; a sum adds ``(w * scale) * code + w * offset`` per value, the same up
    to rounding (`sum_codes` is the fast way for float32 sums)."""
    t = out.dtype.type
    dim = out.shape[1]
    for b in nb.prange(bounds.shape[0] - 1):
        dst = out[b]
        dst[:] = 0
        count = 0
        for i in range(bounds[b], bounds[b + 1]):
            prefetch_row(packed, rows[min(i + GATHER_AHEAD, rows.shape[0] - 1)])
            row = rows[i]
            if row == padding_idx:
                continue
            w = t(1) if weights.shape[0] == 0 else t(weights[i])
            count += 1
            if mode == MAX:
                _max_row(packed, words, bits, group, first, row, w, count == 1, dst)
            else:
                _add_row(packed, words, bits, group, first, row, w, dst)
        if mode == MEAN and count > 1:
            reciprocal = t(1.0 / count)
            for d in range(dim):
                dst[d] *= reciprocal


@nb.njit(cache=True, inline="always")
def _add_row(packed, words, bits, group, first, row, w, dst):
    """``dst += w * row``, a group at a time: ``(w * scale) * code + w * offset``."""
    t = dst.dtype.type
    for g in range(dst.shape[0] // group):
        scale, offset = w * t(words[row, first + 2 * g]), w * t(words[row, first + 2 * g + 1])
        start = g * group
        if bits == 8:
            source = packed[row, start:start + group]
            target = dst[start:start + group]
            for d in range(group):
                target[d] += scale * t(source[d]) + offset
        elif group % 2 == 0:  # whole bytes
            source = packed[row, start // 2:(start + group) // 2]
            for j in range(group // 2):
                byte = source[j]
                dst[start + 2 * j] += scale * t(byte & 15) + offset
                dst[start + 2 * j + 1] += scale * t(byte >> 4) + offset
        else:
            for d in range(start, start + group):
                dst[d] += scale * t(_code_of(packed[row], bits, d)) + offset


@nb.njit(cache=True, inline="always")
def _max_row(packed, words, bits, group, first, row, w, is_first, dst):
    """``dst = max(dst, w * row)`` element-wise (``dst = w * row`` when `is_first`), each
    value as `gather` gives it."""
    t = dst.dtype.type
    for g in range(dst.shape[0] // group):
        scale, offset = words[row, first + 2 * g], words[row, first + 2 * g + 1]
        for d in range(g * group, (g + 1) * group):
            value = w * t(_value(packed, bits, row, d, scale, offset))
            if is_first or value > dst[d]:
                dst[d] = value


@parallel_jit
def sum_codes(packed, words, first, bits, group, rows, bounds, padding_idx, weights, mean, out):
    """`pool`'s sum (or, with `mean`, mean) into float32 `out`, a group at a time: each tile
    of whole vectors of a bag's sum in vector registers (`code_sums.code_tile_sum`: codes
    times each position's weight and row scale, the weighted offsets summed apart), the
    columns past the last whole vector (only where `group` is the whole row) after them,
    with the rows cached. `group` is the whole row or a multiple of 8 columns."""
    dim = out.shape[1]
    for b in nb.prange(bounds.shape[0] - 1):
        start, stop = bounds[b], bounds[b + 1]
        for g in range(dim // group):
            lo, hi = g * group, (g + 1) * group
            whole = hi - (hi - lo) % 8
            for col in range(lo, whole, TILE_COLUMNS):
                code_tile_sum(packed, bits, rows, weights, padding_idx, 4 * (first + 2 * g), mean, start, stop, out, b,
                              col, min(TILE_COLUMNS, whole - col) // 8)
            if whole < hi:
                _sum_tail(packed, words, first + 2 * g, bits, rows[start:stop], padding_idx,
                          weights[start:stop] if weights.shape[0] else weights, mean, whole == lo, out[b, whole:hi],
                          whole)


@nb.njit(cache=True, inline="always")
def _sum_tail(packed, words, scale_word, bits, rows, padding_idx, weights, mean, prefetch, dst, col):
    """`code_tile_sum` for the columns ``col:col + len(dst)`` of a bag (its `rows` and
    `weights`) one at a time, the group's scale and offset at word `scale_word`;
    `prefetch` where no tile brought the rows in."""
    dst[:] = 0
    count = 0
    offset_sum = np.float32(0)
    for i in range(rows.shape[0]):
        if prefetch:
            prefetch_row(packed, rows[min(i + GATHER_AHEAD, rows.shape[0] - 1)])
        row = rows[i]
        if row == padding_idx:
            continue
        w = np.float32(1) if weights.shape[0] == 0 else weights[i]
        offset_sum += w * words[row, scale_word + 1]
        count += 1
        factor = w * words[row, scale_word]
        for d in range(dst.shape[0]):
            dst[d] += factor * np.float32(_code_of(packed[row], bits, col + d))
    scale = np.float32(1.0 / count) if mean and count > 1 else np.float32(1)
    for d in range(dst.shape[0]):
        dst[d] = (dst[d] + offset_sum) * scale

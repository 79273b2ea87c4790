"""numba kernels for the CPU backend: the memory-bound hot paths of an embedding table.

Compiled on first use and cached on disk (``cache=True``), never at import: this module is
itself imported only when a kernel is first needed. Loops over rows run in parallel
(``prange``); no two threads ever write the same row, so every result is deterministic.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

jit = nb.njit(cache=True, nogil=True)
parallel_jit = nb.njit(cache=True, nogil=True, parallel=True)

#: How many rows ahead the kernels that visit rows in random order prefetch: enough loads in
#: flight to hide DRAM latency, few enough that the rows are still cached when their turn comes.
AHEAD = 8
CACHE_LINE = 64


@intrinsic
def _prefetch_row(typingctx, table, row):
    """Hint the CPU to start loading every cache line of ``table[row]`` (a C-contiguous 2-D
    array; `row` in range). A hint only: it never faults and changes no value."""

    def codegen(context, builder, signature, args):
        table_type = signature.args[0]
        array = context.make_array(table_type)(context, builder, args[0])
        row_bytes = cgutils.unpack_tuple(builder, array.strides, 2)[0]
        row = context.cast(builder, args[1], signature.args[1], nb.types.intp)
        start = builder.gep(builder.bitcast(array.data, cgutils.voidptr_t), [builder.mul(row, row_bytes)])
        i32 = ir.IntType(32)
        hint = builder.module.declare_intrinsic(
            "llvm.prefetch", [cgutils.voidptr_t], ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32]))

        def prefetch(offset):
            builder.call(hint, [builder.gep(start, [offset]), i32(0), i32(3), i32(1)])  # read, keep cached

        intp = context.get_value_type(nb.types.intp)
        with cgutils.for_range_slice(builder, intp(0), row_bytes, intp(CACHE_LINE)) as (offset, _):
            prefetch(offset)
        prefetch(builder.sub(row_bytes, intp(1)))  # the last line, where the row straddles one more
        return context.get_dummy_value()

    return nb.types.void(table, row), codegen


@nb.njit(cache=True, inline="always")
def _ahead(rows, i):
    """The row `AHEAD` places after place `i` of `rows` (the last row near the end)."""
    return rows[min(i + AHEAD, rows.shape[0] - 1)]


@parallel_jit
def gather(table, indices, out):
    """``out[i] = table[indices[i]]`` for a flat `indices`."""
    dim = table.shape[1]
    for i in nb.prange(indices.shape[0]):
        _prefetch_row(table, _ahead(indices, i))
        row = indices[i]
        for d in range(dim):
            out[i, d] = table[row, d]


@jit
def distinct(indices, num_rows):
    """The distinct values of a flat `indices` in [0, num_rows), in first-seen order."""
    seen = np.zeros(num_rows, np.bool_)
    rows = np.empty(indices.shape[0], np.int64)
    count = 0
    for i in range(indices.shape[0]):
        row = indices[i]
        if not seen[row]:
            seen[row] = True
            rows[count] = row
            count += 1
    return rows[:count]


@nb.njit(cache=True, inline="always")
def _row_norm(table, row, norm_type):
    """The `norm_type`-norm of ``table[row]``, accumulated in float64 (one loop per kind of
    norm, so each loop vectorises)."""
    total = 0.0
    if norm_type == 2.0:
        for d in range(table.shape[1]):
            x = np.float64(table[row, d])
            total += x * x
        return np.sqrt(total)
    if norm_type == 1.0:
        for d in range(table.shape[1]):
            total += abs(np.float64(table[row, d]))
        return total
    if norm_type == np.inf:
        for d in range(table.shape[1]):
            total = max(total, abs(np.float64(table[row, d])))
        return total
    for d in range(table.shape[1]):
        total += abs(np.float64(table[row, d])) ** norm_type
    return total ** (1.0 / norm_type)


@parallel_jit
def renorm(table, rows, max_norm, norm_type):
    """Rescale each listed (distinct) row whose `norm_type`-norm exceeds `max_norm` by
    ``max_norm / (norm + 1e-7)``."""
    for s in nb.prange(rows.shape[0]):
        _prefetch_row(table, _ahead(rows, s))
        row = rows[s]
        norm = _row_norm(table, row, norm_type)
        if norm > max_norm:
            scale = table.dtype.type(max_norm / (norm + 1e-7))
            for d in range(table.shape[1]):
                table[row, d] *= scale


@parallel_jit
def sort_keys(indices, shift):
    """``indices[i] << shift | i`` for each position i: sorted, these order the positions by
    row and, within a row, by position."""
    keys = np.empty(indices.shape[0], np.int64)
    for i in nb.prange(indices.shape[0]):
        keys[i] = (np.int64(indices[i]) << shift) | np.int64(i)
    return keys


@jit
def split_keys(keys, shift):
    """From sorted keys: the distinct rows, how often each occurs, and for each position the
    number of its row among the distinct rows (its slot)."""
    n = keys.shape[0]
    mask = (np.int64(1) << shift) - 1
    rows = np.empty(n, np.int64)
    counts = np.empty(n, np.int64)
    slots = np.empty(n, np.int64)
    count = 0
    previous = -1
    for j in range(n):
        row = keys[j] >> shift
        if row != previous:
            rows[count] = row
            counts[count] = 0
            count += 1
            previous = row
        counts[count - 1] += 1
        slots[keys[j] & mask] = count - 1
    return rows[:count], counts[:count], slots


@nb.njit(cache=True, inline="always")
def _target(slots, targets, i):
    """The output row of position `i` in `scatter_sum`."""
    return slots[i] if targets.shape[0] == 0 else targets[slots[i]]


@parallel_jit
def scatter_sum(values, slots, targets, counts, out, parts):
    """``out[t]`` = the sum of ``values[i]`` over the positions i with
    ``t = targets[slots[i]]`` (``t = slots[i]`` when `targets` is empty; a negative target
    drops the position), times 1 / the slot's count when `counts` is not empty; rows that
    get nothing are zero. Each of `parts` threads owns a range of output rows: it zeroes
    them (so fresh memory is first touched in parallel), then scans every position in
    order. A row's sum therefore always runs in position order: deterministic whatever the
    number of threads, with sequential reads of `values`."""
    dim, n = values.shape[1], slots.shape[0]
    for part in nb.prange(parts):
        low = part * out.shape[0] // parts
        high = (part + 1) * out.shape[0] // parts
        out[low:high] = 0
        for i in range(n):
            ahead = _target(slots, targets, min(i + AHEAD, n - 1))
            if low <= ahead < high:
                _prefetch_row(out, ahead)
            t = _target(slots, targets, i)
            if low <= t < high:
                for d in range(dim):
                    out[t, d] += values[i, d]
    for s in nb.prange(counts.shape[0]):
        t = np.int64(s) if targets.shape[0] == 0 else targets[s]
        if t >= 0 and counts[s] > 1:
            reciprocal = out.dtype.type(1.0 / counts[s])
            for d in range(dim):
                out[t, d] *= reciprocal


# --- fused optimizer steps ----------------------------------------------------------------
# Each optimizer has one element rule and two loops over it: `*_dense` over every element of
# flat arrays, `*_rows` over the listed rows of a table (a row-sparse gradient's `rows`, with
# `grad[s]` the gradient of row `rows[s]`). Constants are derived in float64, then all
# arithmetic runs in the parameter's dtype, as PyTorch's does. Each element is read and
# written once per step.

inline = nb.njit(cache=True, inline="always")


@inline
def _sgd(p, g, buf, lr, momentum, weight_decay):
    g = g + weight_decay * p
    if momentum != 0:
        buf = momentum * buf + g  # the buffer starts at zero: its first value is g
        g = buf
    return p - lr * g, buf


@parallel_jit
def sgd_dense(p, g, lr, weight_decay):
    t = p.dtype.type
    for i in nb.prange(p.shape[0]):
        p[i] = _sgd(p[i], g[i], t(0), t(lr), t(0), t(weight_decay))[0]


@parallel_jit
def sgd_rows(p, rows, g, lr, weight_decay):
    t = p.dtype.type
    for s in nb.prange(rows.shape[0]):
        _prefetch_row(p, _ahead(rows, s))
        r = rows[s]
        for d in range(p.shape[1]):
            p[r, d] = _sgd(p[r, d], g[s, d], t(0), t(lr), t(0), t(weight_decay))[0]


@parallel_jit
def sgd_momentum_dense(p, g, buf, lr, momentum, weight_decay):
    t = p.dtype.type
    for i in nb.prange(p.shape[0]):
        p[i], buf[i] = _sgd(p[i], g[i], buf[i], t(lr), t(momentum), t(weight_decay))


@parallel_jit
def sgd_momentum_rows(p, rows, g, buf, lr, momentum, weight_decay):
    t = p.dtype.type
    for s in nb.prange(rows.shape[0]):
        ahead = _ahead(rows, s)
        _prefetch_row(p, ahead)
        _prefetch_row(buf, ahead)
        r = rows[s]
        for d in range(p.shape[1]):
            p[r, d], buf[r, d] = _sgd(p[r, d], g[s, d], buf[r, d], t(lr), t(momentum), t(weight_decay))


@inline
def _adam_decay_and_first_moment(p, g, m, keep, weight_decay, one_minus_beta1, decoupled):
    if decoupled:
        p = p * keep
    elif weight_decay != 0:
        g = g + weight_decay * p
    return p, g, m + one_minus_beta1 * (g - m)


@parallel_jit
def adam_dense(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """``torch.optim.Adam`` / ``AdamW``."""
    t = p.dtype.type
    step_size, root_correction2 = t(lr / (1.0 - beta1**step)), t(np.sqrt(1.0 - beta2**step))
    keep, wd, a1, b2, a2, e = t(1.0 - lr * weight_decay), t(weight_decay), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(eps)
    for i in nb.prange(p.shape[0]):
        pi, gi, mi = _adam_decay_and_first_moment(p[i], g[i], m[i], keep, wd, a1, decoupled)
        vi = v[i] * b2 + a2 * (gi * gi)
        m[i], v[i] = mi, vi
        p[i] = pi - step_size * (mi / (np.sqrt(vi) / root_correction2 + e))


@parallel_jit
def adam_rows(p, rows, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """``torch.optim.SparseAdam`` on the listed rows (eps before the bias correction)."""
    t = p.dtype.type
    step_size = t(lr * np.sqrt(1.0 - beta2**step) / (1.0 - beta1**step))
    keep, wd, a1, a2, e = t(1.0 - lr * weight_decay), t(weight_decay), t(1.0 - beta1), t(1.0 - beta2), t(eps)
    for s in nb.prange(rows.shape[0]):
        ahead = _ahead(rows, s)
        _prefetch_row(p, ahead)
        _prefetch_row(m, ahead)
        _prefetch_row(v, ahead)
        r = rows[s]
        for d in range(p.shape[1]):
            pi, gi, mi = _adam_decay_and_first_moment(p[r, d], g[s, d], m[r, d], keep, wd, a1, decoupled)
            vi = v[r, d] + a2 * (gi * gi - v[r, d])
            m[r, d], v[r, d] = mi, vi
            p[r, d] = pi - step_size * (mi / (np.sqrt(vi) + e))


@inline
def _adagrad(p, g, total, lr, eps, weight_decay):
    g = g + weight_decay * p
    total = total + g * g
    return p - lr * (g / (np.sqrt(total) + eps)), total


@parallel_jit
def adagrad_dense(p, g, total, lr, eps, weight_decay):
    t = p.dtype.type
    for i in nb.prange(p.shape[0]):
        p[i], total[i] = _adagrad(p[i], g[i], total[i], t(lr), t(eps), t(weight_decay))


@parallel_jit
def adagrad_rows(p, rows, g, total, lr, eps, weight_decay):
    t = p.dtype.type
    for s in nb.prange(rows.shape[0]):
        ahead = _ahead(rows, s)
        _prefetch_row(p, ahead)
        _prefetch_row(total, ahead)
        r = rows[s]
        for d in range(p.shape[1]):
            p[r, d], total[r, d] = _adagrad(p[r, d], g[s, d], total[r, d], t(lr), t(eps), t(weight_decay))

"""Row kernels: gather, range checks, renorm, grouping positions by row, and the
deterministic scatter-add that turns looked-up rows' gradients into a table's."""

from __future__ import annotations

import numba as nb
import numpy as np

from .launch import parallel_jit
from .prefetch import AHEAD, GATHER_AHEAD, ahead, prefetch_row

jit = nb.njit(cache=True, nogil=True)


@jit
def first_out_of_range(indices, limit):
    """The first place of a flat `indices` whose value is outside ``[0, limit)``, or -1: the
    pass that validates a lookup's indices (branch-free, so it vectorises; the place is
    looked for only when there is one)."""
    bad = False
    for i in range(indices.shape[0]):
        bad |= (indices[i] < 0) | (indices[i] >= limit)
    if bad:
        for i in range(indices.shape[0]):
            if indices[i] < 0 or indices[i] >= limit:
                return i
    return -1


@parallel_jit
def copy_rows(source, source_rows, target, target_rows):
    """``target[target_rows[i]] = source[source_rows[i]]`` for 2-D arrays of one width
    (any strides: a field of a record array is a column slice of its bytes)."""
    width = source.shape[1]
    for i in nb.prange(source_rows.shape[0]):
        prefetch_row(source, ahead(source_rows, i, GATHER_AHEAD))
        row, place = source_rows[i], target_rows[i]
        for d in range(width):
            target[place, d] = source[row, d]


@parallel_jit
def zero_rows(target, rows):
    """``target[rows] = 0`` for a 2-D `target`."""
    for i in nb.prange(rows.shape[0]):
        for d in range(target.shape[1]):
            target[rows[i], d] = 0


@parallel_jit
def gather(table, indices, out):
    """``out[i] = table[indices[i]]`` for a flat `indices`."""
    dim = table.shape[1]
    for i in nb.prange(indices.shape[0]):
        prefetch_row(table, ahead(indices, i, GATHER_AHEAD))
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
        prefetch_row(table, ahead(rows, s))
        row = rows[s]
        norm = _row_norm(table, row, norm_type)
        if norm > max_norm:
            scale = table.dtype.type(max_norm / (norm + 1e-7))
            for d in range(table.shape[1]):
                table[row, d] *= scale


#: The bits of a row number that each pass of `sorted_rows` sorts by.
RADIX_BITS = 11


@jit
def sorted_rows(indices, bits):
    """A flat `indices` (non-negative, below ``2**bits``) grouped by row: the distinct rows
    ascending, how often each occurs, and for each position the number of its row among
    them. The positions are sorted by a stable radix sort, `RADIX_BITS` of the row a pass
    (2 passes for a million rows; 24576 ids: 0.16 ms, where sorting keys with NumPy took
    0.78)."""
    n = indices.shape[0]
    order = np.arange(n)
    spare = np.empty(n, np.int64)
    mask = (1 << RADIX_BITS) - 1
    for shift in range(0, bits, RADIX_BITS):
        starts = np.zeros(mask + 2, np.int64)
        for i in range(n):
            starts[((indices[i] >> shift) & mask) + 1] += 1
        for digit in range(mask + 1):
            starts[digit + 1] += starts[digit]
        for j in range(n):
            digit = (indices[order[j]] >> shift) & mask
            spare[starts[digit]] = order[j]
            starts[digit] += 1
        order, spare = spare, order
    rows = np.empty(n, np.int64)
    counts = np.empty(n, np.int64)
    slots = np.empty(n, np.int64)
    count = 0
    previous = -1
    for j in range(n):
        row = indices[order[j]]
        if row != previous:
            rows[count] = row
            counts[count] = 0
            count += 1
            previous = row
        counts[count - 1] += 1
        slots[order[j]] = count - 1
    return rows[:count], counts[:count], slots


@jit
def count_rows(indices, num_rows):
    """What `sorted_rows` gives, by counting instead of sorting (for indices into a table of
    not many more rows)."""
    n = indices.shape[0]
    seen = np.zeros(num_rows, np.int64)
    for i in range(n):
        seen[indices[i]] += 1
    rows = np.empty(min(n, num_rows), np.int64)
    counts = np.empty(min(n, num_rows), np.int64)
    count = 0
    for row in range(num_rows):
        if seen[row]:
            rows[count] = row
            counts[count] = seen[row]
            seen[row] = count  # from here on: the row's slot
            count += 1
    slots = np.empty(n, np.int64)
    for i in range(n):
        slots[i] = seen[indices[i]]
    return rows[:count], counts[:count], slots


@nb.njit(cache=True, inline="always")
def _target(slots, targets, i):
    """The output row of position `i` in `scatter_sum`."""
    return slots[i] if targets.shape[0] == 0 else targets[slots[i]]


@parallel_jit
def scatter_sum(values, sources, coefficients, selected, slots, targets, counts, out, parts):
    """``out[t]`` = the sum over the positions i with ``t = targets[slots[i]]`` (``t =
    slots[i]`` when `targets` is empty; a negative target drops the position) of position
    i's value, times 1 / the slot's count when `counts` is not empty; rows that get nothing
    are zero. Position i's value is ``values[i]``, or, for a pooled lookup's gradient,
    ``coefficients[i] * values[sources[i]]`` (the gradient of position i's bag; a negative
    source drops the position) and, when `selected` (a max-pool's argmax) is not empty,
    only the elements ``d`` with ``selected[sources[i], d] == i``. Empty `sources` and
    `coefficients` mean ``i`` and 1.

    Each of `parts` threads owns a range of output rows: it zeroes them (so fresh memory is
    first touched in parallel), then scans every position in order. A row's sum therefore
    always runs in position order: deterministic whatever the number of threads, with
    sequential reads of `values` (random ones for a pooled gradient)."""
    dim, n = values.shape[1], slots.shape[0]
    plain = sources.shape[0] == 0 and coefficients.shape[0] == 0 and selected.shape[0] == 0
    for part in nb.prange(parts):
        low = part * out.shape[0] // parts
        high = (part + 1) * out.shape[0] // parts
        out[low:high] = 0
        for i in range(n):
            upcoming = _target(slots, targets, min(i + AHEAD, n - 1))
            if low <= upcoming < high:
                prefetch_row(out, upcoming)
            t = _target(slots, targets, i)
            if not low <= t < high:
                continue
            if plain:
                for d in range(dim):
                    out[t, d] += values[i, d]
                continue
            source = i if sources.shape[0] == 0 else sources[i]
            if source < 0:
                continue
            c = values.dtype.type(1) if coefficients.shape[0] == 0 else values.dtype.type(coefficients[i])
            if selected.shape[0] == 0:
                for d in range(dim):
                    out[t, d] += c * values[source, d]
            else:
                for d in range(dim):
                    if selected[source, d] == i:
                        out[t, d] += c * values[source, d]
    for s in nb.prange(counts.shape[0]):
        t = np.int64(s) if targets.shape[0] == 0 else targets[s]
        if t >= 0 and counts[s] > 1:
            reciprocal = out.dtype.type(1.0 / counts[s])
            for d in range(dim):
                out[t, d] *= reciprocal

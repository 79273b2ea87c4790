"""Dot products of rows of two tables: the forward of `embedding_dot` (its gradients are
a weighted pool and a scatter, `bags.pool` and `rows.scatter_sum`)."""

from __future__ import annotations

import numba as nb

from .launch import parallel_jit
from .prefetch import AHEAD, prefetch_row


@parallel_jit(reassociate=True)
def row_dots(a, ids_a, b, ids_b, out):
    """``out[i, k]`` = the dot product of ``a[ids_a[i]]`` and ``b[ids_b[i, k]]``, summed in
    the tables' dtype (float32 or float64) in vector lanes, without gathering either row."""
    n, k, dim = ids_b.shape[0], ids_b.shape[1], a.shape[1]
    for i in nb.prange(n):
        upcoming = min(i + AHEAD, n - 1)
        prefetch_row(a, ids_a[upcoming])
        for j in range(k):
            prefetch_row(b, ids_b[upcoming, j])
        row = ids_a[i]
        for j in range(k):
            other = ids_b[i, j]
            total = out.dtype.type(0)
            for d in range(dim):
                total += a[row, d] * b[other, d]
            out[i, j] = total

"""Nearest rows (`Embedding.most_similar`): for each query, the `k` rows of a table with the
highest cosine similarity (or inner product), exact, found by scanning the table in chunks.

Why chunks: the scores of Q queries against all N rows would be a ``[Q, N]`` matrix (256 MB
for 64 queries over a million float32 rows), and a file-backed table's rows need not fit in
memory. So the table is read a chunk of rows at a time (a view of an in-memory table on the
CPU; any other storage's rows through its `gather`, which a file-backed table serves from
its files), each chunk's scores are one BLAS matrix product, and each query keeps a running
list of its best rows, merged with each chunk's best. A call's scratch stays near
`CHUNK_BYTES` whatever N, and the table is read once, each chunk while it is in the CPU's
cache (its norms for cosine come from the same pass).

Order: rows are ranked by score, highest first, then by row number, lowest first; a NaN
score ranks below every number (gensim's order). That is a total order, so the result does
not depend on the chunking. The work runs on negated scores in ascending order, which is the
order NumPy's partition and sort use (NaN last).

Exclusions (a query's own row, the padding row) are not skipped while scanning: each
running list keeps `k` plus the number of exclusions, and the excluded rows are dropped at
the end, so the scan is one vectorised pass for all queries.

Every call allocates its own scratch and only reads the table: calls from several threads
at once share nothing mutable (a file-backed table's `gather` is as thread-safe as its
lookups).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..core import Tensor
from ..core.ops.rows import checked_indices
from ..device import Device
from ..dtype import DType, accumulation_dtype
from ..errors import DTypeError, InvalidArgumentError, ShapeError
from ..interop import host_array
from ..tables import DenseTable, TableStorage, storage_of
from ..validate import integer
from .lookup import TABLE_NAME

METRICS = ("cosine", "dot")
CHUNK_BYTES = 4 << 20  # a call's scratch: a chunk of rows, their scores and the selection among them
ROWS_SHARE = 4  # of which the chunk's rows take at most a quarter (see `_chunk_rows`)


def most_similar(weight: Tensor, padding_idx: int | None, query: Any, k: Any, metric: str) -> tuple[Tensor, Tensor]:
    """The `k` rows of the table `weight` (its padding row, if any, left out) most similar to
    each query, best first, as ``(indices, scores)``; see `Embedding.most_similar` for the
    arguments and the semantics. Everything is checked before any row is read."""
    if metric not in METRICS:
        raise InvalidArgumentError(f"metric must be one of {METRICS}, got {metric!r}")
    table = storage_of(weight)
    vectors, index, single = _queries(query, table)
    own = None if index is None else np.asarray(index)
    k = _checked_k(k, table.num_rows, padding_idx, own)
    if index is not None:
        vectors = _on_host(table.gather(index), table.dtype)
    if metric == "cosine":
        vectors = vectors * _inverse_norms(vectors)[:, None]
    width = k + (own is not None) + (padding_idx is not None)  # k, and room for the rows left out below
    rows, keys = _best(_chunk_reader(table), table.num_rows, -vectors, width, metric, table.dtype.numpy)
    rows, keys = _first_kept(rows, keys, k, own, padding_idx)
    scores = np.subtract(0, keys)  # negated back; 0 - x rather than -x, so a zero score is never -0.0
    if single:
        rows, scores = rows[0], scores[0]
    return (Tensor(rows, dtype=DType.I64, device=weight.device),
            Tensor(scores, dtype=weight.dtype, device=weight.device))


def _queries(query: Any, table: TableStorage) -> tuple[np.ndarray | None, Tensor | None, bool]:
    """`query`, checked, as query vectors ``[Q, embedding_dim]`` in the dtype the scores are
    computed in (the table's; float32 for half-precision tables) or as the rows of an index
    query (an int64 tensor ``[Q]`` on the table's backend; the other is None), and whether
    it was a single query (results ``[k]`` rather than ``[Q, k]``)."""
    host = np.asarray(query) if isinstance(query, Tensor) else host_array(query)
    if host.size == 0 and isinstance(query, (list, tuple)):
        host = host.astype(np.int64)  # [] reads as float64: an empty list of row indices
    dtype = DType.from_numpy(host.dtype)
    dim = table.shape[1]
    if dtype.is_integer:
        if host.ndim > 1:
            raise ShapeError(f"a query of row indices must be one index or a 1-D list of them, got shape "
                             f"{host.shape}")
        return None, checked_indices(host.reshape(-1), table.num_rows, table.backend, TABLE_NAME), host.ndim == 0
    if not dtype.is_float:
        raise DTypeError(f"query must be row indices (integers) or vectors (floats), got {dtype.name}")
    if host.ndim not in (1, 2) or host.shape[-1] != dim:
        raise ShapeError(f"query vectors must have shape [{dim}] or [Q, {dim}] (embedding_dim {dim}), got shape "
                         f"{host.shape}")
    return host.reshape(-1, dim).astype(_computed_in(table.dtype)), None, host.ndim == 1


def returnable_rows(num_rows: int, padding_idx: int | None, by_index: bool) -> int:
    """How many rows `most_similar` can return a query: the table's `num_rows`, less the
    padding row and, for a query given as a row index (other than the padding row), its own
    row. The largest `k` it takes."""
    return num_rows - (padding_idx is not None) - by_index


def _checked_k(k: Any, num_rows: int, padding_idx: int | None, own: np.ndarray | None) -> int:
    """`k` as an int, at least 1 and at most the rows every query can return
    (`returnable_rows`; a query of the padding row's index loses one row only)."""
    k = integer("k", k, 1)
    by_index = own is not None and (padding_idx is None or bool((own != padding_idx).any()))
    fewest = returnable_rows(num_rows, padding_idx, by_index)
    if k > fewest:
        less = ([] if padding_idx is None else ["the padding row"]) + (["the query's own row"] if by_index else [])
        raise InvalidArgumentError(f"k={k} is more than the {fewest} rows a query can return (a table of "
                                   f"{num_rows} rows" + (f", less {' and '.join(less)}" if less else "") + ")")
    return k


def _best(read: Callable[[int, int], np.ndarray], num_rows: int, negated: np.ndarray, width: int,
          metric: str, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per query (a row of `negated`, the negated query vectors, unit length for cosine), the
    `width` best rows of the table (``[Q, width]``, rank order) and their negated scores,
    reading the table with `read` a chunk of rows at a time. Scores are ranked as rounded to
    the table's `dtype`, the scores returned, so that equal scores returned are in row order.

    The lists start full of placeholders (row `num_rows`, key NaN: last in the order, and
    after every real row when the table has fewer than `width`). A chunk's rows come after
    every row listed, so only a key below a list's last can enter it: the queries with none
    (most of them, once the lists hold good rows) skip the chunk's selection."""
    queries, dim = negated.shape
    itemsize = negated.dtype.itemsize
    chunk = _chunk_rows(queries, dim * itemsize, itemsize)
    scratch = np.empty(queries * min(chunk, num_rows), negated.dtype)  # the scores, reused chunk after chunk
    rows = np.full((queries, width), num_rows, np.int64)
    keys = np.full((queries, width), np.nan, negated.dtype)
    for start in range(0, num_rows, chunk):
        block = read(start, min(start + chunk, num_rows))
        scores = np.matmul(negated, block.T, out=scratch[:queries * block.shape[0]].reshape(queries, block.shape[0]))
        if metric == "cosine":
            scores *= _inverse_norms(block)
        if dtype != scores.dtype:
            scores[...] = scores.astype(dtype)
        last = keys[:, -1:]
        entering = np.flatnonzero(np.isnan(last[:, 0]) | (scores < last).any(axis=1))
        if entering.shape[0]:
            candidates = scores[entering]
            picked = _chunk_best(candidates, width)
            rows[entering], keys[entering] = _merged(rows[entering], keys[entering], picked + start,
                                                     np.take_along_axis(candidates, picked, 1), width)
    return rows, keys


def _first_kept(rows: np.ndarray, keys: np.ndarray, k: int, own: np.ndarray | None,
                padding_idx: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first `k` of each query's ranked `rows` (and their `keys`) that are neither its
    own row (`own`, an index query's) nor the padding row."""
    keep = np.ones(rows.shape, bool)
    if own is not None:
        keep &= rows != own[:, None]
    if padding_idx is not None:
        keep &= rows != padding_idx
    first = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept ones first, each group in rank order
    return np.take_along_axis(rows, first, 1), np.take_along_axis(keys, first, 1)


def _chunk_rows(queries: int, row_bytes: int, itemsize: int) -> int:
    """How many rows a chunk holds: as many as fit in `CHUNK_BYTES` with their scratch (per
    row: its norm, and per query its score, its position in a partition and a flag), but
    rows of at most a `ROWS_SHARE`-th of it (1 MiB), so that they are still in the CPU's
    cache when their norms are taken, and a single query's matrix-vector product stays
    small enough for one BLAS thread (measured on a loaded 2-core machine: products over
    8000-15000 rows x 64, which OpenBLAS splits over threads, took 5-15x longer)."""
    per_row = row_bytes + 8 + queries * (itemsize + 8 + 1)
    return max(1, min(CHUNK_BYTES // ROWS_SHARE // row_bytes, CHUNK_BYTES // per_row))


def _chunk_best(keys: np.ndarray, width: int) -> np.ndarray:
    """The positions of the `width` smallest `keys` of each row (all if fewer), exactly
    those of the order (key, position), NaN last: `argpartition` picks the smallest, but
    among keys equal to the last one picked it may pick any, so rows where more keys than
    it picked tie with that one, or where it picked a NaN, are sorted stably instead."""
    count = keys.shape[1]
    if count <= width:
        return np.broadcast_to(np.arange(count), keys.shape)
    picked = np.argpartition(keys, width - 1, axis=1)[:, :width]
    last = np.take_along_axis(keys, picked, 1).max(axis=1)
    unsure = np.isnan(last) | (np.count_nonzero(keys <= last[:, None], axis=1) > width)
    for query in np.flatnonzero(unsure):
        picked[query] = np.argsort(keys[query], kind="stable")[:width]
    return picked


def _merged(rows: np.ndarray, keys: np.ndarray, new_rows: np.ndarray, new_keys: np.ndarray,
            width: int) -> tuple[np.ndarray, np.ndarray]:
    """The `width` first of two lists of rows and their keys, per query, in the order (key,
    row), NaN last."""
    rows = np.concatenate((rows, new_rows), axis=1)
    keys = np.concatenate((keys, new_keys), axis=1)
    order = np.lexsort((rows, keys), axis=1)[:, :width]
    return np.take_along_axis(rows, order, 1), np.take_along_axis(keys, order, 1)


def _chunk_reader(table: TableStorage) -> Callable[[int, int], np.ndarray]:
    """A function giving rows ``start:stop`` of `table` as a host array in the dtype scores
    are computed in: a view of an in-memory table on the CPU (no copy), else the rows the
    storage gathers (a file-backed table reads them from its files, a GPU's come over)."""
    if isinstance(table, DenseTable) and table.device == Device.CPU:
        host, dtype = np.asarray(table.values()), _computed_in(table.dtype)
        return lambda start, stop: host[start:stop].astype(dtype, copy=False)

    def gathered(start: int, stop: int) -> np.ndarray:
        return _on_host(table.gather(Tensor(np.arange(start, stop), device=table.device)), table.dtype)

    return gathered


def _on_host(rows: Tensor, dtype: DType) -> np.ndarray:
    """`rows` (of a table of `dtype`) as a host array in the dtype scores are computed in."""
    return np.asarray(rows).astype(_computed_in(dtype), copy=False)


def _computed_in(dtype: DType) -> np.dtype:
    """The NumPy dtype a table of `dtype` is scored in: its own, float32 for half precision
    (NumPy has no half-precision matrix product)."""
    return accumulation_dtype(dtype).numpy


def _inverse_norms(vectors: np.ndarray) -> np.ndarray:
    """1 / the Euclidean norm of each row, 0 for a zero row (whose cosine is then 0)."""
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    return np.divide(1, norms, out=np.zeros_like(norms), where=norms > 0)

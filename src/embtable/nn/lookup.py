"""The semantics of an embedding lookup and of a pooled lookup, over any table storage:
validation of indices, offsets and per-sample weights, ``max_norm`` (renorm the table's
rows, or clip the looked-up ones), and where the gradient goes (padding, frequency
scaling, sparse or dense). Shared by `Embedding`, `EmbeddingBag` and `functional`; the
storage gathers, pools and renorms, `embtable.core.ops` computes the gradients.

Lookups of one table may run in several threads at once (they only read it), except where
``max_norm`` renorms: a renorm rewrites rows in place, so a renormed lookup holds the
table's renorm lock from its renorm to its read of the rows (`renorm_lock`). Concurrent
renormed lookups then give what the same calls give one after another, in some order:
without it, two could rescale a row twice or read it half rescaled.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from ..core import Tensor
from ..core.ops.bags import Bags, bags_of, pooled, pooled_rows
from ..core.ops.rows import checked_indices, clipped, gathered
from ..device import Device
from ..dtype import DType
from ..errors import DeviceError, DTypeError, InvalidArgumentError, ShapeError
from ..interop import host_array
from ..tables import TableStorage, storage_of
from .options import BagOptions, EmbeddingOptions

TABLE_NAME = "an embedding table of {limit} rows"  # how index errors name the table


def lookup(weight: Tensor, indices: Any, options: EmbeddingOptions) -> Tensor:
    """``weight[indices]`` with `options` applied, the rows read from the storage that
    holds `weight`'s values; see `Embedding` for the semantics."""
    table = storage_of(weight)
    index = checked_indices(indices, table.num_rows, table.backend, TABLE_NAME)
    if renorms(options):
        with renorm_lock(weight):
            table.renorm_rows_(index, options.max_norm, options.norm_type)
            return _looked_up(table, weight, index, options)
    rows = _looked_up(table, weight, index, options)
    return rows if options.max_norm is None else clipped(rows, options.max_norm, options.norm_type)


def bag_lookup(weight: Tensor, indices: Any, offsets: Any, per_sample_weights: Any,
               options: BagOptions) -> Tensor:
    """Each bag of `indices` (2-D rows, or 1-D with `offsets`) pooled from `weight` with
    `options` applied: ``[bags, embedding_dim]``; see `EmbeddingBag` for the semantics.
    Everything is checked before the table changes (a renorm)."""
    table = storage_of(weight)
    index = checked_indices(indices, table.num_rows, table.backend, TABLE_NAME)
    starts = bag_starts(index, offsets, options.include_last_offset)
    weights = checked_sample_weights(per_sample_weights, index, weight.device, weight.dtype)
    flat = index.reshape(-1)
    bags = bags_of(starts, table.backend, options.padding_idx)
    if renorms(options):
        with renorm_lock(weight):
            table.renorm_rows_(flat, options.max_norm, options.norm_type)
            return _pooled(table, weight, flat, bags, weights, options)
    if options.max_norm is None:
        return _pooled(table, weight, flat, bags, weights, options)
    rows = clipped(_looked_up(table, weight, flat, options), options.max_norm, options.norm_type)
    return pooled_rows(rows, flat, bags, weights, options.mode)


def prefetch_rows(weight: Tensor, indices: Any) -> None:
    """Ask the storage holding `weight` to bring the rows of `indices` (checked as a
    lookup's) close for a coming call; see `Embedding.prefetch`."""
    table = storage_of(weight)
    table.prefetch(checked_indices(indices, table.num_rows, table.backend, TABLE_NAME))


def renorms(options: EmbeddingOptions) -> bool:
    """Whether a lookup with `options` renorms its rows in the table first."""
    return options.max_norm is not None and options.max_norm_mode == "renorm"


_renorm_locks: dict[int, threading.Lock] = {}  # id(weight) -> the lock of its renormed lookups
_renorm_locks_made = threading.Lock()


def renorm_lock(weight: Tensor) -> threading.Lock:
    """The lock that `weight`'s renormed lookups hold from their renorm to their read of
    the rows: one per table, made by its first renormed lookup and dropped with it (a
    tensor compares element-wise, so it cannot key a ``WeakKeyDictionary``). An uncontended
    lookup pays a dictionary read and the lock, well under a microsecond."""
    lock = _renorm_locks.get(id(weight))
    if lock is None:
        with _renorm_locks_made:
            lock = _renorm_locks.get(id(weight))
            if lock is None:
                lock = _renorm_locks[id(weight)] = threading.Lock()
                weakref.finalize(weight, _renorm_locks.pop, id(weight), None)
    return lock


def _looked_up(table: TableStorage, weight: Tensor, index: Tensor, options: EmbeddingOptions) -> Tensor:
    return gathered(table.gather(index), weight, index, padding_idx=options.padding_idx,
                    scale_grad_by_freq=options.scale_grad_by_freq, sparse=options.sparse)


def _pooled(table: TableStorage, weight: Tensor, flat: Tensor, bags: Bags, weights: Tensor | None,
            options: BagOptions) -> Tensor:
    """The bags of the flat indices pooled by the storage, their gradient recorded."""
    values, argmax = table.pool(flat, bags, weights, options.mode)
    return pooled(values, argmax, weight, flat, bags, weights, options.mode,
                  scale_grad_by_freq=options.scale_grad_by_freq, sparse=options.sparse)


def bag_starts(index: Tensor, offsets: Any, include_last_offset: bool) -> np.ndarray:
    """Where each bag starts and ends, as int64 ``[bags + 1]`` on the host: rows of 2-D
    `index`, or the checked `offsets` of a 1-D one."""
    if index.ndim == 2:
        if offsets is not None:
            raise InvalidArgumentError(f"offsets must be None when indices are 2-D bags (shape {index.shape}: "
                                       f"each row is a bag), got offsets")
        count, length = index.shape
        return np.arange(count + 1, dtype=np.int64) * length
    if index.ndim != 1:
        raise ShapeError(f"a pooled lookup takes 2-D bags [B, L] or 1-D indices with offsets, got indices of "
                         f"shape {index.shape}")
    if offsets is None:
        raise InvalidArgumentError(f"1-D indices (shape {index.shape}) need offsets: where each bag starts")
    return _checked_offsets(offsets, index.shape[0], include_last_offset)


def _checked_offsets(offsets: Any, size: int, include_last_offset: bool) -> np.ndarray:
    """The 1-D integer `offsets` of `size` indices as bag bounds: ``offsets[0]`` is 0, they
    never decrease nor exceed `size`; without `include_last_offset` the last bag runs to
    the end."""
    host = np.asarray(offsets) if isinstance(offsets, Tensor) else host_array(offsets)
    if host.size == 0 and not isinstance(offsets, Tensor):
        host = host.astype(np.int64)  # [] reads as float64
    if host.ndim != 1 or host.dtype.kind not in "iu":
        raise InvalidArgumentError(f"offsets must be 1-D integers, got shape {host.shape} and dtype {host.dtype}")
    if include_last_offset and host.size == 0:
        raise InvalidArgumentError("with include_last_offset=True, offsets need one entry more than there are "
                                   "bags (at least one), got none")
    if host.size == 0:
        return np.zeros(1, np.int64)  # no bags
    if include_last_offset:
        bounds = host.astype(np.int64)  # a copy: the caller's array may change later
    else:  # the last bag runs to the end
        bounds = np.empty(host.size + 1, np.int64)
        bounds[:-1] = host
        bounds[-1] = size
    if bounds[0] != 0 or bounds[-1] > size or (bounds[1:] < bounds[:-1]).any():
        _raise_bad_offsets(host.astype(np.int64), size)
    return bounds


def _raise_bad_offsets(starts: np.ndarray, size: int) -> None:
    """The error for the first thing wrong with `starts`: not starting at 0, decreasing, or
    past the end of the `size` indices."""
    if starts[0] != 0:
        raise InvalidArgumentError(f"offsets[0] must be 0, got {starts[0]}")
    falling = np.flatnonzero(starts[1:] < starts[:-1])
    if falling.size:
        i = int(falling[0]) + 1
        raise InvalidArgumentError(f"offsets must not decrease: offsets[{i}] = {starts[i]} is below "
                                   f"offsets[{i - 1}] = {starts[i - 1]}")
    i = int(np.flatnonzero(starts > size)[0])
    raise InvalidArgumentError(f"offsets[{i}] = {starts[i]} is past the end of the {size} indices")


def checked_sample_weights(weights: Any, index: Tensor, device: Device, dtype: DType) -> Tensor | None:
    """`weights` as a flat tensor of the table's `dtype` on its `device`, one per index, or
    None."""
    if weights is None:
        return None
    if isinstance(weights, Tensor):
        if weights.device != device:
            raise DeviceError(f"per_sample_weights are on {weights.device} but the table is on {device}")
    else:
        weights = Tensor(weights, device=device)
    if weights.shape != index.shape:
        raise ShapeError(f"per_sample_weights must have the indices' shape {index.shape}, got {weights.shape}")
    if weights.dtype != dtype:
        raise DTypeError(f"per_sample_weights must have the table's dtype {dtype.name}, got {weights.dtype.name}")
    return weights.reshape(-1)

"""The semantics of `embedding_dot`: the dot products of rows of two `Embedding` layers,
checked at the edge and computed as one op (`embtable.core.ops.dots`) where both tables
are in memory, else as the lookups, product and sum it stands for."""

from __future__ import annotations

import contextlib
from typing import Any

from ..core import Tensor
from ..core.ops.dots import GradientRoute, row_dots
from ..core.ops.rows import checked_indices
from ..errors import DeviceError, DTypeError, InvalidArgumentError, ShapeError
from ..tables import DenseTable, storage_of
from .embedding import Embedding
from .lookup import TABLE_NAME, lookup, renorm_lock, renorms
from .options import EmbeddingOptions


def embedding_dot(table_a: Embedding, ids_a: Any, table_b: Embedding, ids_b: Any) -> Tensor:
    """The dot product of each row ``table_a(ids_a)[...]`` with the rows
    ``table_b(ids_b)[..., k]``; see `embtable.nn.functional.embedding_dot`."""
    for name, table in (("table_a", table_a), ("table_b", table_b)):
        if not isinstance(table, Embedding):
            raise InvalidArgumentError(f"embedding_dot takes two Embedding layers, got {name} of type "
                                       f"{type(table).__name__}")
    weight_a, weight_b = table_a.weight, table_b.weight
    if weight_a.device != weight_b.device:
        raise DeviceError(f"table_a is on {weight_a.device} but table_b is on {weight_b.device}")
    if weight_a.dtype != weight_b.dtype:
        raise DTypeError(f"table_a is {weight_a.dtype.name} but table_b is {weight_b.dtype.name}; they must match")
    if weight_a.shape[1] != weight_b.shape[1]:
        raise ShapeError(f"table_a's rows have {weight_a.shape[1]} values but table_b's {weight_b.shape[1]}; "
                         f"a dot product needs one embedding_dim")
    storage_a, storage_b = storage_of(weight_a), storage_of(weight_b)
    index_a = checked_indices(ids_a, storage_a.num_rows, storage_a.backend, TABLE_NAME, "ids_a value")
    index_b = checked_indices(ids_b, storage_b.num_rows, storage_b.backend, TABLE_NAME, "ids_b value")
    if index_b.shape != index_a.shape and index_b.shape[:-1] != index_a.shape:
        raise ShapeError(f"ids_b must have the shape of ids_a {index_a.shape}, or that and one more axis "
                         f"(several rows per row of ids_a), got {index_b.shape}")
    options_a, options_b = table_a.options, table_b.options
    if not all(isinstance(s, DenseTable) for s in (storage_a, storage_b)) or _clips(options_a) or _clips(options_b):
        return _composed(weight_a, index_a, options_a, weight_b, index_b, options_b)
    with _renorm_locks(weight_a if renorms(options_a) else None, weight_b if renorms(options_b) else None):
        for storage, index, options in ((storage_a, index_a, options_a), (storage_b, index_b, options_b)):
            if renorms(options):
                storage.renorm_rows_(index, options.max_norm, options.norm_type)
        return row_dots(weight_a, index_a, _route(options_a), weight_b, index_b, _route(options_b))


def _clips(options: EmbeddingOptions) -> bool:
    """Whether a lookup with `options` clips its rows (``max_norm_mode="clip"``)."""
    return options.max_norm is not None and options.max_norm_mode == "clip"


def _route(options: EmbeddingOptions) -> GradientRoute:
    return GradientRoute(options.padding_idx, options.scale_grad_by_freq, options.sparse)


def _composed(weight_a: Tensor, index_a: Tensor, options_a: EmbeddingOptions,
              weight_b: Tensor, index_b: Tensor, options_b: EmbeddingOptions) -> Tensor:
    """What `embedding_dot` stands for, op by op: for tables that are not one array in
    memory (file-backed, sharded) and rows clipped by ``max_norm_mode="clip"``."""
    rows_a = lookup(weight_a, index_a, options_a)
    rows_b = lookup(weight_b, index_b, options_b)
    if index_b.ndim > index_a.ndim:
        rows_a = rows_a.unsqueeze(-2)
    return (rows_a * rows_b).sum(axis=-1)


@contextlib.contextmanager
def _renorm_locks(*weights: Tensor | None):
    """Hold the renorm locks of the distinct `weights` given (None: that side does not
    renorm), taken in one order so that two calls with the tables swapped cannot deadlock."""
    distinct = {id(w): w for w in weights if w is not None}
    with contextlib.ExitStack() as stack:
        for key in sorted(distinct):
            stack.enter_context(renorm_lock(distinct[key]))
        yield

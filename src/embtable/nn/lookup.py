"""The semantics of an embedding lookup, over any table storage: index validation,
``max_norm`` (renorm the table's rows, or clip the returned ones), the gather, and where
the gradient goes (padding, frequency scaling, sparse or dense). Shared by `Embedding`
and `functional.embedding`; the storage gathers and renorms, `embtable.core.ops.rows`
computes the gradient.
"""

from __future__ import annotations

from typing import Any

from ..core import Tensor
from ..core.ops.rows import checked_indices, clipped, gathered
from ..tables import storage_of
from .options import EmbeddingOptions

_TABLE = "an embedding table of {limit} rows"


def lookup(weight: Tensor, indices: Any, options: EmbeddingOptions) -> Tensor:
    """``weight[indices]`` with `options` applied, the rows read from the storage that
    holds `weight`'s values; see `Embedding` for the semantics."""
    table = storage_of(weight)
    index = checked_indices(indices, table.num_rows, table.backend, _TABLE)
    renorm = options.max_norm is not None and options.max_norm_mode == "renorm"
    if renorm:
        table.renorm_rows_(index, options.max_norm, options.norm_type)
    rows = gathered(table.gather(index), weight, index, padding_idx=options.padding_idx,
                    scale_grad_by_freq=options.scale_grad_by_freq, sparse=options.sparse)
    if options.max_norm is None or renorm:
        return rows
    return clipped(rows, options.max_norm, options.norm_type)

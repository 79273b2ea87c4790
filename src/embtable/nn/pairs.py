"""The semantics of `embedding_dot`: the dot products of rows of two `Embedding` layers,
checked at the edge and computed as one op (`embtable.core.ops.dots`) where both tables
are arrays in memory that a lookup does not change, else from the rows their lookups
return, with the same kernel (so the same bits)."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import numpy as np

from ..core import Tensor
from ..core.ops.dots import GradientRoute, row_dots
from ..core.ops.rows import checked_indices
from ..errors import DeviceError, DTypeError, InvalidArgumentError, ShapeError
from ..tables import DenseTable, TableStorage, storage_of
from .embedding import Embedding
from .lookup import TABLE_NAME, lookup, renorm_lock, renorms
from .options import EmbeddingOptions


@dataclasses.dataclass(frozen=True, eq=False)
class _Side:
    """One side of the product: a layer's weight, where it lives, its checked indices and
    its options."""

    weight: Tensor
    storage: TableStorage
    index: Tensor
    options: EmbeddingOptions

    @property
    def fusable(self) -> bool:
        """Whether the op may read this side's rows where they lie: an array in memory that
        the lookup would not change (no renorm) nor clip."""
        return isinstance(self.storage, DenseTable) and self.options.max_norm is None

    @property
    def renorms(self) -> bool:
        return renorms(self.options)

    def renorm(self) -> None:
        """Renorm this side's rows in its table, as its lookup would."""
        self.storage.renorm_rows_(self.index, self.options.max_norm, self.options.norm_type)


def embedding_dot(table_a: Embedding, ids_a: Any, table_b: Embedding, ids_b: Any) -> Tensor:
    """The dot product of each row ``table_a(ids_a)[...]`` with the rows
    ``table_b(ids_b)[..., k]``; see `embtable.nn.functional.embedding_dot`."""
    a = _side("table_a", table_a, ids_a)
    b = _side("table_b", table_b, ids_b)
    if a.weight.device != b.weight.device:
        raise DeviceError(f"table_a is on {a.weight.device} but table_b is on {b.weight.device}")
    if a.weight.dtype != b.weight.dtype:
        raise DTypeError(f"table_a is {a.weight.dtype.name} but table_b is {b.weight.dtype.name}; they must match")
    if a.weight.shape[1] != b.weight.shape[1]:
        raise ShapeError(f"table_a's rows have {a.weight.shape[1]} values but table_b's {b.weight.shape[1]}; "
                         f"a dot product needs one embedding_dim")
    if b.index.shape != a.index.shape and b.index.shape[:-1] != a.index.shape:
        raise ShapeError(f"ids_b must have the shape of ids_a {a.index.shape}, or that and one more axis "
                         f"(several rows per row of ids_a), got {b.index.shape}")
    if a.fusable and b.fusable:
        return row_dots(a.weight, a.index, _route(a.options), b.weight, b.index, _route(b.options))
    return _from_lookups(a, b)


def _side(name: str, table: Any, ids: Any) -> _Side:
    if not isinstance(table, Embedding):
        raise InvalidArgumentError(f"embedding_dot takes two Embedding layers, got {name} of type "
                                   f"{type(table).__name__}")
    storage = storage_of(table.weight)
    index = checked_indices(ids, storage.num_rows, storage.backend, TABLE_NAME, f"ids_{name[-1]} value")
    return _Side(table.weight, storage, index, table.options)


def _route(options: EmbeddingOptions) -> GradientRoute:
    """Where a lookup with `options` sends its gradient."""
    return GradientRoute(options.padding_idx, options.scale_grad_by_freq, options.sparse)


def _from_lookups(a: _Side, b: _Side) -> Tensor:
    """The product of the rows that the two sides' lookups return (renormed in the tables
    first, a's then b's, each just before its read, or clipped): for file-backed and sharded
    tables, and for ``max_norm``, whose renorms would otherwise change the tables the fused
    op reads again in its backward. The same kernel multiplies the rows, so the results are
    the fused op's, bit for bit. A table that may not change (a read-only file) renorms
    before anything else, so that its refusal leaves the other table as it was (and
    otherwise it changed nothing)."""
    renormed = [side for side in (a, b) if side.renorms]
    read_only = [side for side in renormed if not _writable(side.storage)]
    with _renorm_locks([side.weight for side in renormed]):
        for side in read_only:  # refuses, or changes nothing: before any other table changes
            side.renorm()
        rows = []
        for side in (a, b):  # as two lookups: each side's renorm, then its read
            if side.renorms and side not in read_only:
                side.renorm()
            rows.append(lookup(side.weight, side.index, _without_renorm(side.options)))
    rows_a, rows_b = rows
    n, dim, device = a.index.numel(), a.weight.shape[1], a.weight.device
    positions_a = Tensor(np.arange(n), device=device).reshape(a.index.shape)
    positions_b = Tensor(np.arange(b.index.numel()), device=device).reshape(b.index.shape)
    return row_dots(rows_a.reshape(n, dim), positions_a, GradientRoute(), rows_b.reshape(-1, dim), positions_b,
                    GradientRoute())


def _without_renorm(options: EmbeddingOptions) -> EmbeddingOptions:
    """`options` for a lookup of rows already renormed."""
    return dataclasses.replace(options, max_norm=None) if renorms(options) else options


def _writable(storage: TableStorage) -> bool:
    try:
        storage.check_writable("a max_norm renorm")
    except InvalidArgumentError:
        return False
    return True


@contextlib.contextmanager
def _renorm_locks(weights: list[Tensor]) -> Iterator[None]:
    """Hold the renorm locks of the distinct `weights`, taken in one order so that two
    calls with the tables swapped cannot deadlock."""
    distinct = {id(w): w for w in weights}
    with contextlib.ExitStack() as stack:
        for key in sorted(distinct):
            stack.enter_context(renorm_lock(distinct[key]))
        yield

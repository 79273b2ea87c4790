"""`TableStorage`: what a table's rows live in, and what every kind of table must answer.

A layer (`Embedding`, `EmbeddingBag`) keeps the semantics of a lookup in
`embtable.nn.lookup` and asks its storage for the rest: gather rows, pool bags of rows,
prefetch rows, renorm rows in place, apply an optimizer's update with its state, give and take the whole
table for checkpoints, say where it lives and whether it may change, commit. A new kind of
table (quantized, memory-mapped, sharded) is one new class that satisfies this protocol;
nothing above it changes.

`RowRule` is the other side of an update: an optimizer's rule, which every storage applies
to the rows it holds (the optimizers implement it; storages never import them).

A storage is called from any thread (threads serving one table): one whose calls change
state of its own (a cache of rows, scratch arrays, replies in flight) makes each call hold
its lock (`one_call_at_a_time`), so that calls from several threads take turns.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Protocol, Sequence

from ..backends import Backend, FusedStep
from ..core import RowSparseGrad, Tensor
from ..core.ops.bags import Bags
from ..device import Device
from ..dtype import DType


class RowRule(Protocol):
    """An optimizer's update rule, as a storage applies it."""

    #: The backend kernel that computes this rule in one pass (None: there is none).
    fused_step: FusedStep | None

    def buffer_names(self) -> tuple[str, ...]:
        """The state kept per parameter (zeros until first used), in kernel order."""

    def buffer_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of each state buffer of a parameter of `shape`: the parameter's own
        (a value per element), or ``shape[:1]`` for a value per row."""

    def portable(self) -> RowRule:
        """This rule alone, without the optimizer's parameters and state: small and
        picklable, what a storage in another process (a shard) applies."""

    def update(self, xp: Any, p: Any, g: Any, buffers: list[Any], scalars: tuple, sparse: bool) -> list[Any]:
        """The reference rule: new values of the parameter rows `p` and of its `buffers`'
        rows from their gradient `g` (arrays of namespace `xp`); what the fused kernel also
        computes."""


class TableStorage(Protocol):
    """Where a table's rows (or any trainable tensor's values) live."""

    @property
    def shape(self) -> tuple[int, ...]:
        """The table's shape, ``[num_embeddings, embedding_dim]``."""

    @property
    def num_rows(self) -> int:
        """``shape[0]``, the number of rows: what indices are checked against."""

    @property
    def dtype(self) -> DType:
        """The rows' dtype."""

    @property
    def device(self) -> Device:
        """Where lookups return their rows."""

    @property
    def backend(self) -> Backend:
        """The backend of the device: where indices must be for `gather`."""

    def gather(self, indices: Tensor) -> Tensor:
        """``table[indices]`` for validated int64 `indices`, as a new tensor (no gradient)."""

    def pool(self, indices: Tensor, bags: Bags, weights: Tensor | None, mode: str) -> tuple[Tensor, Tensor | None]:
        """Each bag's rows of the flat `indices`, times `weights` (one per position, or
        None), reduced by `mode` (``"sum"``, ``"mean"``, ``"max"``; positions of the bags'
        padding index left out and not counted; an empty bag a zero row), as a new ``[bags, dim]`` tensor (no
        gradient) made without an ``[N, dim]`` intermediate where the storage can; and
        for ``"max"`` the argmax (I64 ``[bags, dim]``: the earliest position of each
        maximum), else None."""

    def prefetch(self, indices: Tensor) -> None:
        """Start bringing the rows of validated int64 `indices` (and their optimizer state)
        close, in the background, for a call that will need them soon; results never depend
        on it (a table in memory does nothing)."""

    def renorm_rows_(self, indices: Tensor, max_norm: float, norm_type: float) -> None:
        """Rescale in place every distinct row in `indices` whose norm exceeds `max_norm`
        by ``max_norm / (norm + 1e-7)`` (PyTorch's renorm)."""

    def apply_update(self, rule: RowRule, grad: Tensor | RowSparseGrad, state: dict[str, Any],
                     scalars: Sequence[Any]) -> None:
        """Apply `rule` with `scalars` in place: to every element from a dense `grad`, or to
        the rows of a `RowSparseGrad` only. `state` holds the rule's buffers by name; a
        missing one starts at zeros, one on another device moves here."""

    def state_for_dict(self, rule: RowRule, state: dict[str, Any]) -> dict[str, Any]:
        """`rule`'s state of this table as its optimizer's `state_dict` gives it: `state`
        itself where the buffers live in it; a storage that keeps them elsewhere may add
        them (a sharded table gathers them)."""

    @property
    def path(self) -> str | None:
        """The file the rows live in, or None for a table in memory."""

    def check_writable(self, change: str) -> None:
        """Raise `InvalidArgumentError` naming `change` (``"an optimizer step"``) if the
        table may not change: called before anything is modified."""

    def check_load(self, device: Device | None, dtype: DType | None) -> None:
        """Raise `InvalidArgumentError` if `load_` would refuse values on `device` of
        `dtype` (None: the table's own): called before any tensor of a layer changes."""

    def resumed_state(self, rule: RowRule) -> dict[str, Any]:
        """The state a new optimizer of `rule`'s kind starts from for this table: what a
        file-backed table's files hold (``{"step": n}``), else nothing."""

    def commit(self) -> None:
        """Make every change so far durable (a file-backed table), or raise
        `InvalidArgumentError` (a table in memory has no file)."""

    def values(self) -> Tensor:
        """The whole table as a tensor (shared with the storage where it is in memory):
        what state dicts and checkpoints save."""

    def load_(self, values: Tensor) -> None:
        """Replace every row by `values` (the table's shape), taking their device and dtype:
        a load or a move. Counts as an in-place change of the weight."""


def one_call_at_a_time(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` of a storage, made to hold the storage's ``_calls`` lock (a
    ``threading.RLock``, so a call may make another) while it runs."""

    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._calls:
            return method(self, *args, **kwargs)

    return locked

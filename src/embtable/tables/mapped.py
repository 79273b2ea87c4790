"""`MappedTable`: a table whose rows live in a file, larger than memory if need be.

The rows stay in the files (`TableFiles`: the checkpoint and the redo log of rows changed
since, read with ``pread``) and a bounded cache holds the rows that calls touch, with their
optimizer state, in memory (`RowCache` says which row is in which slot). Every call first
brings the rows it touches into the cache; then the same kernels as an in-memory table's
run over the cache's arrays, with slots for rows (`DenseTable` over the cache), so results
are bit-identical to an in-memory table's. Changed rows stay in the cache, marked dirty,
until the cache needs their slots or a commit: then they are appended to the redo log,
which a commit makes durable. `prefetch` brings rows into the cache on a background thread
while the caller works; every call that could meet its rows, change the cache's arrays or
write to the files first waits for it (`_settle`). Nothing here costs ``O(num_embeddings)`` per
call. Calls from several threads take turns (`one_call_at_a_time`): every call may read rows
in, evict others and move the cache's arrays.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from concurrent.futures import Future
from typing import Any, Callable, Sequence

import numpy as np

from ..backends import Backend, backend_for
from ..core import RowSparseGrad, Tensor, data_of, keep_values, mark_modified, wrap
from ..core.ops.bags import Bags
from ..device import Device, as_device
from ..dtype import DType, accumulation_dtype
from ..errors import InvalidArgumentError
from .base import RowRule, one_call_at_a_time
from .dense import DenseTable
from .row_cache import RowCache
from .row_copy import copy_rows, taken
from .row_io import in_background
from .table_files import WEIGHT, WRITE_CHUNK_ROWS, TableFiles

DEFAULT_CACHE_BYTES = 1 << 30
SLOT_OVERHEAD = 64  # bytes of bookkeeping per cached row: its row, use, dirtiness and hash-map places
INDEX_SHARE = 8  # the redo log's index takes up to 1 / INDEX_SHARE of the budget, the cache the rest
DENSE_CHUNK_ROWS = 1 << 16  # a dense gradient updates the table this many rows at a time


class MappedTable:
    """The rows of a table in `files`, with at most about `cache_bytes` of rows and their
    optimizer state held in memory (a call touching more rows than fit still works: the
    cache grows to hold them). Its weight (`weight_of`) is the layer's parameter: metadata
    and gradients as any tensor's, its values read from the file (changed rows written
    back first), never changed in place except through this storage."""

    def __init__(self, files: TableFiles, cache_bytes: int | None = None) -> None:
        self._calls = threading.RLock()  # held by each call (`one_call_at_a_time`)
        self._files = files
        self._cpu: Backend = backend_for(as_device("cpu"))
        self._budget = DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes
        self._buffers: dict[str, dict[str, Tensor]] = {}  # optimizer name -> buffer -> [capacity, ...]
        self._records: dict[str, np.dtype] = {}  # optimizer name -> its state file's record
        self._optimizer_states: dict[str, dict[str, Any]] = {}  # optimizer name -> its state of this table
        self._view_stale = True  # the view may not show every row: the log's, or changed ones
        self._arrival: tuple[Future, np.ndarray] | None = None  # a prefetch's read in flight, and its slots
        self._new_cache(self._capacity())
        self._weight: Callable[[], Tensor | None] = lambda: None

    @classmethod
    def weight_of(cls, path: str, writable: bool, cache_bytes: int | None = None, at_commit: int | None = None
                  ) -> Tensor:
        """A tensor whose values are the table in the checkpoint `path`, kept by a new
        `MappedTable` (`storage_of` finds it). The tensor keeps the storage alive, not the
        other way round, so dropping the last reference to the weight closes the files.
        The redo log's index may take an eighth of the cache budget before a commit folds
        the log into the files; the cached rows take the rest. `at_commit` opens the files
        as of that tagged commit (`commit`)."""
        budget = DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes
        files = TableFiles(path, writable, index_bytes=budget // INDEX_SHARE, at_commit=at_commit)
        storage = cls(files, cache_bytes)
        with warnings.catch_warnings():  # a backend may warn that the mapping is writable
            warnings.simplefilter("ignore")
            view = storage._cpu.from_host(files.view)
        weight = wrap(view, storage._cpu)
        keep_values(weight, storage)
        storage._weight = weakref.ref(weight)
        return weight

    # --- what it is -----------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self._files.shape

    @property
    def num_rows(self) -> int:
        return self._files.shape[0]

    @property
    def dtype(self) -> DType:
        return self._files.dtype

    @property
    def device(self) -> Device:
        return self._cpu.device

    @property
    def backend(self) -> Backend:
        return self._cpu

    @property
    def path(self) -> str:
        return self._files.path

    @property
    def writable(self) -> bool:
        return self._files.writable

    # --- lookups ----------------------------------------------------------------------------

    @one_call_at_a_time
    def gather(self, indices: Tensor) -> Tensor:
        slots = self._slots(self._cpu.to_host(data_of(indices)).reshape(-1))
        return self._cached().gather(self._on_device(slots.reshape(indices.shape)))

    @one_call_at_a_time
    def pool(self, indices: Tensor, bags: Bags, weights: Tensor | None, mode: str) -> tuple[Tensor, Tensor | None]:
        flat = self._cpu.to_host(data_of(indices)).reshape(-1)
        slots = self._slots(flat)
        padding = -1
        if bags.padding_idx is not None:
            padding = int(self._cache.slots_of(np.array([bags.padding_idx], np.int64))[0])
        slot_bags = Bags(bags.offsets, None if padding < 0 else padding)
        return self._cached().pool(self._on_device(slots), slot_bags, weights, mode)

    @one_call_at_a_time
    def renorm_rows_(self, indices: Tensor, max_norm: float, norm_type: float) -> None:
        self._settle()  # a prefetch's failed read raises here, before any row changes
        rows = np.unique(self._cpu.to_host(data_of(indices)))
        slots = self._slots(rows)
        before = self._host(self._rows)[slots]
        after = before.copy()
        backend = self._cpu
        renormed = backend.from_host(after)
        backend.renorm_rows_(renormed, backend.from_host(np.arange(rows.shape[0], dtype=np.int64)), max_norm,
                             norm_type)
        after = backend.to_host(renormed)
        changed = _differs(before, after)
        if changed.any():
            self.check_writable("a renorm (max_norm) that rescales rows")
            self._host(self._rows)[slots[changed]] = after[changed]
            self._mark_dirty(slots[changed])
        self._mark_modified()

    @one_call_at_a_time
    def prefetch(self, indices: Tensor) -> None:
        """Start reading the rows of `indices` that are not cached (with their optimizer
        state) into the cache on a background thread, so that a later call finds them there;
        they count as used now. One prefetch is in flight at a time: a new one first waits
        for the last."""
        self._settle()
        rows = np.unique(self._cpu.to_host(data_of(indices)))
        cache = self._cache
        cache.begin_call()
        missing = rows[cache.slots_of(rows) < 0]
        if missing.shape[0] == 0:
            return
        slots = self._admitted(missing)
        targets = self._targets()
        try:
            job = in_background(lambda: self._read(missing, slots, targets))
        except BaseException:  # no thread to read them (the interpreter is exiting): the rows leave again
            self._cache.release(slots)
            raise
        self._cache.arriving[slots] = True
        self._arrival = (job, slots)

    # --- updates --------------------------------------------------------------------------

    def check_writable(self, change: str) -> None:
        """`InvalidArgumentError` naming `change` when the table was opened read-only."""
        if not self.writable:
            raise InvalidArgumentError(f"{change} would change the read-only table {self.path!r}; open it with "
                                       f"writable=True")

    def check_load(self, device: Device | None, dtype: DType | None) -> None:
        """`InvalidArgumentError` unless the table may take new values of `device` and `dtype`."""
        self.check_writable("loading values")
        if (device is not None and device != self.device) or (dtype is not None and dtype != self.dtype):
            raise InvalidArgumentError(f"the file-backed table {self.path!r} stays {self.dtype.name} on "
                                       f"{self.device}; got {dtype} on {device}")

    def state_for_dict(self, rule: RowRule, state: dict[str, Any]) -> dict[str, Any]:
        """`state` as it is, the step count alone: the buffers stay in the files (a whole
        table of them would not fit in memory)."""
        return state

    @one_call_at_a_time
    def resumed_state(self, rule: RowRule) -> dict[str, Any]:
        name = type(rule).__name__
        steps = self._files.steps
        return {"step": steps[name]} if name in steps else {}

    @one_call_at_a_time
    def apply_update(self, rule: RowRule, grad: Tensor | RowSparseGrad, state: dict[str, Any],
                     scalars: Sequence[Any]) -> None:
        self.check_writable("an optimizer step")
        kept = [name for name in rule.buffer_names() if name in state]
        if kept:
            raise InvalidArgumentError(f"the optimizer state of the file-backed table {self.path!r} is kept in "
                                       f"its files; got buffers {kept} in memory (from load_state_dict)")
        self._settle()  # a prefetch's failed read raises here, before any row changes
        buffers = self._rule_buffers(rule)
        self._optimizer_states[type(rule).__name__] = state
        if isinstance(grad, RowSparseGrad):
            slots = self._slots(self._cpu.to_host(data_of(grad.indices)))
            cached = RowSparseGrad(self._on_device(slots), grad.values, self._rows.shape)
            self._cached().apply_update(rule, cached, buffers, scalars)
            self._mark_dirty(slots)
        else:
            self._dense_update(rule, grad, buffers, scalars)
        self._mark_modified()

    def _dense_update(self, rule: RowRule, grad: Tensor, buffers: dict[str, Tensor], scalars: Sequence[Any]) -> None:
        """A dense gradient's update, a chunk of rows at a time: each chunk's rows and state
        gathered from the cache, updated by the rule's dense formula, put back."""
        step = max(1, min(DENSE_CHUNK_ROWS, self._cache.capacity))
        gradient = data_of(grad)
        for start in range(0, self.num_rows, step):
            rows = np.arange(start, min(start + step, self.num_rows), dtype=np.int64)
            slots = self._slots(rows)
            chunk = self._gathered(self._rows, slots)
            chunk_state = {name: self._gathered(buffer, slots) for name, buffer in buffers.items()}
            DenseTable(chunk).apply_update(rule, wrap(gradient[start:start + rows.shape[0]], self._cpu),
                                           chunk_state, scalars)
            order = np.arange(rows.shape[0], dtype=np.int64)
            for target, updated in [(self._rows, chunk), *((buffers[n], chunk_state[n]) for n in buffers)]:
                copy_rows(self._host(updated), order, self._host(target), slots)
            self._mark_dirty(slots)

    def _gathered(self, cached: Tensor, slots: np.ndarray) -> Tensor:
        """The rows `slots` of a cache array, as a new tensor."""
        return wrap(self._cpu.from_host(taken(self._host(cached), slots)), self._cpu)

    # --- the whole table ------------------------------------------------------------------

    @one_call_at_a_time
    def values(self) -> Tensor:
        self.bring_up_to_date()
        return wrap(self._cpu.from_host(self._files.view), self._cpu)

    @one_call_at_a_time
    def load_(self, values: Tensor) -> None:
        self.check_load(values.device, values.dtype)
        self._drop_cache()
        host = self._cpu.to_host(data_of(values))
        for start in range(0, self.num_rows, DENSE_CHUNK_ROWS):
            rows = np.arange(start, min(start + DENSE_CHUNK_ROWS, self.num_rows), dtype=np.int64)
            self._files.write_rows(rows, {WEIGHT: host[start:start + rows.shape[0]]})
        self._view_stale = True
        self._mark_modified()

    @one_call_at_a_time
    def commit(self, tag: int | None = None, keep: int | None = None) -> None:
        """Write every changed row to the files and make them, and the optimizers' step
        counts, durable together. A `tag` numbers the commit as one of several tables
        committed together: their last completed commit, `keep`, stays openable until
        `fold` (see `TableFiles.commit`)."""
        self.check_writable("commit()")
        self._write_back_dirty()
        steps = self._files.steps
        steps.update({name: int(state.get("step", steps.get(name, 0)))
                      for name, state in self._optimizer_states.items()})
        self._files.commit(steps, tag, keep)

    @one_call_at_a_time
    def fold(self) -> None:
        """After a tagged commit, fold the redo log into the files if it has grown."""
        self._files.fold()

    @one_call_at_a_time
    def put_rows(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Set `rows` (int64, distinct, in range) to `values`; durable at the next commit."""
        self.check_writable("putting rows")
        slots = self._slots(rows)
        self._host(self._rows)[slots] = values
        self._mark_dirty(slots)
        self._mark_modified()

    # --- the weight tensor's keeper -------------------------------------------------------

    @one_call_at_a_time
    def bring_up_to_date(self) -> None:
        """Make the weight's view show the table's current values: the files' rows with the
        changed cached ones over them (each row changed since the last fold then takes a
        private page of the view)."""
        if self._view_stale:
            self._files.refresh_view()
            dirty = np.flatnonzero(self._cache.dirty)
            copy_rows(self._host(self._rows), dirty, self._files.view, self._cache.row_of[dirty])
            self._view_stale = False

    def refuse_in_place(self, what: str) -> None:
        raise InvalidArgumentError(f"{what} cannot change the file-backed table {self.path!r} in place: its rows "
                                   f"change through optimizer steps, max_norm renorms and load_state_dict")

    # --- the cache ------------------------------------------------------------------------

    def _capacity(self) -> int:
        """How many rows, with the state of the optimizers in use, fit in the budget (less
        the share of the redo log's index); never more than the table has, so a small
        table costs its own size, not the budget."""
        arrays = [(self.shape[1:], self.dtype),
                  *((b.shape[1:], b.dtype) for buffers in self._buffers.values() for b in buffers.values())]
        per_row = SLOT_OVERHEAD + sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in arrays)
        return max(1, min(self.num_rows, (self._budget - self._budget // INDEX_SHARE) // per_row))

    def _new_cache(self, capacity: int) -> None:
        self._settle()
        self._cache = RowCache(capacity)
        self._rows = self._zeros((capacity, *self.shape[1:]), self.dtype)
        for buffers in self._buffers.values():
            for name, buffer in buffers.items():
                buffers[name] = self._zeros((capacity, *buffer.shape[1:]), buffer.dtype)

    def _zeros(self, shape: tuple[int, ...], dtype: DType) -> Tensor:
        return wrap(self._cpu.zeros(shape, dtype), self._cpu)

    def _host(self, tensor: Tensor) -> np.ndarray:
        """A host view of a cache array (shared: writes change the cache)."""
        return self._cpu.to_host(data_of(tensor))

    def _on_device(self, slots: np.ndarray) -> Tensor:
        return wrap(self._cpu.from_host(slots), self._cpu)

    def _cached(self) -> DenseTable:
        """The cache's rows as a table whose row numbers are slots."""
        return DenseTable(self._rows)

    def _slots(self, rows: np.ndarray) -> np.ndarray:
        """The slot of each of `rows` (int64, in range, repeats allowed), bringing the rows
        not cached into the cache (with their optimizer state) first."""
        cache = self._cache
        cache.begin_call()
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        slots = cache.slots_of(rows)
        absent = slots < 0
        missed = bool(absent.any())
        if self._arrival is not None and (missed or cache.arriving[slots].any()):
            self._settle()
        if not missed:
            return slots
        missing = np.unique(rows[absent])
        placed = self._admitted(missing)
        self._read(missing, placed, self._targets())
        slots[absent] = placed[np.searchsorted(missing, rows[absent])]
        return slots

    def _admitted(self, rows: np.ndarray) -> np.ndarray:
        """Slots now holding `rows` (distinct, ascending, not cached), room made for them;
        their values are still to be read."""
        self._make_room(rows.shape[0])
        return self._cache.assign(rows)

    def _targets(self) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """Host views of the cache's arrays: the rows, and each stateful optimizer's buffers."""
        return self._host(self._rows), {optimizer: {name: self._host(b) for name, b in buffers.items()}
                                        for optimizer, buffers in self._stateful()}

    def _read(self, rows: np.ndarray, slots: np.ndarray,
              targets: tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]) -> None:
        """Read the values and optimizer state of `rows` from the files into `slots` of the
        cache's arrays `targets`."""
        weight, state = targets
        self._files.read_weight(rows, weight, slots)
        for optimizer, buffers in state.items():
            self._files.read_state(optimizer, rows, buffers, slots)

    def _settle(self) -> None:
        """Wait for the prefetch in flight, if any. If its read failed, its rows leave the
        cache (no call saw them) and the read's error is raised here."""
        if self._arrival is None:
            return
        job, slots = self._arrival
        self._arrival = None
        try:
            job.result()
        except BaseException:
            self._cache.release(slots)
            raise
        finally:
            self._cache.arriving[slots] = False

    def _make_room(self, count: int) -> None:
        """At least `count` empty slots: the least recently used rows written back and
        evicted, or, when the call needs more rows than the cache holds, a bigger cache."""
        cache = self._cache
        if cache.free >= count:
            return
        victims = cache.victims(count - cache.free)
        self._write_back(victims[cache.dirty[victims]])
        cache.release(victims)
        if cache.free < count:
            self._grow(cache.capacity + count - cache.free)

    def _grow(self, capacity: int) -> None:
        self._cache = self._cache.grown(capacity)
        self._rows = self._enlarged(self._rows, capacity)
        for buffers in self._buffers.values():
            for name, buffer in buffers.items():
                buffers[name] = self._enlarged(buffer, capacity)

    def _enlarged(self, tensor: Tensor, capacity: int) -> Tensor:
        bigger = self._zeros((capacity, *tensor.shape[1:]), tensor.dtype)
        self._host(bigger)[:tensor.shape[0]] = self._host(tensor)
        return bigger

    def _mark_modified(self) -> None:
        weight = self._weight()
        if weight is not None:
            mark_modified(weight)

    def _mark_dirty(self, slots: np.ndarray) -> None:
        self._cache.dirty[slots] = True
        self._view_stale = True

    def _write_back(self, slots: np.ndarray) -> None:
        """Append the rows in `slots` (and their optimizer state) to the redo log, in row
        order; they become clean."""
        self._settle()
        if slots.shape[0] == 0:
            return
        rows = self._cache.row_of[slots]
        order = np.argsort(rows, kind="stable")
        rows, slots = rows[order], slots[order]
        for start in range(0, slots.shape[0], WRITE_CHUNK_ROWS):  # copies of a chunk at a time, not of all
            chunk = slots[start:start + WRITE_CHUNK_ROWS]
            blocks = {WEIGHT: taken(self._host(self._rows), chunk)}
            order = np.arange(chunk.shape[0], dtype=np.int64)
            for optimizer, buffers in self._stateful():
                records = np.empty(chunk.shape[0], self._records[optimizer])
                for name, buffer in buffers.items():
                    copy_rows(self._host(buffer), chunk, records[name], order)
                blocks[optimizer] = records
            self._files.write_rows(rows[start:start + WRITE_CHUNK_ROWS], blocks)
        self._cache.dirty[slots] = False

    def _write_back_dirty(self) -> None:
        """Append every changed cached row to the redo log (the rows stay cached)."""
        self._write_back(np.flatnonzero(self._cache.dirty))

    def _stateful(self) -> list[tuple[str, dict[str, Tensor]]]:
        """The optimizers in use that keep state, with their buffers in the cache."""
        return [(optimizer, buffers) for optimizer, buffers in self._buffers.items() if buffers]

    def _drop_cache(self) -> None:
        """Write back every changed row and empty the cache."""
        self._write_back_dirty()
        self._new_cache(self._cache.capacity)

    def _rule_buffers(self, rule: RowRule) -> dict[str, Tensor]:
        """The cache's arrays of `rule`'s state, made (with its state files) on its first
        step over this table: the cache is emptied and resized to hold the state too."""
        optimizer = type(rule).__name__
        if optimizer in self._buffers:
            return self._buffers[optimizer]
        wide = accumulation_dtype(self.dtype)
        shape = rule.buffer_shape(self.shape)
        record = np.dtype([(name, wide.numpy, shape[1:]) for name in rule.buffer_names()])
        if rule.buffer_names() and self._files.has_state(optimizer):  # (SGD without momentum keeps none)
            self._files.check_state(optimizer, record)
        elif rule.buffer_names():
            self._files.create_state(optimizer, [(name, wide, shape[1:]) for name in rule.buffer_names()])
        self._records[optimizer] = record
        self._write_back_dirty()
        self._buffers[optimizer] = {name: self._zeros((1, *shape[1:]), wide) for name in rule.buffer_names()}
        self._new_cache(self._capacity())
        return self._buffers[optimizer]


def _differs(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Which rows of two arrays of the same float dtype differ in any bit."""
    bits = np.dtype(f"u{before.dtype.itemsize}")
    return (before.view(bits) != after.view(bits)).reshape(before.shape[0], -1).any(axis=1)

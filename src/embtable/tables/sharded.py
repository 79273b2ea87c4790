"""`ShardedTable`: a table whose rows live in shard processes (Ray actors), each shard
holding a range of the rows `Placement` deals it and their optimizer state (`Shard`).

A lookup sends each shard the places of its rows and waits for all of them at once (or
takes the rows a `prefetch` had the last optimizer step bring back); an optimizer step is
sent without waiting (the next call waits for it first). The results are assembled in the
caller, and what follows runs the code every table runs
(`DenseTable` over the rows fetched, with their positions for row numbers), so a lookup, a
bag, a renorm or an optimizer step gives the in-memory table's result bit for bit: every
rule updates each row from that row's values, state and summed gradient alone. Ray stays
behind `RayShards` (`ray_shards.py`), which also restores a shard whose process died.
Calls from several threads take turns (`one_call_at_a_time`): a call uses the table's
scratch arrays (`DistinctRows`), its rows fetched ahead and the replies of its last step.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import weakref
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..backends import Backend, backend_for
from ..core import RowSparseGrad, Tensor, data_of, keep_values, mark_modified, wrap
from ..core.ops.bags import Bags
from ..device import Device, as_device
from ..dtype import DType, accumulation_dtype
from ..errors import InvalidArgumentError
from .base import RowRule, one_call_at_a_time
from .dense import DenseTable
from .placement import Placement
from .ray_shards import RayShards, Sent
from .shard import MemoryShard
from .sharded_checkpoint import SavedShards, finish_writing, shard_files

DEAL_ROWS = 1 << 16  # rows of the table dealt to the shards at a time


class ShardedTable:
    """The rows of a ``[num_rows, dim]`` table of `dtype` over `shards` shard actors, each
    reserving `num_cpus`. Its weight (`weight_of`) is the layer's parameter; reading the
    weight's values gathers every row into the caller (the one operation that costs the
    whole table's memory here)."""

    def __init__(self, shape: tuple[int, int], dtype: DType, shards: int, num_cpus: float) -> None:
        self._calls = threading.RLock()  # held by each call (`one_call_at_a_time`)
        self._placement = Placement(shape[0], shards)
        self._shape = shape
        self._dtype = dtype
        self._cpu: Backend = backend_for(as_device("cpu"))
        self._shards = self._new_shards(num_cpus)
        self._view = np.empty(shape, dtype.numpy)  # the weight's array: filled when read
        self._view_stale = True
        self._weight: Callable[[], Tensor | None] = lambda: None
        self._states: dict[str, dict[str, Any]] = {}  # optimizer name -> the state its shards' buffers are of
        self._last_parts: list[tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]] = []
        self._ahead: _Ahead | None = None  # rows a prefetch is fetching
        self._distinct = DistinctRows(shape[0])

    def _new_shards(self, num_cpus: float) -> RayShards:
        """The shard actors, each holding its rows in memory (zeros until dealt)."""
        return RayShards([(MemoryShard, self._placement.size_of(k), self._shape[1], self._dtype.numpy)
                          for k in range(self.shards)], num_cpus)

    @classmethod
    def weight_of(cls, shape: tuple[int, int], dtype: DType, shards: int, num_cpus: float,
                  rows: Callable[[int, int], np.ndarray]) -> Tensor:
        """A tensor whose values are a new sharded table, its rows ``start:stop`` given by
        `rows` (`DEAL_ROWS` at a time, `start` a multiple of it), dealt to the shards. The
        tensor keeps the storage alive; dropping it ends the shards."""
        storage = cls(shape, dtype, shards, num_cpus)
        with storage._closed_on_failure():
            storage._deal(rows)
        return storage._weight_tensor()

    @one_call_at_a_time
    def close(self) -> None:
        """Drop the shards now, rather than once this storage is collected."""
        self._shards.close()

    @contextlib.contextmanager
    def _closed_on_failure(self) -> Iterator[None]:
        """Close this storage if what runs inside raises: a table that failed to be built
        holds no shard (nor lock) until the error is collected."""
        try:
            yield
        except BaseException:
            self.close()
            raise

    def _weight_tensor(self) -> Tensor:
        """The weight: its values kept by this storage, which it keeps alive."""
        weight = wrap(self._cpu.from_host(self._view), self._cpu)
        keep_values(weight, self)
        self._weight = weakref.ref(weight)
        return weight

    @classmethod
    def weight_from(cls, saved: SavedShards, shards: int, num_cpus: float) -> Tensor:
        """A tensor whose values are the table of the checkpoint `saved`, over `shards`
        shards (any number: each reads the places it holds from the files that hold them)."""
        storage = cls(saved.shape, saved.dtype, shards, num_cpus)
        bounds = storage._placement.bounds
        with storage._closed_on_failure():
            storage._shards.call([(k, "read", (saved.pieces(int(bounds[k]), int(bounds[k + 1])),))
                                  for k in range(shards)])
            storage._shards.snapshot()
        return storage._weight_tensor()

    # --- what it is -------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def num_rows(self) -> int:
        return self._shape[0]

    @property
    def dtype(self) -> DType:
        return self._dtype

    @property
    def device(self) -> Device:
        return self._cpu.device

    @property
    def backend(self) -> Backend:
        return self._cpu

    @property
    def path(self) -> None:
        return None

    @property
    def shards(self) -> int:
        """The number of shards."""
        return self._placement.shards

    @property
    def actors(self) -> list[Any]:
        """The shards' Ray actor handles, in shard order."""
        return list(self._shards.actors)

    # --- lookups ----------------------------------------------------------------------------

    @one_call_at_a_time
    def gather(self, indices: Tensor) -> Tensor:
        _, positions, fetched = self._looked_up(indices)
        return fetched.gather(self._tensor(positions.reshape(indices.shape)))

    @one_call_at_a_time
    def pool(self, indices: Tensor, bags: Bags, weights: Tensor | None, mode: str) -> tuple[Tensor, Tensor | None]:
        rows, positions, fetched = self._looked_up(indices)
        padding = None
        if bags.padding_idx is not None:
            found = np.searchsorted(rows, bags.padding_idx)
            padding = int(found) if found < rows.shape[0] and rows[found] == bags.padding_idx else None
        return fetched.pool(self._tensor(positions), Bags(bags.offsets, padding), weights, mode)

    @one_call_at_a_time
    def prefetch(self, indices: Tensor) -> None:
        """Fetch the rows of `indices` with the next optimizer step: each shard's update
        call then also sends back its rows of them, as they are after the update, and the
        next lookup, if it is of the same indices, takes those replies instead of making a
        round trip of its own. Without a step before that lookup, or after any other change
        of rows (a renorm, a load), it fetches them as usual."""
        ids = self._cpu.to_host(data_of(indices)).reshape(-1).copy()
        rows, positions = self._distinct(ids)
        self._ahead = _Ahead(ids, rows, positions, self._parts(rows),
                             np.empty((rows.shape[0], self._shape[1]), self._dtype.numpy))

    @one_call_at_a_time
    def renorm_rows_(self, indices: Tensor, max_norm: float, norm_type: float) -> None:
        rows = np.unique(self._cpu.to_host(data_of(indices)))
        self._send(rows, lambda places, _: ("renorm", (places, max_norm, norm_type)))
        self._changed()

    # --- updates ----------------------------------------------------------------------------

    def check_writable(self, change: str) -> None:
        pass  # shards in memory may always change

    def check_load(self, device: Device | None, dtype: DType | None) -> None:
        if (device is not None and device != self.device) or (dtype is not None and dtype != self.dtype):
            raise InvalidArgumentError(f"a sharded table stays {self.dtype.name} on {self.device}; got {dtype} on "
                                       f"{device}")

    def resumed_state(self, rule: RowRule) -> dict[str, Any]:
        return {}

    @one_call_at_a_time
    def apply_update(self, rule: RowRule, grad: Tensor | RowSparseGrad, state: dict[str, Any],
                     scalars: Sequence[Any]) -> None:
        if self._states.get(type(rule).__name__) is not state:
            self._hand_over(rule, state)
        portable = rule.portable()
        if isinstance(grad, RowSparseGrad):  # sent, not waited for: the shards update while the caller goes on
            values = self._cpu.to_host(data_of(grad.values))
            ahead = self._ahead
            calls = [(k, "update", (portable, places, values[picked], tuple(scalars),
                                    None if ahead is None else ahead.places_of(k)))
                     for k, places, picked in self._parts(self._cpu.to_host(data_of(grad.indices)))]
            if ahead is not None:  # the shards with rows of it and nothing to update send theirs too
                calls += [(k, "gather", (ahead.places_of(k),)) for k in ahead.shards if k not in {c[0] for c in calls}]
            sent = self._shards.send(calls)
            self._changed()
            if ahead is not None:
                ahead.expect(sent, [k for k, _, _ in calls])
                self._ahead = ahead
        else:  # the dense formula over every row, as in memory (not the lazy row-sparse one)
            values = self._cpu.to_host(data_of(grad))
            self._shards.send([(k, "update", (portable, None, values[self._placement.rows_of(k)], tuple(scalars)))
                               for k in range(self.shards)])
            self._changed()

    @one_call_at_a_time
    def state_for_dict(self, rule: RowRule, state: dict[str, Any]) -> dict[str, Any]:
        """`state` with the shards' buffers of `rule`'s kind, gathered into the caller as
        ``[num_rows, ...]`` tensors (where `state` is the one the shards hold them for)."""
        if self._states.get(type(rule).__name__) is not state:
            return state
        return {**state, **{buffer: self._tensor(values) for buffer, values in self._gathered_state(rule).items()}}

    def _gathered_state(self, rule: RowRule) -> dict[str, np.ndarray]:
        """The shards' buffers of `rule`'s kind that exist, each ``[num_rows, ...]`` in row
        order (zeros for the rows of a shard that has not made it yet, as in memory)."""
        name = type(rule).__name__
        shape, wide = rule.buffer_shape(self.shape), accumulation_dtype(self.dtype).numpy
        gathered: dict[str, np.ndarray] = {}
        for k, buffers in enumerate(self._shards.call([(k, "state_values", (name,)) for k in range(self.shards)])):
            for buffer, values in buffers.items():
                if buffer not in gathered:
                    gathered[buffer] = np.zeros(shape, wide)
                gathered[buffer][self._placement.rows_of(k)] = values
        return gathered

    def _hand_over(self, rule: RowRule, state: dict[str, Any]) -> None:
        """Make `state` (a new optimizer's, or one `load_state_dict` filled) the one the
        shards hold `rule`'s buffers for: the buffers it has, dealt to the shards (and taken
        out of it), the others starting at zeros, as in memory."""
        name = type(rule).__name__
        owner = self._states.get(name)
        if owner is not None:  # the optimizer whose state it was gets its buffers back, as if in memory
            owner.update({buffer: self._tensor(values) for buffer, values in self._gathered_state(rule).items()})
        given = {buffer: self._cpu.to_host(data_of(state[buffer])) for buffer in rule.buffer_names() if buffer in state}
        self._shards.call([(k, "put_state", (name, {buffer: values[self._placement.rows_of(k)]
                                                    for buffer, values in given.items()}))
                           for k in range(self.shards)])
        if given:  # replayed from a fresh snapshot, not from buffers kept in the caller (nothing given: replayed as is)
            self._shards.snapshot()
        for buffer in given:
            del state[buffer]
        self._states[name] = state

    @one_call_at_a_time
    def save(self, folder: str, metadata: dict[str, str]) -> None:
        """Write a checkpoint to `folder`: each shard writes its rows to a new file of its
        own (the folder must be one every shard's machine sees), then the manifest naming
        them replaces the old one."""
        folder = os.path.abspath(folder)  # the shards' processes write it: not relative to here
        os.makedirs(folder, exist_ok=True)
        files = shard_files(self.shards)
        self._shards.call([(k, "save", (os.path.join(folder, name), metadata)) for k, name in enumerate(files)])
        finish_writing(folder, files, self._placement, self._dtype, metadata)

    def commit(self) -> None:
        raise InvalidArgumentError("commit() is for file-backed tables; this sharded table's shards are in memory")

    # --- the whole table --------------------------------------------------------------------

    @one_call_at_a_time
    def values(self) -> Tensor:
        self.bring_up_to_date()
        return wrap(self._cpu.from_host(self._view), self._cpu)

    @one_call_at_a_time
    def load_(self, values: Tensor) -> None:
        self.check_load(values.device, values.dtype)
        host = self._cpu.to_host(data_of(values))
        self._deal(lambda start, stop: host[start:stop])
        self._changed()

    @one_call_at_a_time
    def bring_up_to_date(self) -> None:
        """Make the weight's array hold every shard's rows."""
        if self._view_stale:
            calls = [(k, "values", ()) for k in range(self.shards)]
            for k, rows in enumerate(self._shards.call(calls)):
                self._view[self._placement.rows_of(k)] = rows
            self._view_stale = False

    def refuse_in_place(self, what: str) -> None:
        raise InvalidArgumentError(f"{what} cannot change a sharded table in place: its rows change through "
                                   f"optimizer steps, max_norm renorms and load_state_dict")

    # --- helpers ----------------------------------------------------------------------------

    def _deal(self, rows: Callable[[int, int], np.ndarray]) -> None:
        """Send every shard its rows, `DEAL_ROWS` of the table at a time, then snapshot shards
        in memory (where one that dies is restored from; file shards are restored from
        their commit instead)."""
        for start in range(0, self.num_rows, DEAL_ROWS):
            stop = min(start + DEAL_ROWS, self.num_rows)
            chunk = np.asarray(rows(start, stop))
            parts = [(k, picked, places) for k, (picked, places)
                     in enumerate(self._placement.split(np.arange(start, stop, dtype=np.int64))) if places.shape[0]]
            self._shards.call([(k, "put", (places, chunk[picked])) for k, picked, places in parts],
                              [functools.partial(self._dealt, rows, start, stop, k) for k, _, _ in parts])
        self._shards.snapshot()

    def _dealt(self, rows: Callable[[int, int], np.ndarray], start: int, stop: int, shard: int) -> tuple:
        """What `_deal` sent `shard` for the table's rows ``start:stop``, made again (what a
        restoration replays, rather than keeping every chunk until the snapshot)."""
        picked, places = self._placement.split(np.arange(start, stop, dtype=np.int64))[shard]
        return places, np.asarray(rows(start, stop))[picked]

    def _send(self, rows: np.ndarray, call: Callable[[np.ndarray, np.ndarray], tuple[str, tuple]]
              ) -> tuple[list[np.ndarray], list[Any]]:
        """Send each shard holding some of `rows` (int64, distinct) ``call(places, picked)``
        (its places, ascending, and which of `rows` they are); which of `rows` each reply
        is for, and the replies."""
        parts = self._parts(rows)
        replies = self._shards.call([(k, *call(places, picked)) for k, places, picked in parts])
        return [picked for _, _, picked in parts], replies

    def _looked_up(self, indices: Tensor) -> tuple[np.ndarray, np.ndarray, DenseTable]:
        """The distinct rows of `indices` (ascending), each index's position among them,
        and their values as a table whose row numbers are those positions: the values a
        `prefetch` of the same indices fetched, else fetched now."""
        ids = self._cpu.to_host(data_of(indices)).reshape(-1)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.ids.shape == ids.shape and np.array_equal(ahead.ids, ids):
            self._shards.settle()
            if ahead.complete():
                return ahead.rows, ahead.positions, DenseTable(self._tensor(ahead.values))
        rows, positions = self._distinct(ids)
        return rows, positions, self._fetched(rows)

    def _fetched(self, rows: np.ndarray) -> DenseTable:
        """The values of `rows` (distinct), fetched from their shards, as a table whose row
        numbers are positions in `rows`."""
        fetched = np.empty((rows.shape[0], self._shape[1]), self._dtype.numpy)
        for picked, values in zip(*self._send(rows, lambda places, _: ("gather", (places,)))):
            fetched[picked] = values
        return DenseTable(self._tensor(fetched))

    def _parts(self, rows: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """For each shard holding some of `rows` (int64, distinct): the shard, its places of
        them (ascending) and which of `rows` they are. The last two are remembered (a step
        updates the rows its lookup gathered, maybe with a prefetch between)."""
        for known, parts in self._last_parts:
            if known.shape == rows.shape and np.array_equal(known, rows):
                return parts
        parts = [(k, places, picked) for k, (picked, places) in enumerate(self._placement.split(rows))
                 if places.shape[0]]
        self._last_parts = [self._last_parts[-1], (rows.copy(), parts)] if self._last_parts else [(rows.copy(), parts)]
        return parts

    def _tensor(self, array: np.ndarray) -> Tensor:
        return wrap(self._cpu.from_host(np.ascontiguousarray(array)), self._cpu)

    def _changed(self) -> None:
        """Rows changed: the weight's array and rows fetched ahead are out of date."""
        self._ahead = None
        self._view_stale = True
        weight = self._weight()
        if weight is not None:
            mark_modified(weight)


class _Ahead:
    """The values of the distinct `rows` (ascending) of the flat indices `ids` (`positions`:
    each one's among them), fetched with the optimizer steps after `ShardedTable.prefetch`
    (the last step's replies are the rows' values after it). `parts` are the rows' places
    by shard."""

    def __init__(self, ids: np.ndarray, rows: np.ndarray, positions: np.ndarray,
                 parts: list[tuple[int, np.ndarray, np.ndarray]], values: np.ndarray) -> None:
        self.ids, self.rows, self.positions = ids, rows, positions
        self.values = values
        self._places = {k: (places, picked) for k, places, picked in parts}
        self._sent: Sent | None = None  # the last step's calls
        self._shards: list[int] = []  # whose reply each call is

    @property
    def shards(self) -> list[int]:
        """The shards holding some of the rows."""
        return list(self._places)

    def places_of(self, shard: int) -> np.ndarray:
        """`shard`'s places of the rows, ascending."""
        return self._places[shard][0] if shard in self._places else np.empty(0, np.int64)

    def expect(self, sent: Sent, shards: list[int]) -> None:
        """The replies of `sent` (from `shards`, in order) are each shard's rows, as of now."""
        self._sent, self._shards = sent, shards

    def complete(self) -> bool:
        """Put the replies of the last step into `values`; whether they hold every row (a
        step was expected, and its calls did not fail)."""
        if self._sent is None or self._sent.results is None:
            return False
        for shard, values in zip(self._shards, self._sent.results):
            if shard in self._places:
                self.values[self._places[shard][1]] = values
        return True


class DistinctRows:
    """``distinct(ids)``: the distinct rows of the flat int64 `ids` (each in ``[0,
    num_rows)``), ascending, and each id's position among them, as ``np.unique(ids,
    return_inverse=True)`` gives them. When the table is not much larger than the batch
    (`BITMAP_ROWS_PER_ID`), rows are marked in a bitmap and numbered through a lookup
    array, both kept between calls (a sort of 65536 ids took ~3 ms, this ~0.5)."""

    BITMAP_ROWS_PER_ID = 64

    def __init__(self, num_rows: int) -> None:
        self._num_rows = num_rows
        self._marks: np.ndarray | None = None  # all False between calls
        self._numbers: np.ndarray | None = None

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._num_rows > self.BITMAP_ROWS_PER_ID * max(ids.shape[0], 1):
            rows, positions = np.unique(ids, return_inverse=True)
            return rows.astype(np.int64, copy=False), positions.astype(np.int64, copy=False).reshape(-1)
        if self._marks is None:
            self._marks = np.zeros(self._num_rows, np.bool_)
            self._numbers = np.empty(self._num_rows, np.int64)
        self._marks[ids] = True
        rows = np.flatnonzero(self._marks)
        self._marks[rows] = False
        self._numbers[rows] = np.arange(rows.shape[0], dtype=np.int64)
        return rows.astype(np.int64, copy=False), self._numbers[ids]

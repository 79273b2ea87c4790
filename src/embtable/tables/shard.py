"""`Shard`: one shard of a sharded table — its rows and each optimizer's state of them,
changed only by the calls its table sends: in memory (`MemoryShard`) or in a file-backed
table (`FileShard`). It runs the storage code every table runs (`DenseTable` over its
rows, or `MappedTable`), so an update here is the update an in-memory table makes to the
same rows. `ShardHost` is a shard process: it holds the shards of any number of
tables, by key (a process per shard per table would cost each new table seconds of
process start)."""

from __future__ import annotations

import abc
import gc
import os
import threading
from typing import Any, Sequence

import numpy as np

from .. import checkpoint
from ..backends import backend_for
from ..core import RowSparseGrad, Tensor, data_of, keeper_of, wrap
from ..device import as_device
from ..dtype import DType
from .base import RowRule, TableStorage
from .dense import DenseTable
from .mapped import MappedTable
from .shard_channel import ChannelServer
from .sharded_checkpoint import saved_rows
from .table_files import create_file

CREATE_BLOCK_ROWS = 1 << 16  # zero rows written at a time into a new file shard


class Shard(abc.ABC):
    """The rows of one shard, addressed by place, and each optimizer's state of them: what
    every kind of shard does through its storage (`_table`)."""

    def __init__(self) -> None:
        self._cpu = backend_for(as_device("cpu"))
        self._state: dict[str, dict[str, Any]] = {}  # optimizer name -> its state of these rows

    @abc.abstractmethod
    def _table(self) -> TableStorage:
        """The storage of this shard's rows, row numbers being places."""

    @abc.abstractmethod
    def put(self, places: np.ndarray, rows: np.ndarray) -> None:
        """Set the rows at `places` (distinct) to `rows`."""

    def gather(self, places: np.ndarray) -> np.ndarray:
        """The rows at `places` (int64)."""
        return self._cpu.to_host(data_of(self._table().gather(self._tensor(places))))

    def renorm(self, places: np.ndarray, max_norm: float, norm_type: float) -> None:
        """Rescale the rows at `places` (distinct) whose norm exceeds `max_norm`, as
        `TableStorage.renorm_rows_`."""
        self._table().renorm_rows_(self._tensor(places), max_norm, norm_type)

    def update(self, rule: RowRule, places: np.ndarray | None, gradient: np.ndarray, scalars: Sequence[Any],
               returning: np.ndarray | None = None) -> np.ndarray | None:
        """Apply `rule` with this shard's state of its kind: to the rows at `places`
        (distinct, ascending) from their `gradient` rows, or with ``places=None`` to every
        row from a dense `gradient` in place order (the dense formula, as an in-memory table
        applies a dense gradient); then the rows at `returning`, if given, as `gather`."""
        table = self._table()
        grad = self._tensor(gradient)
        if places is not None:
            grad = RowSparseGrad(self._tensor(places), grad, table.shape)
        table.apply_update(rule, grad, self._state.setdefault(type(rule).__name__, {}), scalars)
        return None if returning is None else self.gather(returning)

    def values(self) -> np.ndarray:
        """Every row, in place order."""
        return self._cpu.to_host(data_of(self._table().values()))

    def save(self, path: str, metadata: dict[str, str]) -> None:
        """Write every row, in place order, as the ``weight`` of a checkpoint file."""
        checkpoint.write(path, {"weight": self.values()}, metadata)

    def read(self, pieces: list[tuple[str, int, int, int]]) -> None:
        """Read rows from checkpoint files: ``(file, first row, count, first place)`` each."""
        for path, start, count, place in pieces:
            self.put(np.arange(place, place + count), saved_rows(path, start, count))

    def _tensor(self, array: np.ndarray) -> Tensor:
        return wrap(self._cpu.from_host(np.ascontiguousarray(array)), self._cpu)


class MemoryShard(Shard):
    """`count` rows of `dim` values of `dtype` (a NumPy dtype) in memory, zeros until `put`;
    its state can be handed in and out, and snapshotted whole."""

    def __init__(self, count: int, dim: int, dtype: np.dtype) -> None:
        super().__init__()
        self._rows = self._tensor(np.zeros((count, dim), dtype))

    def _table(self) -> DenseTable:
        return DenseTable(self._rows)

    def put(self, places: np.ndarray, rows: np.ndarray) -> None:
        self._cpu.to_host(data_of(self._rows))[places] = rows

    def put_state(self, name: str, buffers: dict[str, np.ndarray]) -> None:
        """Make `buffers` (each a value per row, in place order) the optimizer `name`'s
        whole state of these rows; those it lacks start at zeros."""
        self._state[name] = {buffer: self._tensor(np.array(values)) for buffer, values in buffers.items()}

    def state_values(self, name: str) -> dict[str, np.ndarray]:
        """The optimizer `name`'s buffers of these rows, in place order."""
        return {buffer: self._cpu.to_host(data_of(value)) for buffer, value in self._state.get(name, {}).items()}

    def snapshot(self) -> tuple[int, tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]]:
        """Its size in bytes (an acknowledgement to wait for without fetching the rest), and
        every row with every optimizer's state of them (what `restore` takes back)."""
        rows, state = self.values(), {name: self.state_values(name) for name in self._state}
        size = rows.nbytes + sum(values.nbytes for buffers in state.values() for values in buffers.values())
        return size, (rows, state)

    def restore(self, snapshot: tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]) -> None:
        """Become what `snapshot` was taken of."""
        rows, state = snapshot
        self._rows = self._tensor(np.array(rows))
        self._state = {name: {buffer: self._tensor(np.array(value)) for buffer, value in buffers.items()}
                       for name, buffers in state.items()}


class FileShard(Shard):
    """A shard whose rows, and their optimizer state, live in the file-backed table at
    `path` (§11: a `MappedTable` caching about `cache_bytes`): a new one of `count` zero
    rows, or, with `at_commit`, the table there as of that commit of its sharded table.
    It commits with the others of its table (`commit`, then `fold`)."""

    def __init__(self, path: str, count: int, dim: int, dtype: DType, cache_bytes: int | None,
                 at_commit: int | None) -> None:
        super().__init__()
        if at_commit is None:
            create_file(path, (count, dim), dtype, {}, lambda start, stop: np.zeros((stop - start, dim), dtype.numpy),
                        block_rows=CREATE_BLOCK_ROWS, progress=False)
        self._weight = MappedTable.weight_of(path, True, cache_bytes, at_commit)  # keeps its storage open

    def _table(self) -> MappedTable:
        return keeper_of(self._weight)

    def put(self, places: np.ndarray, rows: np.ndarray) -> None:
        self._table().put_rows(places, rows)

    def commit(self, tag: int, keep: int | None) -> None:
        """Make every change durable as commit `tag`, the sharded table's last completed
        commit `keep` kept openable too (its manifest names the one to open)."""
        self._table().commit(tag, keep)

    def fold(self) -> None:
        """Fold the file's redo log in, once the sharded table names the last commit."""
        self._table().fold()


class MissingShard(LookupError):
    """A call for a shard this process does not hold: it was restarted since (or the shard
    was dropped)."""


class ShardHost:
    """The shards placed on one process, by key. Calls come as actor calls of the cluster
    and over the host's `ChannelServer` (at `channel_port`, opened with `channel_token`);
    they run one at a time. Each shard is made for a generation (its table's count of
    restorations), and a call for another generation is refused as for a missing shard:
    a call sent before a restoration must not reach the shard made by it."""

    def __init__(self) -> None:
        self._shards: dict[str, tuple[int, Shard]] = {}
        self._lock = threading.RLock()
        self._server = ChannelServer(lambda key, generation, method, args: self.call(key, generation, method, *args))

    @property
    def channel_port(self) -> int:
        return self._server.port

    @property
    def channel_token(self) -> bytes:
        return self._server.token

    def create(self, key: str, generation: int, kind: type[Shard], *args: Any) -> None:
        """Shard `key` of `generation`, made anew: ``kind(*args)``."""
        with self._lock:
            self._shards.pop(key, None)  # a file shard's files are closed before they are opened again
            gc.collect()
            self._shards[key] = generation, kind(*args)

    def call(self, key: str, generation: int, method: str, *args: Any) -> Any:
        """Shard `key`'s `method` with `args`, if the shard is of `generation`: what it
        returns."""
        with self._lock:
            made, shard = self._shards.get(key, (None, None))
            if made != generation:
                raise MissingShard(f"this process (pid {os.getpid()}) holds no shard {key} of generation "
                                   f"{generation}")
            return getattr(shard, method)(*args)

    def drop(self, key: str) -> None:
        """Forget shard `key` (its table is gone), closing a file shard's files."""
        with self._lock:
            self._shards.pop(key, None)
            gc.collect()

    def keys(self) -> list[str]:
        """The keys of the shards held here."""
        return list(self._shards)

    def pid(self) -> int:
        """This process's id."""
        return os.getpid()

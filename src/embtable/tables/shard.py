"""`Shard`: one shard of a sharded table — its rows and each optimizer's state of them,
changed only by the calls its table sends. It runs the storage code every table runs
(`DenseTable` over its rows), so an update here is the update an in-memory table makes to
the same rows. `ShardHost` is a shard process: it holds the shards of any number of
tables, by key (a process per shard per table would cost each new table seconds of
process start)."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .. import checkpoint
from ..backends import backend_for
from ..core import RowSparseGrad, Tensor, data_of, wrap
from ..device import as_device
from .base import RowRule
from .dense import DenseTable
from .sharded_checkpoint import saved_rows


class Shard:
    """`count` rows of `dim` values of `dtype` (a NumPy dtype), zeros until `put`,
    addressed by place."""

    def __init__(self, count: int, dim: int, dtype: np.dtype) -> None:
        self._cpu = backend_for(as_device("cpu"))
        self._rows = self._tensor(np.zeros((count, dim), dtype))
        self._state: dict[str, dict[str, Any]] = {}  # optimizer name -> its buffers of these rows

    def put(self, places: np.ndarray, rows: np.ndarray) -> None:
        """Set the rows at `places` to `rows`."""
        self._cpu.to_host(data_of(self._rows))[places] = rows

    def gather(self, places: np.ndarray) -> np.ndarray:
        """The rows at `places` (int64)."""
        return self._cpu.to_host(data_of(DenseTable(self._rows).gather(self._tensor(places))))

    def renorm(self, places: np.ndarray, max_norm: float, norm_type: float) -> None:
        """Rescale the rows at `places` (distinct) whose norm exceeds `max_norm`, as
        `TableStorage.renorm_rows_`."""
        DenseTable(self._rows).renorm_rows_(self._tensor(places), max_norm, norm_type)

    def update(self, rule: RowRule, places: np.ndarray | None, gradient: np.ndarray, scalars: Sequence[Any]) -> None:
        """Apply `rule` with this shard's state of its kind: to the rows at `places`
        (distinct, ascending) from their `gradient` rows, or with ``places=None`` to every
        row from a dense `gradient` in place order (the dense formula, as an in-memory table
        applies a dense gradient)."""
        grad = self._tensor(gradient)
        if places is not None:
            grad = RowSparseGrad(self._tensor(places), grad, self._rows.shape)
        DenseTable(self._rows).apply_update(rule, grad, self._state.setdefault(type(rule).__name__, {}), scalars)

    def values(self) -> np.ndarray:
        """Every row, in place order."""
        return self._cpu.to_host(data_of(self._rows))

    def put_state(self, name: str, buffers: dict[str, np.ndarray]) -> None:
        """Make `buffers` (each a value per row, in place order) the optimizer `name`'s
        whole state of these rows; those it lacks start at zeros."""
        self._state[name] = {buffer: self._tensor(np.array(values)) for buffer, values in buffers.items()}

    def state_values(self, name: str) -> dict[str, np.ndarray]:
        """The optimizer `name`'s buffers of these rows, in place order."""
        return {buffer: self._cpu.to_host(data_of(value)) for buffer, value in self._state.get(name, {}).items()}

    def snapshot(self) -> tuple[int, tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]]:
        """The row count (an acknowledgement to wait for without fetching the rest), and
        every row with every optimizer's state of them (what `restore` takes back)."""
        return self._rows.shape[0], (self.values(), {name: self.state_values(name) for name in self._state})

    def restore(self, snapshot: tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]) -> None:
        """Become what `snapshot` was taken of."""
        rows, state = snapshot
        self._rows = self._tensor(np.array(rows))
        self._state = {name: {buffer: self._tensor(np.array(value)) for buffer, value in buffers.items()}
                       for name, buffers in state.items()}

    def save(self, path: str, metadata: dict[str, str]) -> None:
        """Write every row, in place order, as the ``weight`` of a checkpoint file."""
        checkpoint.write(path, {"weight": self.values()}, metadata)

    def read(self, pieces: list[tuple[str, int, int, int]]) -> None:
        """Read rows from checkpoint files: ``(file, first row, count, first place)`` each."""
        for path, start, count, place in pieces:
            self.put(np.arange(place, place + count), saved_rows(path, start, count))

    def _tensor(self, array: np.ndarray) -> Tensor:
        return wrap(self._cpu.from_host(np.ascontiguousarray(array)), self._cpu)


class MissingShard(LookupError):
    """A call for a shard this process does not hold: it was restarted since (or the shard
    was dropped)."""


class ShardHost:
    """The shards placed on one process, by key."""

    def __init__(self) -> None:
        self._shards: dict[str, Shard] = {}

    def create(self, key: str, count: int, dim: int, dtype: np.dtype) -> None:
        """A new shard `key` of `count` zero rows."""
        self._shards[key] = Shard(count, dim, dtype)

    def call(self, key: str, method: str, *args: Any) -> Any:
        """Shard `key`'s `method` with `args`: what it returns."""
        if key not in self._shards:
            raise MissingShard(f"this process (pid {os.getpid()}) holds no shard {key}")
        return getattr(self._shards[key], method)(*args)

    def drop(self, key: str) -> None:
        """Forget shard `key` (its table is gone)."""
        self._shards.pop(key, None)

    def keys(self) -> list[str]:
        """The keys of the shards held here."""
        return list(self._shards)

    def pid(self) -> int:
        """This process's id."""
        return os.getpid()

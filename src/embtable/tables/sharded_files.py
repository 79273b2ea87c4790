"""`ShardedFileTable`: a sharded table whose shards are file-backed tables (§11), one per
shard in a folder, committed together.

The folder holds each shard's table (``rows-<k>.safetensors`` with its ``.state`` folder,
written by the shard's process) and ``commit.json``, naming the last commit of them all:
its number, the optimizers' step counts, the layer's checkpoint metadata and how the rows
were placed. A commit takes three steps: every shard commits its table tagged with the new
number, keeping its previous commit openable; then ``commit.json`` is replaced (a rename:
the commit point); then the shards may fold their redo logs into their files. A shard is
always restored from, and `open` opens every shard at, the commit ``commit.json`` names, so
a process that dies at any moment, the caller or a shard, leaves exactly the last
completed commit. Between commits the caller keeps every change it sent (`RayShards`), to
restore a shard whose process died: what that costs is every step's gradients since the
last commit. The caller holds the folder's ``lock`` while the table is open, so a second
table over the same folder is refused before it changes any file.
"""

from __future__ import annotations

import json
import os
import weakref
from typing import Any, Callable

import numpy as np

from .. import checkpoint
from ..core import Tensor
from ..dtype import DType
from ..errors import InvalidArgumentError, SerializationError
from .base import RowRule, one_call_at_a_time
from .durable import replace_file, try_lock
from .placement import Placement
from .ray_shards import RayShards
from .shard import FileShard
from .sharded import ShardedTable
from .table_files import WEIGHT, TableFiles, checked_steps

COMMIT = "commit.json"
LOCK = "lock"  # held by the process a table in the folder is open in
FORMAT = "embtable.sharded-files/1"


class ShardedFileTable(ShardedTable):
    """The rows of a ``[num_rows, dim]`` table of `dtype` in the folder `folder`, over
    `shards` file-backed shards, each caching about `cache_bytes` of rows and optimizer
    state in its process; as of the commit `committed` describes (None: a new table, its
    files made empty)."""

    def __init__(self, folder: str, shape: tuple[int, int], dtype: DType, shards: int, num_cpus: float,
                 cache_bytes: int | None, metadata: dict[str, str], committed: dict[str, Any] | None = None) -> None:
        self._folder = folder
        self._cache_bytes = cache_bytes
        self._metadata = metadata
        self._commit: int | None = None if committed is None else committed["commit"]
        self._steps: dict[str, int] = {} if committed is None else dict(committed["steps"])
        self._lock = _locked(folder)
        weakref.finalize(self, self._lock.close)
        try:
            if committed is None and os.path.exists(os.path.join(folder, COMMIT)):
                os.unlink(os.path.join(folder, COMMIT))  # a creation cut short leaves no table, not a mix of two
            super().__init__(shape, dtype, shards, num_cpus)
        except BaseException:
            self._lock.close()
            raise

    @classmethod
    def create(cls, folder: str, shape: tuple[int, int], dtype: DType, shards: int, num_cpus: float,
               cache_bytes: int | None, metadata: dict[str, str], rows: Callable[[int, int], np.ndarray]) -> Tensor:
        """A tensor whose values are a new table in `folder` (made if missing; a table there
        before is replaced), its rows ``start:stop`` given by `rows`, dealt to the shards and
        committed."""
        folder = os.path.abspath(folder)  # the shards' processes write it: not relative to here
        os.makedirs(folder, exist_ok=True)
        storage = cls(folder, shape, dtype, shards, num_cpus, cache_bytes, metadata)
        with storage._closed_on_failure():
            storage._deal(rows)
            storage.commit()
        return storage._weight_tensor()

    @classmethod
    def open(cls, folder: str, committed: dict[str, Any], num_cpus: float, cache_bytes: int | None) -> Tensor:
        """A tensor whose values are the table in `folder` as of its last commit, which
        `committed` describes (`read_commit`)."""
        shape = (committed["num_rows"], committed["dim"])
        storage = cls(os.path.abspath(folder), shape, DType(committed["dtype"]), committed["shards"], num_cpus,
                      cache_bytes, committed["metadata"], committed)
        return storage._weight_tensor()

    def _new_shards(self, num_cpus: float) -> RayShards:
        return RayShards(self._makers(self._commit), num_cpus, snapshots=False)

    def close(self) -> None:
        """Drop the shards (closing their files) and let the folder go."""
        super().close()
        self._lock.close()

    def _makers(self, commit: int | None) -> list[tuple]:
        """What makes each shard: its table as of `commit` (None: new, of zeros)."""
        return [(FileShard, shard_file(self._folder, k), self._placement.size_of(k), self._shape[1], self._dtype,
                 self._cache_bytes, commit)
                for k in range(self.shards)]

    @property
    def path(self) -> str:
        """The folder of the shards' files."""
        return self._folder

    @one_call_at_a_time
    def commit(self) -> None:
        """Make every change so far durable on every shard together (see the module's note)."""
        tag = (self._commit or 0) + 1
        self._shards.call([(k, "commit", (tag, self._commit)) for k in range(self.shards)])
        steps = {**self._steps, **{name: int(state.get("step", self._steps.get(name, 0)))
                                   for name, state in self._states.items()}}
        write_commit(self._folder, {"format": FORMAT, "commit": tag, "steps": steps, "metadata": self._metadata,
                                    "num_rows": self.num_rows, "dim": self._shape[1], "dtype": self._dtype.name,
                                    "shards": self.shards, "multiplier": self._placement.multiplier})
        self._commit, self._steps = tag, steps
        self._shards.remade(self._makers(tag))
        self._shards.call([(k, "fold", ()) for k in range(self.shards)])

    def resumed_state(self, rule: RowRule) -> dict[str, Any]:
        """The step count of `rule`'s kind at the last commit: its buffers are the shards'
        files', so a new optimizer continues from them, as over a file-backed table."""
        name = type(rule).__name__
        return {"step": self._steps[name]} if name in self._steps else {}

    def state_for_dict(self, rule: RowRule, state: dict[str, Any]) -> dict[str, Any]:
        """`state` as it is, the step count alone: the buffers stay in the shards' files."""
        return state

    def _hand_over(self, rule: RowRule, state: dict[str, Any]) -> None:
        """Make `state` the one the shards' buffers of `rule`'s kind are of; buffers in it
        (from `load_state_dict`) are refused, as by a file-backed table."""
        kept = [name for name in rule.buffer_names() if name in state]
        if kept:
            raise InvalidArgumentError(f"the optimizer state of the file-backed sharded table {self._folder!r} is "
                                       f"kept in its shards' files; got buffers {kept} in memory (from "
                                       f"load_state_dict)")
        self._states[type(rule).__name__] = state


def _locked(folder: str) -> Any:
    """The folder's lock file, locked: one table at a time changes the folder's files (the
    shards' own locks are taken in their processes, after a new table has replaced files)."""
    lock = open(os.path.join(folder, LOCK), "ab")
    if not try_lock(lock):
        lock.close()
        raise InvalidArgumentError(f"the sharded table in {folder!r} is open for writing elsewhere: close it first "
                                   f"(one table at a time)")
    return lock


def shard_file(folder: str, shard: int) -> str:
    """The file-backed table of `shard` in `folder`."""
    return os.path.join(folder, f"rows-{shard:05d}.safetensors")


def is_sharded_files(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder holding a file-backed sharded table."""
    return os.path.isfile(os.path.join(os.fspath(path), COMMIT))


def committed_weight(folder: str | os.PathLike) -> tuple[np.ndarray, dict[str, str]]:
    """Every row of the table in `folder` as of its last commit, read into this process from
    each shard's files (as `Layer.load` reads a file-backed table), and the layer's
    checkpoint metadata."""
    folder = os.fspath(folder)
    committed = read_commit(folder)
    placement = Placement(committed["num_rows"], committed["shards"])
    for k in range(placement.shards):  # the files bound the table's size: checked before it is allocated
        _check_shard(folder, k, (placement.size_of(k), committed["dim"]), committed["dtype"])
    weight = np.empty((committed["num_rows"], committed["dim"]), DType(committed["dtype"]).numpy)
    for k in range(placement.shards):
        path = shard_file(folder, k)
        files = TableFiles(path, writable=False, at_commit=committed["commit"])
        try:
            rows = np.array(checkpoint.read(path)[0][WEIGHT])
            files.overlay(rows)
        finally:
            files.close()
        weight[placement.rows_of(k)] = rows
    return weight, committed["metadata"]


def _check_shard(folder: str, shard: int, shape: tuple[int, int], dtype: str) -> None:
    """`SerializationError` unless `shard`'s table file in `folder` holds a weight of
    `shape` and `dtype` (its name), as the folder's commit says."""
    path = shard_file(folder, shard)
    try:
        weight = checkpoint.layout(path)[0].get(WEIGHT)
    except FileNotFoundError:
        raise SerializationError(f"{folder!r} has no file {os.path.basename(path)!r} for shard {shard}") from None
    if weight is None or weight.shape != shape or weight.dtype.name != dtype:
        raise SerializationError(f"{path!r} does not hold shard {shard} of the table {folder!r} names: {dtype} "
                                 f"{list(shape)}")


def write_commit(folder: str, manifest: dict[str, Any]) -> None:
    """Replace the folder's ``commit.json`` by `manifest`, durably (the commit point)."""
    replace_file(os.path.join(folder, COMMIT), json.dumps(manifest).encode())


def read_commit(folder: str) -> dict[str, Any]:
    """The folder's ``commit.json``, checked; `SerializationError` if it is not one."""
    name = os.path.join(folder, COMMIT)
    try:
        with open(name) as file:
            manifest = checkpoint.parse_json(file.read())
        if manifest["format"] != FORMAT:
            raise ValueError(f"format {manifest['format']!r}, expected {FORMAT!r}")
        for key in ("commit", "num_rows", "dim", "shards"):
            if not isinstance(manifest[key], int) or manifest[key] < 1:
                raise ValueError(f"{key} {manifest[key]!r}")
        DType(manifest["dtype"])
        manifest["steps"] = checked_steps(manifest["steps"])
        manifest["metadata"] = {str(key): str(value) for key, value in dict(manifest["metadata"]).items()}
        if Placement(manifest["num_rows"], manifest["shards"]).multiplier != manifest["multiplier"]:
            raise ValueError(f"rows placed with multiplier {manifest['multiplier']}, which this version does not "
                             f"use for {manifest['num_rows']} rows")
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise SerializationError(f"{name!r} is not the commit of an embtable sharded table in files "
                                 f"({error})") from None
    return manifest

"""`ShardedEmbedding` and `ShardedEmbeddingBag`: `Embedding` and `EmbeddingBag` whose
table is a `ShardedTable`. The lookup semantics are their local classes', unchanged: only
where the rows live differs."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..dtype import DTypeLike, as_float_dtype
from ..errors import InvalidArgumentError
from ..nn import Embedding, EmbeddingBag
from ..nn.layer import checkpoint_config, checkpoint_metadata
from ..nn.table import TableLayer, cache_bytes_of, seed_rows
from ..rng import table_seed
from ..tables import ShardedTable, storage_of
from ..tables.sharded_checkpoint import SavedShards
from ..tables.sharded_files import ShardedFileTable, read_commit
from ..validate import positive_int

DEFAULT_NUM_CPUS = 0.25  # of a CPU reserved by each shard actor: several shards run on two cores


class ShardedLayer(TableLayer):
    """What the sharded layers add to their local class (`local_type`): building the table
    in shards, their count and actors, and moving to and from one process."""

    local_type: type[TableLayer] = TableLayer

    def _build_sharded(self, num_embeddings: int, embedding_dim: int, shards: int, dtype: DTypeLike,
                       num_cpus: float, path: str | os.PathLike | None, cache_bytes: int | None,
                       **options: Any) -> None:
        """A new sharded table with the seed's initialisation (the same rows as the local
        class's for the same seed) and `options`, in memory or (`path`) in files; always a
        row-sparse gradient."""
        rows, dim, checked = self.options_type.sized(num_embeddings, embedding_dim, sparse=True, **options)
        resolved = as_float_dtype(dtype)
        count, cpus, cache = positive_int("shards", shards), _cpus(num_cpus), cache_bytes_of(cache_bytes)
        if path is None and cache is not None:
            raise InvalidArgumentError(f"cache_bytes={cache} is for file-backed shards (path=...); shards in memory "
                                       f"hold every row")
        seed = table_seed()

        def initial(start: int, stop: int) -> np.ndarray:
            return seed_rows(seed, start, stop, dim, checked.padding_idx, resolved)

        if path is None:
            weight = ShardedTable.weight_of((rows, dim), resolved, count, cpus, initial)
        else:
            config = {"num_embeddings": rows, "embedding_dim": dim, **checked.non_defaults(), "dtype": resolved.name}
            metadata = checkpoint_metadata(self.local_type.__name__, config, [])
            weight = ShardedFileTable.create(os.fspath(path), (rows, dim), resolved, count, cpus,
                                             cache, metadata, initial)
        weight.requires_grad = True
        self._adopt(weight, checked)

    @property
    def shards(self) -> int:
        """The number of shards."""
        return storage_of(self.weight).shards

    @property
    def shard_actors(self) -> list[Any]:
        """The shards' Ray actor handles, in shard order."""
        return storage_of(self.weight).actors

    def save(self, path: str | os.PathLike) -> None:
        """Write the table to the folder `path`: one checkpoint file per shard, written by
        the shard's process (so `path` must be on storage every shard's machine sees), and a
        manifest, written last. `load` reads it back at any shard count, and the local
        class's `load` as one table."""
        frozen = [] if self.weight.requires_grad else ["weight"]
        metadata = checkpoint_metadata(self.local_type.__name__, self.config(), frozen)
        storage_of(self.weight).save(os.fspath(path), metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, shards: int = 2, *, num_cpus: float = DEFAULT_NUM_CPUS) -> ShardedLayer:
        """The table saved in the folder `path` (by `save`, at any shard count) over
        `shards` shards, every option restored; `SerializationError` if it is not such a
        checkpoint of the local class."""
        saved = SavedShards(path)
        config, frozen = checkpoint_config(cls.local_type.__name__, saved.metadata, path)
        _, _, checked = cls._saved_options(config, path, sparse=True)
        weight = ShardedTable.weight_from(saved, positive_int("shards", shards), _cpus(num_cpus))
        weight.requires_grad = "weight" not in frozen
        layer = cls.__new__(cls)
        layer._adopt(weight, checked)
        return layer

    @classmethod
    def open(cls, path: str | os.PathLike, *, num_cpus: float = DEFAULT_NUM_CPUS,
             cache_bytes: int | None = None) -> ShardedLayer:
        """The file-backed sharded table in the folder `path` (made with ``path=``) as of its
        last completed `commit`, over the shards it was made with, every option restored,
        open for writing; `SerializationError` if the folder holds no such table."""
        committed = read_commit(os.fspath(path))
        config, frozen = checkpoint_config(cls.local_type.__name__, committed["metadata"], path)
        _, _, checked = cls._saved_options(config, path, sparse=True)
        weight = ShardedFileTable.open(os.fspath(path), committed, _cpus(num_cpus), cache_bytes_of(cache_bytes))
        weight.requires_grad = "weight" not in frozen
        layer = cls.__new__(cls)
        layer._adopt(weight, checked)
        return layer

    def to_local(self) -> TableLayer:
        """The same table in this process: an instance of the local class with every
        option and a copy of every row."""
        frozen = not self.weight.requires_grad
        return self.local_type._pretrained(self.weight.numpy(), frozen, **self._non_default_options())

    @classmethod
    def from_local(cls, layer: TableLayer, shards: int = 2, *, num_cpus: float = DEFAULT_NUM_CPUS) -> ShardedLayer:
        """`layer` (an instance of the local class) sharded: its rows and every option (its
        gradient row-sparse)."""
        if not isinstance(layer, cls.local_type):
            raise InvalidArgumentError(f"{cls.__name__}.from_local takes a {cls.local_type.__name__}, got "
                                       f"{type(layer).__name__}")
        values = layer.weight.numpy()
        sharded = cls.__new__(cls)
        options = {**layer._non_default_options(), "sparse": True}
        checked = cls.options_type.checked(layer.num_embeddings, **options)
        weight = ShardedTable.weight_of(values.shape, layer.weight.dtype, positive_int("shards", shards),
                                        _cpus(num_cpus), lambda start, stop: values[start:stop])
        weight.requires_grad = layer.weight.requires_grad
        sharded._adopt(weight, checked)
        return sharded


def _cpus(value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise InvalidArgumentError(f"num_cpus must be a number > 0, got {value!r}")
    return float(value)


class ShardedEmbedding(ShardedLayer, Embedding):
    """An `Embedding` whose rows, and their optimizer state, live in `shards` Ray actors
    (SPEC §12): lookups, gradients and optimizer steps are bit-identical to an `Embedding`
    built with the same seed and options and ``sparse=True``, for any number of shards.

    Args: those of `Embedding` (but `device`: the table is on the CPU, and `sparse`: always
    True), and
        shards: how many actors hold the rows (>= 1, at most `num_embeddings`).
        path: None for shards in memory; else a folder (made if missing, a table there
            replaced) where each shard keeps its rows and optimizer state as a file-backed
            table (SPEC §11), written by the shard's process (so on storage its machine
            sees); `commit()` makes every change durable on all shards together, and
            `open(path)` reopens the table as of the last commit.
        num_cpus: the fraction of a CPU each shard actor reserves on the Ray cluster.
        cache_bytes: for file-backed shards, about how much of its rows and optimizer
            state each shard holds in memory (default `DEFAULT_CACHE_BYTES`).
    """

    local_type = Embedding

    def __init__(self, num_embeddings: int, embedding_dim: int, shards: int = 2, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 dtype: DTypeLike = None, *, max_norm_mode: str = "renorm", path: str | os.PathLike | None = None,
                 num_cpus: float = DEFAULT_NUM_CPUS, cache_bytes: int | None = None) -> None:
        self._build_sharded(num_embeddings, embedding_dim, shards, dtype, num_cpus, path, cache_bytes,
                            padding_idx=padding_idx,
                            max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq,
                            max_norm_mode=max_norm_mode)


class ShardedEmbeddingBag(ShardedLayer, EmbeddingBag):
    """An `EmbeddingBag` whose rows live in `shards` Ray actors, as `ShardedEmbedding`:
    every mode, offsets, per-sample weights and padding as `EmbeddingBag`, bit for bit."""

    local_type = EmbeddingBag

    def __init__(self, num_embeddings: int, embedding_dim: int, shards: int = 2, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                 include_last_offset: bool = False, padding_idx: int | None = None, dtype: DTypeLike = None, *,
                 max_norm_mode: str = "renorm", path: str | os.PathLike | None = None,
                 num_cpus: float = DEFAULT_NUM_CPUS, cache_bytes: int | None = None) -> None:
        self._build_sharded(num_embeddings, embedding_dim, shards, dtype, num_cpus, path, cache_bytes,
                            max_norm=max_norm,
                            norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, mode=mode,
                            include_last_offset=include_last_offset, padding_idx=padding_idx,
                            max_norm_mode=max_norm_mode)

"""`ShardedEmbedding` and `ShardedEmbeddingBag`: `Embedding` and `EmbeddingBag` whose
table is a `ShardedTable`. The lookup semantics are their local classes', unchanged: only
where the rows live differs."""

from __future__ import annotations

import os
from typing import Any

from ..dtype import DTypeLike, as_float_dtype
from ..errors import InvalidArgumentError
from ..nn import Embedding, EmbeddingBag
from ..nn.layer import checkpoint_config, checkpoint_metadata
from ..nn.table import TableLayer, seed_rows
from ..rng import table_seed
from ..tables import ShardedTable, storage_of
from ..tables.sharded_checkpoint import SavedShards
from ..validate import positive_int

DEFAULT_NUM_CPUS = 0.25  # of a CPU reserved by each shard actor: several shards run on two cores


class ShardedLayer(TableLayer):
    """What the sharded layers add to their local class (`local_type`): building the table
    in shards, their count and actors, and moving to and from one process."""

    local_type: type[TableLayer] = TableLayer

    def _build_sharded(self, num_embeddings: int, embedding_dim: int, shards: int, dtype: DTypeLike,
                       num_cpus: float, path: Any, **options: Any) -> None:
        """A new sharded table with the seed's initialisation (the same rows as the local
        class's for the same seed) and `options`; always a row-sparse gradient."""
        if path is not None:
            raise InvalidArgumentError("file-backed shards (path=...) are not available yet; leave path=None")
        rows = positive_int("num_embeddings", num_embeddings)
        dim = positive_int("embedding_dim", embedding_dim)
        checked = self.options_type.checked(rows, sparse=True, **options)
        resolved = as_float_dtype(dtype)
        seed = table_seed()
        weight = ShardedTable.weight_of((rows, dim), resolved, positive_int("shards", shards), _cpus(num_cpus),
                                        lambda start, stop: seed_rows(seed, start, stop, dim, checked.padding_idx,
                                                                      resolved))
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
        path: reserved for file-backed shards (not available yet: None).
        num_cpus: the fraction of a CPU each shard actor reserves on the Ray cluster.
    """

    local_type = Embedding

    def __init__(self, num_embeddings: int, embedding_dim: int, shards: int = 2, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 dtype: DTypeLike = None, *, max_norm_mode: str = "renorm", path: Any = None,
                 num_cpus: float = DEFAULT_NUM_CPUS) -> None:
        self._build_sharded(num_embeddings, embedding_dim, shards, dtype, num_cpus, path, padding_idx=padding_idx,
                            max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq,
                            max_norm_mode=max_norm_mode)


class ShardedEmbeddingBag(ShardedLayer, EmbeddingBag):
    """An `EmbeddingBag` whose rows live in `shards` Ray actors, as `ShardedEmbedding`:
    every mode, offsets, per-sample weights and padding as `EmbeddingBag`, bit for bit."""

    local_type = EmbeddingBag

    def __init__(self, num_embeddings: int, embedding_dim: int, shards: int = 2, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                 include_last_offset: bool = False, padding_idx: int | None = None, dtype: DTypeLike = None, *,
                 max_norm_mode: str = "renorm", path: Any = None, num_cpus: float = DEFAULT_NUM_CPUS) -> None:
        self._build_sharded(num_embeddings, embedding_dim, shards, dtype, num_cpus, path, max_norm=max_norm,
                            norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, mode=mode,
                            include_last_offset=include_last_offset, padding_idx=padding_idx,
                            max_norm_mode=max_norm_mode)

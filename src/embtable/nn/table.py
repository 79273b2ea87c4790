"""`TableLayer`: what `Embedding` and `EmbeddingBag` share — one trainable table, its
options, the seed's initialisation, pretrained weights, properties, config and repr."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import checkpoint
from ..core import Tensor
from ..device import DeviceLike
from ..dtype import DType, DTypeLike, as_float_dtype
from ..errors import DTypeError, SerializationError, ShapeError
from ..memory import aligned_zeros
from ..rng import CHUNK_ROWS, chunk_states, table_seed
from ..tables import MappedTable, TableFiles, create_file, state_folder, storage_of
from ..tables.sharded_checkpoint import SavedShards, is_sharded_checkpoint
from ..tables.sharded_files import committed_weight, is_sharded_files
from ..validate import integer
from .init import parameter, placement
from .layer import Layer, checkpoint_config, checkpoint_metadata
from .lookup import prefetch_rows
from .options import EmbeddingOptions, OptionProperties
from .quantized import QuantizedTableLayer


class TableLayer(Layer, OptionProperties):
    """Base of the layers that hold one table, ``weight`` ``[num_embeddings, embedding_dim]``.
    Subclasses name their options' class in `options_type` and build through `_build` (new
    tables) or `_pretrained` (given weights)."""

    options_type: type[EmbeddingOptions] = EmbeddingOptions
    quantized_type: type[QuantizedTableLayer]  # what `to_quantized` makes

    def _build(self, num_embeddings: int, embedding_dim: int, device: DeviceLike, dtype: DTypeLike,
               **options: Any) -> None:
        """A new table with the seed's initialisation (N(0, 1) / sqrt(dim), padding row zero)."""
        rows, dim, checked = self.options_type.sized(num_embeddings, embedding_dim, **options)
        device, dtype = placement(device, dtype)
        self._adopt(parameter(seed_rows(table_seed(), 0, rows, dim, checked.padding_idx, dtype), device), checked)

    @classmethod
    def _pretrained(cls, weights: Any, freeze: bool, device: DeviceLike = None, dtype: DTypeLike = None,
                    **options: Any) -> TableLayer:
        """A layer holding a copy of `weights` (2-D, float; ``dtype=None`` keeps theirs), the
        padding row left as it is, frozen when `freeze`."""
        table = Tensor(weights, dtype=dtype, device=device)
        if not table.dtype.is_float:
            raise DTypeError(f"pretrained weights must be float (F16, BF16, F32, F64), got {table.dtype.name}")
        if table.ndim != 2 or 0 in table.shape:
            raise ShapeError(f"pretrained weights must be 2-D [num_embeddings >= 1, "
                             f"embedding_dim >= 1], got shape {table.shape}")
        checked = cls.options_type.checked(table.shape[0], **options)
        table.requires_grad = not freeze
        layer = cls.__new__(cls)
        layer._adopt(table, checked)
        return layer

    @classmethod
    def _create(cls, path: str | os.PathLike, num_embeddings: int, embedding_dim: int, dtype: DTypeLike,
                cache_bytes: int | None, *, progress: bool = True, **options: Any) -> TableLayer:
        """A new file-backed table at `path` with the seed's initialisation, written in
        chunks (a progress bar on a terminal, unless not `progress` or ``TQDM_DISABLE``
        is set) and committed, opened for writing."""
        rows, dim, checked = cls.options_type.sized(num_embeddings, embedding_dim, **options)
        resolved = as_float_dtype(dtype)
        cache = cache_bytes_of(cache_bytes)
        config = {"num_embeddings": rows, "embedding_dim": dim, **checked.non_defaults(), "dtype": resolved.name}
        seed = table_seed()
        create_file(os.fspath(path), (rows, dim), resolved, checkpoint_metadata(cls.__name__, config, []),
                    lambda start, stop: seed_rows(seed, start, stop, dim, checked.padding_idx, resolved),
                    block_rows=16 * CHUNK_ROWS, progress=progress)
        return cls.open(path, writable=True, cache_bytes=cache)

    @classmethod
    def open(cls, path: str | os.PathLike, writable: bool = False, *, cache_bytes: int | None = None) -> TableLayer:
        """The table in the checkpoint at `path` (any file `save` or `create` wrote), its rows
        left in the file: read as lookups need them, at most about `cache_bytes` of rows
        and optimizer state held in memory (default `DEFAULT_CACHE_BYTES`, 1 GiB). Every
        option is restored. With `writable`, optimizer steps and renorms change the table
        (`commit` makes them durable; the file must have no other writable handle), and its
        optimizer state is kept beside it; otherwise those changes raise
        `InvalidArgumentError`. A file that is not an embtable table raises
        `SerializationError`; one left by a process that died before committing opens as
        its last commit."""
        path = os.fspath(path)
        cache = cache_bytes_of(cache_bytes)
        stored, metadata = checkpoint.layout(path)
        config, frozen = checkpoint_config(cls.__name__, metadata, path)
        shape, dtype, checked = cls._saved_options(config, path)
        cls._saved_dtype(repr(path), {name: (v.dtype, v.shape) for name, v in stored.items()}, shape, dtype)
        weight = MappedTable.weight_of(path, writable, cache)
        weight.requires_grad = "weight" not in frozen
        layer = cls.__new__(cls)
        layer._adopt(weight, checked)
        return layer

    @classmethod
    def _saved_options(cls, config: dict[str, Any], path: str | os.PathLike,
                       **overrides: Any) -> tuple[tuple[int, int], DType | None, EmbeddingOptions]:
        """The shape, dtype (None where the config names none, as in a file another
        library wrote: the stored weight's then) and checked options (with `overrides`) a
        checkpoint's `config` describes; `SerializationError` naming `path` if they do not
        build this class."""
        try:
            return cls._options_of(config, **overrides)
        except (KeyError, TypeError, ValueError) as error:
            raise SerializationError(f"{os.fspath(path)!r} does not rebuild a {cls.__name__}: {error}") from None

    @classmethod
    def _options_of(cls, config: dict[str, Any], **overrides: Any
                    ) -> tuple[tuple[int, int], DType | None, EmbeddingOptions]:
        """`_saved_options` raising the `KeyError`, `TypeError` or `ValueError` of a config
        that does not build this class."""
        config = dict(config)
        dtype = config.pop("dtype", None)
        rows, dim, checked = cls.options_type.sized(config.pop("num_embeddings"), config.pop("embedding_dim"),
                                                    **{**config, **overrides})
        return (rows, dim), None if dtype is None else as_float_dtype(dtype), checked

    @classmethod
    def _saved_dtype(cls, where: str, found: dict[str, tuple[DType, tuple[int, ...]]], shape: tuple[int, int],
                     dtype: DType | None) -> DType:
        """The dtype of the checkpoint at `where` whose tensors are `found` (each one's dtype
        and shape), which must be one float tensor 'weight' of `shape` and of `dtype` (where
        the config names it); else `SerializationError`."""
        expected = dtype or found.get("weight", (None,))[0]
        if set(found) != {"weight"} or found["weight"] != (expected, shape) or not expected.is_float:
            raise SerializationError(f"{where}: an {cls.__name__} table needs exactly one tensor 'weight' of shape "
                                     f"{list(shape)} and a float dtype ({expected or 'any'}), found "
                                     f"{ {k: (t.name, list(s)) for k, (t, s) in found.items()} }")
        return expected

    @classmethod
    def _read_checkpoint(cls, path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
        """The checkpoint's arrays, with a file-backed table's weight as of its last commit
        (the checkpoint with the rows its redo log holds over it), or a sharded table's
        folder (saved, or file-backed as of its last commit) read as one table: `load`
        rebuilds a layer written by `save`, `create`, `commit` or a sharded table's `save`
        or `commit` into memory."""
        if is_sharded_checkpoint(path):
            saved = SavedShards(path)
            return {"weight": saved.weight()}, saved.metadata
        if is_sharded_files(path):
            weight, metadata = committed_weight(path)
            return {"weight": weight}, metadata
        tensors, metadata = super()._read_checkpoint(path)
        if "weight" in tensors and os.path.isdir(state_folder(os.fspath(path))):
            files = TableFiles(os.fspath(path), writable=False)
            try:
                tensors["weight"] = np.array(tensors["weight"])
                files.overlay(tensors["weight"])
            finally:
                files.close()
        return tensors, metadata

    @property
    def path(self) -> str | None:
        """The file this table's rows live in (`create`, `open`), or None for a table in memory."""
        return storage_of(self.weight).path

    def commit(self) -> None:
        """Make every change to this file-backed table so far durable: its rows and the
        optimizer state kept with them, together; if the process dies at any moment, the
        next `open` gives exactly the state of the last completed commit. An in-memory
        table raises `InvalidArgumentError` (`save` writes it to a file)."""
        storage_of(self.weight).commit()

    def prefetch(self, indices: Any) -> None:
        """Start reading the rows of `indices` (any shape; integers in
        ``[0, num_embeddings)``, else the lookup's error before anything starts) and their
        optimizer state into a file-backed table's cache on a background thread, and
        return: call it with the next batch's ids before the current step, so that the
        next batch's reads from disk overlap this step's work. Results are bit-identical
        with or without it; a table in memory does nothing. The rows prefetched count as
        the cache's most recently used. A sharded table fetches them with the next
        optimizer step's calls (their values after it), so a lookup of the same indices
        after that step makes no round trip of its own."""
        prefetch_rows(self.weight, indices)

    def _non_default_options(self) -> dict[str, Any]:
        """The options that differ from their defaults, as keyword arguments of `_build`."""
        return self._options.non_defaults()

    def _adopt(self, weight: Tensor, options: EmbeddingOptions) -> None:
        self.register_parameter("weight", weight)
        self._options = options

    @property
    def options(self) -> EmbeddingOptions:
        """Every option of the layer at once, validated (`EmbeddingOptions`, or `BagOptions`
        for a pooled layer): what functions that look rows up on the layer's behalf read."""
        return self._options

    @property
    def num_embeddings(self) -> int:
        """The number of rows."""
        return self.weight.shape[0]

    @property
    def embedding_dim(self) -> int:
        """The length of each vector."""
        return self.weight.shape[1]

    @property
    def scale_grad_by_freq(self) -> bool:
        """Whether gradients are divided by each index's count in the batch."""
        return self._options.scale_grad_by_freq

    @property
    def sparse(self) -> bool:
        """Whether the weight gets a `RowSparseGrad`."""
        return self._options.sparse

    @property
    def max_norm_mode(self) -> str:
        """"renorm" (rescale the weight) or "clip" (scale only the output)."""
        return self._options.max_norm_mode

    def as_linear(self, x: Any) -> Tensor:
        """``x @ weight.T`` for `x` of shape ``[..., embedding_dim]`` (the table's dtype):
        ``[..., num_embeddings]``, the output layer of a language model that shares the
        input table. Its gradient flows into the same `weight`, every row (the padding row
        too, as ``x @ weight.T`` does in PyTorch); added to a sparse table's lookup
        gradients it makes ``weight.grad`` one dense tensor."""
        x = x if isinstance(x, Tensor) else Tensor(x, device=self.weight.device)
        if x.ndim == 0 or x.shape[-1] != self.embedding_dim:
            raise ShapeError(f"as_linear needs x of shape [..., {self.embedding_dim}], got {x.shape}")
        if x.dtype != self.weight.dtype:
            raise DTypeError(f"as_linear needs x of the table's dtype {self.weight.dtype.name}, got {x.dtype.name}")
        return x @ self.weight.T

    def to_quantized(self, bits: int = 8, group_size: int | None = None) -> QuantizedTableLayer:
        """This table for serving, its rows stored as `bits`-bit codes (8 or 4, two a byte)
        with a float32 scale and offset per group of `group_size` consecutive columns (None:
        per row; it must divide `embedding_dim`): a `QuantizedEmbedding` (or
        `QuantizedEmbeddingBag`) that looks up as this layer over its `dequantize()`, with
        `padding_idx`, `max_norm` (applied to the rows before quantizing), `norm_type` and a
        bag's `mode` and `include_last_offset`. This layer is left as it is. Other `bits`, a
        `group_size` that does not divide `embedding_dim`, or non-finite rows raise
        `InvalidArgumentError`."""
        return self.quantized_type.from_float(self, bits, group_size)

    def config(self) -> dict[str, Any]:
        """The size, the non-default options and the dtype: what `load` rebuilds from."""
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                **self._non_default_options(), "dtype": self.weight.dtype.name}

    @classmethod
    def _from_checkpoint(cls, config: dict[str, Any], tensors: dict[str, Any]) -> TableLayer:
        """The layer of a checkpoint's `config` and arrays, checked as `open` checks a file:
        the options, and one float tensor 'weight' of the config's shape and dtype."""
        shape, dtype, checked = cls._options_of(config)
        dtype = cls._saved_dtype("the checkpoint", {name: (DType.from_numpy(array.dtype), tuple(array.shape))
                                                     for name, array in tensors.items()}, shape, dtype)
        return cls._pretrained(tensors["weight"], False, dtype=dtype, **checked.non_defaults())

    def extra_repr(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self._options.non_defaults().items())
        return f"{self.num_embeddings}, {self.embedding_dim}{options}"


def cache_bytes_of(value: int | None) -> int | None:
    """A file-backed table's `cache_bytes` argument, checked (None: the default)."""
    return None if value is None else integer("cache_bytes", value, 0)


def seed_rows(seed: int, start: int, stop: int, dim: int, padding_idx: int | None, dtype: DType) -> np.ndarray:
    """Rows ``start:stop`` (`start` a multiple of `rng.CHUNK_ROWS`) of the initial table of
    `seed`: N(0, 1) samples (`kernels/cpu/normals.py`, a stream per chunk of rows) scaled
    by 1/sqrt(dim), padding row zeroed, as a host array of `dtype` whose rows start on cache
    lines. The same rows whatever the range drawn."""
    from ..kernels.cpu.normals import fill_normal_rows  # numba: imported on first use

    draw_dtype = np.dtype(np.float64 if dtype is DType.F64 else np.float32)
    drawn = aligned_zeros((stop - start, dim), draw_dtype)  # ordinary pages: see memory.aligned_zeros
    chunks = chunk_states(seed, start // CHUNK_ROWS, -(-(stop - start) // CHUNK_ROWS))

    def draw(chunk: int) -> None:
        fill_normal_rows(drawn[chunk * CHUNK_ROWS:(chunk + 1) * CHUNK_ROWS], chunks[chunk], 1.0 / math.sqrt(dim))

    if len(chunks) <= 1:  # a small table: no threads to start
        for chunk in range(len(chunks)):
            draw(chunk)
    else:
        with ThreadPoolExecutor(min(len(chunks), os.cpu_count() or 1)) as pool:
            list(pool.map(draw, range(len(chunks))))
    table = drawn
    if dtype.numpy != draw_dtype:
        table = aligned_zeros((stop - start, dim), dtype.numpy)
        np.copyto(table, drawn, casting="unsafe")
    if padding_idx is not None and start <= padding_idx < stop:
        table[padding_idx - start] = 0
    return table

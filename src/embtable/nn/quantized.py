"""`QuantizedEmbedding` and `QuantizedEmbeddingBag`: a table's rows stored as 8- or 4-bit
codes with a float32 scale and offset per group of columns, for serving. Made by a float
layer's `to_quantized`; they look up and pool as the float layer over `dequantize()`,
each value dequantized where it is read, and they have no parameters: they do not train.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import Tensor
from ..core.ops.bags import bags_of
from ..core.ops.rows import checked_indices
from ..device import DeviceLike
from ..dtype import DType, DTypeLike, as_float_dtype
from ..errors import SerializationError
from ..tables import storage_of
from ..tables.quantized import QuantizedTable, checked_layout, row_bytes
from .init import placement
from .layer import Layer
from .lookup import TABLE_NAME, bag_starts, checked_sample_weights
from .options import BagOptions, BagProperties, EmbeddingOptions, OptionProperties


class QuantizedTableLayer(Layer, OptionProperties):
    """What `QuantizedEmbedding` and `QuantizedEmbeddingBag` share: the buffer ``rows`` (U8
    ``[num_embeddings, row bytes]``: each row's codes, then each group's float32 scale and
    offset), the layout and the options. The constructor makes a table of zeros (what
    `load` fills); `from_float` quantizes a float layer."""

    options_type: type[EmbeddingOptions] = EmbeddingOptions

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int = 8, group_size: int | None = None,
                 device: DeviceLike = None, dtype: DTypeLike = None, **options: Any) -> None:
        rows, dim, bits, group, checked = self._checked(num_embeddings, embedding_dim, bits, group_size, options)
        device, dtype = placement(device, dtype)
        zeros = QuantizedTable(Tensor(np.zeros((rows, row_bytes(dim, bits, group)), np.uint8), device=device), bits,
                               dim, group)
        self._adopt(zeros, None if group_size is None else group, dtype, checked)

    @classmethod
    def _checked(cls, num_embeddings: Any, embedding_dim: Any, bits: Any, group_size: Any,
                 options: dict[str, Any]) -> tuple[int, int, int, int, EmbeddingOptions]:
        """The constructor's arguments validated: the rows, the width, the bits, the group
        (the width when `group_size` is None) and the options."""
        rows, dim, checked = cls.options_type.sized(num_embeddings, embedding_dim, **options)
        bits, group = checked_layout(dim, bits, group_size)
        return rows, dim, bits, group, checked

    @classmethod
    def _from_checkpoint(cls, config: dict[str, Any], tensors: dict[str, Any]) -> QuantizedTableLayer:
        """The layer of a checkpoint's `config` and arrays, all checked before anything is
        built (a config claiming 10**12 rows allocates nothing): one tensor 'rows', U8 of
        the layout the config gives, its scales and offsets as `to_quantized` makes them."""
        config = dict(config)
        dtype = as_float_dtype(config.pop("dtype"))
        group_size = config.pop("group_size")
        rows, dim, bits, group, checked = cls._checked(config.pop("num_embeddings"), config.pop("embedding_dim"),
                                                       config.pop("bits"), group_size, config)
        shape = (rows, row_bytes(dim, bits, group))
        found = {name: (DType.from_numpy(array.dtype), tuple(array.shape)) for name, array in tensors.items()}
        if found != {"rows": (DType.U8, shape)}:
            raise SerializationError(f"a {cls.__name__} checkpoint needs exactly one tensor 'rows' U8 {list(shape)}, "
                                     f"found { {k: (t.name, list(s)) for k, (t, s) in found.items()} }")
        table = QuantizedTable.stored(Tensor(tensors["rows"]), bits, dim, group)
        layer = cls.__new__(cls)
        layer._adopt(table, None if group_size is None else group, dtype, checked)
        return layer

    @classmethod
    def from_float(cls, layer: Any, bits: int = 8, group_size: int | None = None) -> QuantizedTableLayer:
        """`layer` (an `Embedding` or `EmbeddingBag`) quantized, its `max_norm` applied to
        the rows first (the layer itself is left as it is); see `Embedding.to_quantized`."""
        bits, group = checked_layout(layer.embedding_dim, bits, group_size)
        checked = cls.options_type.checked(layer.num_embeddings,
                                           **{name: getattr(layer, name) for name in cls._option_names()})
        values = storage_of(layer.weight).values()  # a file-backed or sharded table's rows read whole
        table = QuantizedTable.quantized(values, bits, group, checked.max_norm, checked.norm_type)
        quantized = cls.__new__(cls)
        quantized._adopt(table, None if group_size is None else group, layer.weight.dtype, checked)
        return quantized

    @classmethod
    def from_packed_rows(cls, packed: Any, *, dtype: DTypeLike = None, **options: Any) -> QuantizedTableLayer:
        """The 8-bit row-wise table in `packed` (U8 ``[num_embeddings, embedding_dim + 8]``,
        any array: a ``torch.Tensor`` too), laid out as PyTorch's
        ``torch.ops.quantized.embedding_bag_byte_prepack`` writes it: each row its codes,
        then its float32 scale and offset. Lookups then equal
        ``embedding_bag_byte_unpack(packed)``'s rows, and `to_packed_rows` gives `packed`
        back byte for byte. `options` are the constructor's (`padding_idx`, a bag's `mode`,
        ...); `dtype` is the lookups' (default: the default dtype)."""
        table = QuantizedTable.from_packed_rows(packed if isinstance(packed, Tensor) else Tensor(packed))
        checked = cls.options_type.checked(table.num_rows, **options)
        layer = cls.__new__(cls)
        layer._adopt(table, None, as_float_dtype(dtype), checked)
        return layer

    def to_packed_rows(self) -> Tensor:
        """This table as PyTorch's 8-bit row-wise layout (see `from_packed_rows`): U8
        ``[num_embeddings, embedding_dim + 8]``, for ``torch.ops.quantized.embedding_bag_byte_*``
        (``torch.from_numpy(q.to_packed_rows().numpy())``). Only 8-bit tables with a scale and
        offset per row have it (`InvalidArgumentError` otherwise)."""
        return self._table().packed_rows()

    @classmethod
    def _option_names(cls) -> set[str]:
        return {"padding_idx", "max_norm", "norm_type"}

    def _adopt(self, table: QuantizedTable, group_size: int | None, dtype: DType, options: EmbeddingOptions) -> None:
        self.register_buffer("rows", table.packed)
        self._bits, self._group_size, self._dim, self._group = table.bits, group_size, table.dim, table.group
        self._dtype = dtype
        self._options = options

    def _table(self) -> QuantizedTable:
        return QuantizedTable(self.rows, self._bits, self._dim, self._group)

    @property
    def bits(self) -> int:
        """Bits per code: 8 or 4."""
        return self._bits

    @property
    def group_size(self) -> int | None:
        """Columns sharing a scale and offset; None when a whole row does."""
        return self._group_size

    @property
    def num_embeddings(self) -> int:
        return self.rows.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self._dim

    @property
    def dtype(self) -> DType:
        """The dtype of lookups and of `dequantize()`: the source layer's."""
        return self._dtype

    @property
    def nbytes(self) -> int:
        """The bytes of the stored rows: ``num_embeddings * (codes + 8 * groups_per_row)``,
        the codes taking ``ceil(embedding_dim * bits / 8)`` bytes padded to a multiple of 4
        (``embedding_dim + 8`` a row for 8-bit row-wise tables of a width divisible by 4)."""
        return self._table().nbytes

    def dequantize(self) -> Tensor:
        """The table the lookups read, ``[num_embeddings, embedding_dim]`` of `dtype`."""
        return self._table().dequantized(self._dtype)

    def _outputs_to(self, dtype: DType) -> None:
        """``to(dtype=...)`` makes `dtype` the lookups' dtype (the stored rows stay as they are)."""
        self._dtype = dtype

    def config(self) -> dict[str, Any]:
        """The size, the layout, the non-default options and the dtype: what `load` rebuilds
        from."""
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim, "bits": self.bits,
                "group_size": self.group_size, **self._options.non_defaults(), "dtype": self._dtype.name}

    def extra_repr(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self._options.non_defaults().items())
        return f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}, group_size={self.group_size}{options}"


class QuantizedEmbedding(QuantizedTableLayer):
    """A quantized `Embedding` for serving: ``q(indices)`` returns the dequantized rows of
    `indices` (integers of any shape in ``[0, num_embeddings)``), ``[*indices.shape,
    embedding_dim]`` of the source layer's dtype, exactly ``q.dequantize()[indices]``.

    Each group of `group_size` consecutive columns of a row (the whole row when None)
    stores a float32 scale and offset and `bits`-bit codes (asymmetric min/max: the offset
    is the group's minimum, the scale its range over ``2**bits - 1``), so every value is
    within half a step of the original, up to float32 rounding; a zero row (the padding
    row) is exact zeros. `max_norm` was applied to the rows when quantizing, and is not
    applied again. Build one with `Embedding.to_quantized`; the constructor makes a table
    of zeros for `load` to fill.
    """

    def forward(self, indices: Any) -> Tensor:
        table = self._table()
        return table.gather(checked_indices(indices, self.num_embeddings, table.backend, TABLE_NAME), self._dtype)


class QuantizedEmbeddingBag(QuantizedTableLayer, BagProperties):
    """A quantized `EmbeddingBag` for serving: ``q(indices, offsets=None,
    per_sample_weights=None)`` pools each bag as the float layer does over `dequantize()`
    (every mode, per-sample weights, padding left out, 2-D bags or 1-D indices with
    offsets), up to summation order: sums run in float32 (float64 for a float64 table),
    each value dequantized where it is read, with no ``[positions, dim]`` intermediate.
    The layout is `QuantizedEmbedding`'s."""

    options_type = BagOptions

    @classmethod
    def _option_names(cls) -> set[str]:
        return {*super()._option_names(), "mode", "include_last_offset"}

    def forward(self, indices: Any, offsets: Any = None, per_sample_weights: Any = None) -> Tensor:
        table = self._table()
        index = checked_indices(indices, self.num_embeddings, table.backend, TABLE_NAME)
        starts = bag_starts(index, offsets, self._options.include_last_offset)
        weights = checked_sample_weights(per_sample_weights, index, self.rows.device, self._dtype)
        bags = bags_of(starts, table.backend, self._options.padding_idx)
        return table.pool(index.reshape(-1), bags, weights, self._options.mode, self._dtype)

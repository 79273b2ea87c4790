"""`EmbeddingBag`: pooled lookups, one vector per bag of indices."""

from __future__ import annotations

import os
from typing import Any

from ..core import Tensor
from ..device import DeviceLike
from ..dtype import DTypeLike
from .lookup import bag_lookup
from .options import BagOptions, BagProperties
from .quantized import QuantizedEmbeddingBag
from .table import TableLayer


class EmbeddingBag(TableLayer, BagProperties):
    """A table whose lookups pool each bag of indices into one vector, as
    ``torch.nn.EmbeddingBag``: the items a user clicked, the words of a title.

    ``bag(indices, offsets=None, per_sample_weights=None)`` returns ``[num_bags,
    embedding_dim]``. Bags are the rows of 2-D `indices` (`offsets` must then be None), or
    the slices ``indices[offsets[b]:offsets[b + 1]]`` of 1-D `indices` (the last bag runs
    to the end; with `include_last_offset` `offsets` has one entry more than there are
    bags, as in CSR, and ids after its last entry belong to no bag). ``offsets[0]`` is 0
    and offsets never decrease nor pass the end.

    Each looked-up row is first multiplied by its `per_sample_weights` entry (a tensor of
    the indices' shape and the table's dtype) when given, then each bag reduces by `mode`:
    ``"sum"``, ``"mean"`` (over the entries counted) or ``"max"`` (element-wise; the
    gradient goes to the earliest position holding the maximum). Positions whose index is
    `padding_idx` are left out of their bag entirely; an empty bag, or one of padding only,
    is a zero row. Unlike PyTorch, `per_sample_weights` work with every mode, and
    ``sparse=True`` and `scale_grad_by_freq` with ``"max"`` too.

    The other arguments, the initialisation, gradients (padding, frequency scaling over
    the whole `indices` of a call, sparse), ``max_norm`` (applied before weighting and
    reducing; a renorm includes the padding row when it is looked up, as in PyTorch) and
    checkpoints are those of `Embedding`, which documents them.
    """

    options_type = BagOptions
    quantized_type = QuantizedEmbeddingBag

    def __init__(self, num_embeddings: int, embedding_dim: int, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                 sparse: bool = False, include_last_offset: bool = False, padding_idx: int | None = None,
                 device: DeviceLike = None, dtype: DTypeLike = None, *, max_norm_mode: str = "renorm") -> None:
        self._build(num_embeddings, embedding_dim, device, dtype, max_norm=max_norm, norm_type=norm_type,
                    scale_grad_by_freq=scale_grad_by_freq, mode=mode, sparse=sparse,
                    include_last_offset=include_last_offset, padding_idx=padding_idx, max_norm_mode=max_norm_mode)

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                        sparse: bool = False, include_last_offset: bool = False, padding_idx: int | None = None,
                        *, device: DeviceLike = None, dtype: DTypeLike = None,
                        max_norm_mode: str = "renorm") -> EmbeddingBag:
        """A table holding a copy of `embeddings`, as `Embedding.from_pretrained`."""
        return cls._pretrained(embeddings, freeze, device, dtype, max_norm=max_norm, norm_type=norm_type,
                               scale_grad_by_freq=scale_grad_by_freq, mode=mode, sparse=sparse,
                               include_last_offset=include_last_offset, padding_idx=padding_idx,
                               max_norm_mode=max_norm_mode)

    @classmethod
    def create(cls, path: str | os.PathLike, num_embeddings: int, embedding_dim: int, *,
               max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
               mode: str = "mean", sparse: bool = True, include_last_offset: bool = False,
               padding_idx: int | None = None, dtype: DTypeLike = None, max_norm_mode: str = "renorm",
               cache_bytes: int | None = None, progress: bool = True) -> EmbeddingBag:
        """A new file-backed table at `path`, as `Embedding.create` (row-sparse gradients by
        default, a progress bar unless not `progress`)."""
        return cls._create(path, num_embeddings, embedding_dim, dtype, cache_bytes, progress=progress,
                           max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, mode=mode,
                           sparse=sparse, include_last_offset=include_last_offset, padding_idx=padding_idx,
                           max_norm_mode=max_norm_mode)

    def forward(self, indices: Any, offsets: Any = None, per_sample_weights: Any = None) -> Tensor:
        """Each bag's pooled vector: ``[num_bags, embedding_dim]``."""
        return bag_lookup(self.weight, indices, offsets, per_sample_weights, self._options)

"""`Embedding`: a table of vectors looked up by integer index."""

from __future__ import annotations

import os
from typing import Any

from ..core import Tensor
from ..device import DeviceLike
from ..dtype import DTypeLike
from .lookup import lookup
from .quantized import QuantizedEmbedding
from .table import TableLayer


class Embedding(TableLayer):
    """A lookup table that maps integer indices to dense vectors.

    ``emb(indices)`` returns ``weight[indices]``: shape ``[*indices.shape, embedding_dim]``.

    Args:
        num_embeddings: number of rows (the vocabulary size), an int >= 1.
        embedding_dim: length of each vector, an int >= 1.
        padding_idx: a row that is initialised to zeros and receives no gradient, so it stays
            fixed while training. May be negative (``-1`` is the last row); the
            `padding_idx` property returns the normalised value.
        max_norm: if given (> 0), every returned row has a `norm_type`-norm of at most this.
            With ``max_norm_mode="renorm"`` (PyTorch's behaviour) each distinct looked-up row
            that is longer is rescaled *in the weight itself*, in train and eval mode alike and
            under ``no_grad``, by ``max_norm / (norm + 1e-7)``. With ``"clip"`` the weight is
            never modified: only the returned rows are scaled (and the gradient will flow
            through that scaling).
        norm_type: the p of the p-norm for `max_norm`, > 0; ``float("inf")`` is the max-norm.
        scale_grad_by_freq: scale each index's gradient by the inverse of its frequency in
            the batch.
        device: where the weight lives (a `Device`, ``"cuda:0"``, or None for the default).
        dtype: the weight's float dtype (F16, BF16, F32, F64; None for the default).
        sparse: give the weight a row-sparse gradient.
        max_norm_mode: ``"renorm"`` or ``"clip"``, see `max_norm`.

    The weight starts as N(0, 1) samples scaled by ``1/sqrt(embedding_dim)``, with the
    `padding_idx` row set to zeros; `embtable.manual_seed` makes it reproducible.
    """

    quantized_type = QuantizedEmbedding

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, device: DeviceLike = None,
                 dtype: DTypeLike = None, *, sparse: bool = False,
                 max_norm_mode: str = "renorm") -> None:
        self._build(num_embeddings, embedding_dim, device, dtype, padding_idx=padding_idx, max_norm=max_norm,
                    norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse,
                    max_norm_mode=max_norm_mode)

    @classmethod
    def new(cls, num_embeddings: int, embedding_dim: int) -> Embedding:
        """The seed's ``Embedding::new``: a table with every option at its default."""
        return cls(num_embeddings, embedding_dim)

    @classmethod
    def new_with_spec(cls, num_embeddings: int, embedding_dim: int, padding_idx: int | None,
                      max_norm: float | None, norm_type: float, scale_grad_by_freq: bool,
                      device: DeviceLike, dtype: DTypeLike) -> Embedding:
        """The seed's ``Embedding::new_with_spec``: all eight arguments, in its order."""
        return cls(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                   scale_grad_by_freq, device, dtype)

    @classmethod
    def from_pretrained(cls, weights: Any, freeze: bool = True, padding_idx: int | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0,
                        scale_grad_by_freq: bool = False, *, sparse: bool = False,
                        device: DeviceLike = None, dtype: DTypeLike = None,
                        max_norm_mode: str = "renorm") -> Embedding:
        """A table holding a copy of `weights` (2-D: ``[num_embeddings, embedding_dim]``).

        ``dtype=None`` keeps the weights' dtype (which must be a float one), ``device=None``
        means the default device. The padding row is *not* zeroed. ``freeze=True`` makes
        ``weight.requires_grad`` False.
        """
        return cls._pretrained(weights, freeze, device, dtype, padding_idx=padding_idx, max_norm=max_norm,
                               norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse,
                               max_norm_mode=max_norm_mode)

    @classmethod
    def create(cls, path: str | os.PathLike, num_embeddings: int, embedding_dim: int,
               padding_idx: int | None = None, max_norm: float | None = None, norm_type: float = 2.0,
               scale_grad_by_freq: bool = False, dtype: DTypeLike = None, *, sparse: bool = True,
               max_norm_mode: str = "renorm", cache_bytes: int | None = None) -> Embedding:
        """A new table in the file `path` (a checkpoint `Layer.load` also reads, replacing
        any file there), larger than memory if need be: initialised as a new `Embedding`
        (the same rows for the same seed), written in chunks, committed, and opened for
        writing as `open` does. Gradients are row-sparse by default (a dense gradient of a
        huge table would not fit in memory)."""
        return cls._create(path, num_embeddings, embedding_dim, dtype, cache_bytes, padding_idx=padding_idx,
                           max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq,
                           sparse=sparse, max_norm_mode=max_norm_mode)

    def forward(self, indices: Any) -> Tensor:
        """The rows of `indices` (integers of any dtype and shape, each in
        ``[0, num_embeddings)``): a tensor of shape ``[*indices.shape, embedding_dim]``."""
        return lookup(self.weight, indices, self._options)

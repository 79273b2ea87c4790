"""`Embedding`: a table of vectors looked up by integer index."""

from __future__ import annotations

import os
from typing import Any

from ..core import Tensor
from ..device import DeviceLike
from ..dtype import DTypeLike
from .lookup import lookup
from .nearest import most_similar
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
               max_norm_mode: str = "renorm", cache_bytes: int | None = None, progress: bool = True) -> Embedding:
        """A new table in the file `path` (a checkpoint `Layer.load` also reads, replacing
        any file there), larger than memory if need be: initialised as a new `Embedding`
        (the same rows for the same seed), written in chunks, committed, and opened for
        writing as `open` does. Gradients are row-sparse by default (a dense gradient of a
        huge table would not fit in memory). `progress=False` (or ``TQDM_DISABLE=1``) hides the
        progress bar shown on a terminal while the rows are written."""
        return cls._create(path, num_embeddings, embedding_dim, dtype, cache_bytes, progress=progress,
                           padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                           scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, max_norm_mode=max_norm_mode)

    def forward(self, indices: Any) -> Tensor:
        """The rows of `indices` (integers of any dtype and shape, each in
        ``[0, num_embeddings)``): a tensor of shape ``[*indices.shape, embedding_dim]``."""
        return lookup(self.weight, indices, self._options)

    def most_similar(self, query: Any, k: int = 10, *, metric: str = "cosine") -> tuple[Tensor, Tensor]:
        """The `k` rows most similar to each query, best first: ``(indices, scores)``.

        Args:
            query: one of
                - a row index (an int, or a 0-d integer array or tensor): results ``[k]``;
                - row indices (a list, or a 1-D integer array or tensor, maybe empty):
                  results ``[Q, k]``, one line per index;
                - a vector (float, ``[embedding_dim]``): results ``[k]``;
                - vectors (float, ``[Q, embedding_dim]``): results ``[Q, k]``.
                Integers always mean row indices and floats vectors (pass ``[1.0, 2.0]``,
                not ``[1, 2]``, for a vector). Vectors of any float dtype are converted to
                the table's. A query given as an index never returns its own row (other
                rows equal to it are returned).
            k: how many rows per query, an int from 1 to the number of rows a query can
                return: ``num_embeddings``, less the padding row (when there is one) and,
                for an index query, its own row. Otherwise `InvalidArgumentError` naming
                `k` and that number (as ``torch.topk`` refuses a `k` beyond the size).
            metric: ``"cosine"`` (cosine similarity: the inner product over both norms; a
                zero row, or a zero query vector, has cosine 0 with everything) or
                ``"dot"`` (the inner product).

        Returns:
            ``indices`` (I64) and ``scores`` (the table's dtype), each ``[k]`` or ``[Q, k]``,
            on the table's device, without gradients: per query, the rows with the
            highest scores, highest first, ties broken by the lower row index first; a
            NaN score ranks below every number. The padding row is never returned.

        Exact, not approximate: every row is scored, a chunk of rows at a time with one
        matrix product per chunk (float32 for F16/BF16 tables, whose scores are then
        rounded), so no ``[Q, num_embeddings]`` matrix is ever held. A file-backed table's
        rows are read from its files a chunk at a time (through its cache). The weight's
        rows are scored as stored: `max_norm` is not applied (it does not change a
        cosine) and nothing is changed. On a table in memory it is safe to call from several
        threads at once (each call has its own scratch and only reads the table).

        Raises:
            IndexOutOfRangeError: an index query outside ``[0, num_embeddings)``.
            ShapeError: query vectors whose last dimension is not `embedding_dim`, or
                indices of more than one dimension.
            DTypeError: a query that is neither integers nor floats (bools, say).
            InvalidArgumentError: a bad `k`, or a `metric` other than the two above.
        """
        return most_similar(self.weight, self.padding_idx, query, k, metric)

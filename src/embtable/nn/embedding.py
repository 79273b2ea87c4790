"""`Embedding`: a table of vectors looked up by integer index."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core import Tensor
from ..device import DeviceLike
from ..dtype import DType, DTypeLike
from ..errors import DTypeError, SerializationError, ShapeError
from ..rng import generator
from ..validate import positive_int
from .init import parameter, placement
from .layer import Layer
from .lookup import lookup
from .options import EmbeddingOptions


class Embedding(Layer):
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

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, device: DeviceLike = None,
                 dtype: DTypeLike = None, *, sparse: bool = False,
                 max_norm_mode: str = "renorm") -> None:
        rows = positive_int("num_embeddings", num_embeddings)
        dim = positive_int("embedding_dim", embedding_dim)
        options = EmbeddingOptions.checked(rows, padding_idx, max_norm, norm_type,
                                           scale_grad_by_freq, sparse, max_norm_mode)
        device, dtype = placement(device, dtype)
        self._adopt(parameter(_seed_initialisation(rows, dim, options.padding_idx, dtype), device), options)

    def _adopt(self, weight: Tensor, options: EmbeddingOptions) -> None:
        self.register_parameter("weight", weight)
        self._options = options

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
        table = Tensor(weights, dtype=dtype, device=device)
        if not table.dtype.is_float:
            raise DTypeError(f"pretrained weights must be float (F16, BF16, F32, F64), got {table.dtype.name}")
        if table.ndim != 2 or 0 in table.shape:
            raise ShapeError(f"pretrained weights must be 2-D [num_embeddings >= 1, "
                             f"embedding_dim >= 1], got shape {table.shape}")
        options = EmbeddingOptions.checked(table.shape[0], padding_idx, max_norm, norm_type,
                                           scale_grad_by_freq, sparse, max_norm_mode)
        table.requires_grad = not freeze
        layer = cls.__new__(cls)
        layer._adopt(table, options)
        return layer

    def forward(self, indices: Any) -> Tensor:
        """The rows of `indices` (integers of any dtype and shape, each in
        ``[0, num_embeddings)``): a tensor of shape ``[*indices.shape, embedding_dim]``."""
        return lookup(self.weight, indices, self._options)

    @property
    def num_embeddings(self) -> int:
        """The number of rows."""
        return self.weight.shape[0]

    @property
    def embedding_dim(self) -> int:
        """The length of each vector."""
        return self.weight.shape[1]

    @property
    def padding_idx(self) -> int | None:
        """The row that gets no gradient (normalised to >= 0), or None."""
        return self._options.padding_idx

    @property
    def max_norm(self) -> float | None:
        """The largest norm a returned row may have, or None."""
        return self._options.max_norm

    @property
    def norm_type(self) -> float:
        """The p of the p-norm used with `max_norm`."""
        return self._options.norm_type

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

    def config(self) -> dict[str, Any]:
        """The size, the non-default options and the dtype: what `load` rebuilds from."""
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                **self._options.non_defaults(), "dtype": self.weight.dtype.name}

    @classmethod
    def _from_checkpoint(cls, config: dict[str, Any], tensors: dict[str, Any]) -> Embedding:
        config = dict(config)
        shape = (config.pop("num_embeddings"), config.pop("embedding_dim"))
        if set(tensors) != {"weight"} or tuple(tensors["weight"].shape) != shape:
            raise SerializationError(f"an Embedding checkpoint needs exactly one tensor 'weight' "
                                     f"of shape {shape}, found "
                                     f"{ {k: tuple(v.shape) for k, v in tensors.items()} }")
        return cls.from_pretrained(tensors["weight"], freeze=False, **config)

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self._options.non_defaults().items())
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{options})"


def _seed_initialisation(rows: int, dim: int, padding_idx: int | None, dtype: DType) -> np.ndarray:
    """N(0, 1) samples scaled by 1/sqrt(dim), padding row zeroed, as a host array of `dtype`."""
    draw_dtype = np.float64 if dtype is DType.F64 else np.float32
    table = generator().standard_normal((rows, dim), dtype=draw_dtype)
    table *= 1.0 / math.sqrt(dim)
    table = table.astype(dtype.numpy, copy=False)
    if padding_idx is not None:
        table[padding_idx] = 0
    return table

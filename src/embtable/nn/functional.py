"""Layer semantics and losses as functions over given tensors."""

from __future__ import annotations

from typing import Any


from ..core import Tensor
from ..core.ops.elementwise import relu
from ..core.ops.losses import binary_cross_entropy_with_logits, cross_entropy, log_softmax, mse_loss, softmax
from ..core.arguments import float_tensor_argument
from ..errors import DTypeError, ShapeError
from ..rng import generator
from ..validate import probability
from .embedding import Embedding
from .lookup import bag_lookup, lookup
from .options import BagOptions, EmbeddingOptions
from .pairs import embedding_dot as _embedding_dot

__all__ = ["binary_cross_entropy_with_logits", "cross_entropy", "dropout", "embedding", "embedding_bag",
           "embedding_dot", "linear",
           "log_softmax", "mse_loss", "relu", "softmax"]


def embedding(indices: Any, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False,
              max_norm_mode: str = "renorm") -> Tensor:
    """``weight[indices]`` with the options of `embtable.nn.Embedding`, which documents them.

    Like ``torch.nn.functional.embedding``, this never zeroes the `padding_idx` row (it only
    keeps gradient away from it); with ``max_norm_mode="renorm"`` it rescales long rows of
    `weight` in place.
    """
    float_tensor_argument("weight", weight, ndim=2, arrays=False)
    options = EmbeddingOptions.checked(weight.shape[0], padding_idx=padding_idx, max_norm=max_norm,
                                       norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse,
                                       max_norm_mode=max_norm_mode)
    return lookup(weight, indices, options)


def embedding_bag(indices: Any, weight: Tensor, offsets: Any = None, max_norm: float | None = None,
                  norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Any = None, include_last_offset: bool = False,
                  padding_idx: int | None = None, max_norm_mode: str = "renorm") -> Tensor:
    """Each bag of `indices` pooled from `weight`, with the options of
    `embtable.nn.EmbeddingBag`, which documents them (like
    ``torch.nn.functional.embedding_bag``)."""
    float_tensor_argument("weight", weight, ndim=2, arrays=False)
    options = BagOptions.checked(weight.shape[0], padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                                 scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, max_norm_mode=max_norm_mode,
                                 mode=mode, include_last_offset=include_last_offset)
    return bag_lookup(weight, indices, offsets, per_sample_weights, options)


def embedding_dot(table_a: Embedding, ids_a: Any, table_b: Embedding, ids_b: Any) -> Tensor:
    """The dot product of the row ``ids_a[i]`` of `table_a` with each row ``ids_b[i, k]`` of
    `table_b`, as one op: ``(table_a(ids_a)[..., None, :] * table_b(ids_b)).sum(-1)``
    without the looked-up rows or their products ever being held. The core of skip-gram
    (word2vec), matrix factorisation and two-tower models scored against sampled
    negatives.

    Args:
        table_a: an `Embedding` layer.
        ids_a: integer indices into `table_a`, any shape ``S`` (``[N]`` for a batch of N
            anchors), each in ``[0, table_a.num_embeddings)``; a tensor on the tables'
            device, a NumPy array or a list.
        table_b: an `Embedding` layer of the same `embedding_dim`, dtype and device; may be
            `table_a` itself (then both sides' gradients add up in it).
        ids_b: integer indices into `table_b` of shape ``S`` (one row per anchor: the
            result has shape ``S``) or ``[*S, K]`` (K rows per anchor, e.g. a positive and
            K - 1 sampled negatives: the result has shape ``[*S, K]``).

    Returns:
        A tensor of the tables' dtype and device: ``out[i, k] = <table_a.weight[ids_a[i]],
        table_b.weight[ids_b[i, k]]>``, summed in the accumulation dtype (float32 for half
        precision) in an order of its own (so the last bits may differ from
        ``(a * b).sum(-1)``'s; the same inputs always give the same bits).

    Each table's options apply to its own side exactly as its lookup of those indices
    would apply them: the gradient reaches ``table_a.weight`` as that of ``table_a(ids_a)``
    and ``table_b.weight`` as that of ``table_b(ids_b)`` would, so no gradient goes into a
    table's `padding_idx` row (whose stored values are used as they are, as a lookup
    returns them), `scale_grad_by_freq` divides by a row's count in that side's indices,
    and `sparse` gives a `RowSparseGrad` (rows ascending, summed deterministically). With
    `max_norm` each side's looked-up rows are renormed in its table first
    (``max_norm_mode="renorm"``: `table_a`'s, then `table_b`'s; under `no_grad` and in eval
    mode too, as a lookup's are) or clipped (``"clip"``).

    Two tables held in memory without `max_norm` compute it as one op, whose backward reads
    both tables again: changing either in place (an optimizer step) between the call and
    the backward raises `ModifiedTensorError`. File-backed and sharded tables, and tables
    with `max_norm`, compute it from the rows their lookups return (holding the
    ``[*S, K, dim]`` rows), multiplied by the same kernel: the same results, bit for bit.

    Raises:
        InvalidArgumentError: a table that is not an `Embedding`.
        ShapeError: tables of different widths, or `ids_b` of neither shape above.
        DTypeError: tables of different dtypes, or indices that are not integers.
        DeviceError: tables on different devices, or indices on another device.
        IndexOutOfRangeError: an index outside its table, named with its position.
    """
    return _embedding_dot(table_a, ids_a, table_b, ids_b)


def linear(x: Any, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for `x` of shape ``[..., in]`` and `weight` ``[out, in]``; `x`
    may be a NumPy array or a list, taken in the weight's dtype."""
    x = float_tensor_argument("x", x, like=weight)
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear input of shape {x.shape} does not fit a weight of shape "
                         f"{weight.shape}: the last dimension must be {weight.shape[1]}")
    if x.dtype != weight.dtype:
        raise DTypeError(f"linear input is {x.dtype.name} but the weight is {weight.dtype.name}; "
                         f"they must match")
    out = x @ weight.T
    return out if bias is None else out + bias


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """In training, each element zeroed with probability `p` (drawn from embtable's
    generator, so `manual_seed` repeats it) and the rest scaled by ``1 / (1 - p)``; outside
    training, `x` itself."""
    x = float_tensor_argument("x", x)
    p = probability("dropout probability p", p)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    kept = generator().random(x.shape) >= p
    return x * Tensor(kept / (1 - p), dtype=x.dtype, device=x.device)

"""`Backend`: what an array library must offer to hold embtable's data on a device.

A backend holds a device's arrays (NumPy on the CPU, PyTorch on CUDA and MPS) and answers
the array functions and kernels that the rest of embtable needs, over its own array type.
Arguments are already validated (dtypes, shapes, index ranges) by the caller: the public
edge checks once, the backend computes. `tests/test_backends.py` holds every backend to this
protocol, signature by signature and value by value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..device import Device
from ..dtype import DType

Array = Any  # the backend's own array type (numpy.ndarray, torch.Tensor)


@dataclass(frozen=True)
class BagGradient:
    """How a pooled lookup's gradient reaches its positions: position i gets
    ``coefficients[i] * g[sources[i]]`` (its bag's gradient; a negative source: none), for a
    max-pool only in the elements where ``selected[sources[i]] == i`` (the argmax).
    `scales` is the part of the coefficient that is not the position's weight (``1 / count``
    for a mean, else 1), what the weight's own gradient is scaled by."""

    sources: Array
    coefficients: Array
    scales: Array
    selected: Array | None = None


class FusedStep(enum.Enum):
    """The optimizer rules that a backend may run as one fused kernel (`Backend.fused_step`).
    Each member's value is its name and how many state buffers its kernel takes; a rule
    that keeps fewer (SGD without momentum) passes the rest empty. The scalars each takes
    are listed with its kernel in ``embtable.kernels.cpu.optim``."""

    SGD = ("sgd", 1)          # scalars: lr, momentum, weight_decay; buffer: momentum_buffer
    ADAM = ("adam", 2)        # scalars: step, lr, beta1, beta2, eps, weight_decay, decoupled
    ADAGRAD = ("adagrad", 1)  # scalars: lr, eps, weight_decay; buffer: sum

    @property
    def buffers(self) -> int:
        """How many state buffers the kernel takes."""
        return self.value[1]


#: The functions a backend's ``xp`` offers under NumPy's names, with NumPy's signatures.
NAMESPACE = ("abs", "exp", "log", "log1p", "sqrt", "sign", "tanh", "matmul", "swapaxes", "broadcast_to",
             "sum", "mean", "max", "min", "argmax", "argmin", "argsort", "where", "maximum", "clip",
             "squeeze", "expand_dims", "permute_dims", "concatenate", "take", "take_along_axis",
             "put_along_axis", "cumsum", "asarray", "zeros", "arange")


@runtime_checkable
class Backend(Protocol):
    """The functions every backend offers. ``xp`` is an array namespace with NumPy's names for
    the element-wise math and reductions that ops use (`NAMESPACE`)."""

    device: Device
    xp: Any

    # --- arrays and dtypes ------------------------------------------------------------------

    def owns(self, array: object) -> bool:
        """Whether `array` is this backend's array on its device."""

    def to_host(self, array: Array) -> np.ndarray:
        """A NumPy array with `array`'s values (shared, not copied, where it already is one)."""

    def from_host(self, array: np.ndarray) -> Array:
        """`array` as this backend's array, sharing memory where the device allows."""

    def dtype_of(self, array: Array) -> DType:
        """The `DType` of `array`."""

    def astype(self, array: Array, dtype: DType, copy: bool = False) -> Array:
        """`array` as `dtype`, row-major; a copy only when needed or asked."""

    def zeros(self, shape: Sequence[int], dtype: DType) -> Array:
        """A new array of zeros."""

    def ones(self, shape: Sequence[int], dtype: DType) -> Array:
        """A new array of ones."""

    def concat(self, arrays: Sequence[Array]) -> Array:
        """The arrays joined along their first axis."""

    def index_add_(self, array: Array, key: Any, values: Array) -> None:
        """``array[key] += values`` in place for a float `array`, where `key` indexes as
        NumPy does with integer or boolean arrays among its parts; repeated positions add
        up (the gradient of advanced indexing)."""

    # --- indices --------------------------------------------------------------------------

    def first_out_of_range(self, indices: Array, limit: int) -> int:
        """The flat position of the first value of the integer `indices` outside
        ``[0, limit)``, or -1 when all are inside: one pass, one answer."""

    def index_array(self, indices: Array) -> Array:
        """Validated integer `indices` as int64 (one kernel specialisation for all)."""

    def bincount(self, indices: Array, length: int) -> Array:
        """How often each value in ``[0, length)`` occurs in the int64 `indices`."""

    def distinct(self, indices: Array, num_rows: int) -> Array:
        """The distinct values of `indices` (all in ``[0, num_rows)``), in any order, with
        memory in proportion to ``len(indices)``, not to `num_rows`."""

    def group_rows(self, indices: Array, num_rows: int | None = None) -> tuple[Array, Array, Array]:
        """The flat `indices` grouped by value: ``(rows, counts, slots)`` — the distinct
        values ascending (int64), how often each occurs, and for each position the number
        of its value among `rows`. `num_rows`, when given, bounds the values (all in
        ``[0, num_rows)``): a backend may then count rather than sort."""

    # --- rows of a table ----------------------------------------------------------------------

    def take_rows(self, table: Array, indices: Array) -> Array:
        """``table[indices]``: a new array of shape ``[*indices.shape, dim]``."""

    def scatter_sum(self, values: Array, slots: Array, rows: int, targets: Array | None = None,
                    counts: Array | None = None, bags: BagGradient | None = None) -> Array:
        """A new ``[rows, dim]`` array whose row ``targets[slots[i]]`` sums position i's value
        (``slots[i]`` itself when `targets` is None; a negative target drops position i),
        each row then divided by its slot's count when `counts` is given; untouched rows
        are zero. Position i's value is ``values[i]``, or with `bags` the gradient that
        position i of a pooled lookup receives from ``values`` (``[bags, dim]``: each bag's
        gradient). `values` is float32 or float64. Deterministic: the same inputs give the
        same bits."""

    def bag_weight_grad(self, g: Array, table: Array, indices: Array, bags: BagGradient) -> Array:
        """The gradient of each position's per-sample weight in a pooled lookup, ``[N]``:
        ``bags.scales[i]`` times the dot product of its bag's gradient ``g[bags.sources[i]]``
        with its row ``table[indices[i]]`` (for a max-pool, over the elements the position
        won only); 0 for the positions left out."""

    def row_dots(self, table_a: Array, ids_a: Array, table_b: Array, ids_b: Array) -> Array:
        """``out[i, k]`` = the dot product of ``table_a[ids_a[i]]`` and ``table_b[ids_b[i, k]]``
        (int64 `ids_a` ``[N]`` and `ids_b` ``[N, K]``, tables of one float dtype and width),
        ``[N, K]`` in the tables' dtype, summed in the accumulation dtype; memory for the
        result only (no ``[N, K, dim]`` of gathered rows), or for bounded chunks of rows
        where the backend must gather. Deterministic."""

    def bag_of(self, offsets: Array, size: int) -> Array:
        """For each of `size` positions, the bag (int64) whose range ``offsets[b]:offsets[b+1]``
        holds it, or -1 past the last bag; `offsets` (int64, ``[bags + 1]``) never decrease."""

    def pool_rows(self, table: Array, indices: Array, offsets: Array, weights: Array | None, mode: str,
                  padding_idx: int | None, ids: Array | None = None) -> tuple[Array, Array | None]:
        """Bag b's pooled row over positions ``offsets[b]:offsets[b+1]`` of the flat int64
        `indices`, leaving out the positions whose id (``ids[i]``, by default ``indices[i]``)
        is `padding_idx`: the ``"sum"``, ``"mean"`` (over the positions kept) or ``"max"``
        (element-wise) of ``weights[i] * table[indices[i]]`` (`weights` None: 1). Summed in
        the accumulation dtype, returned in the table's; an empty bag is a zero row. For
        ``"max"`` also ``argmax`` (int64 ``[bags, dim]``: the earliest position holding each
        maximum, -1 in an empty bag); otherwise None."""

    def add_rows_(self, table: Array, rows: Array, values: Array) -> None:
        """``table[rows[i]] += values[i]`` in place, for distinct `rows`."""

    def renorm_rows_(self, table: Array, rows: Array, max_norm: float, norm_type: float) -> None:
        """Rescale in place each listed (distinct) row whose `norm_type`-norm exceeds
        `max_norm` by ``max_norm / (norm + 1e-7)``."""

    # --- optimizers -----------------------------------------------------------------------------

    def fused_step(self, step: FusedStep | None, param: Array, rows: Array | None, grad: Array,
                   buffers: Sequence[Array], scalars: Sequence[float]) -> bool:
        """Run `step`'s fused kernel on `param` and its state `buffers` in place: every element
        (`rows` None, `grad` shaped like `param`) or the listed `rows` (`grad` ``[k, dim]``).
        False, changing nothing, when this backend has no such kernel for these arrays (or
        `step` is None: a rule without one); the optimizer's reference rule then runs."""

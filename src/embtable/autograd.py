"""Reverse-mode automatic differentiation.

An operation on tensors that require gradients records a `Node`: its input tensors and a
function from the output's gradient to one gradient per input. `backward` walks those nodes
from a result back to the leaves in reverse topological order and adds each leaf's gradient
into its ``.grad``. That is the whole mechanism.

Gradients flow as backend arrays, or as `RowSparseGrad` for sparse embedding tables. While
they flow, half-precision gradients are held in float32; each leaf's total is rounded to the
leaf's dtype once, when it is stored.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .dtype import DType
from .errors import InvalidArgumentError, ModifiedTensorError, ShapeError
from .sparse import RowSparseGrad

if TYPE_CHECKING:
    from .tensor import Tensor

Gradient = Any  # a backend array or a RowSparseGrad


class _GradMode(threading.local):
    enabled = True


_mode = _GradMode()


class no_grad(contextlib.ContextDecorator):
    """Within this context (or a function decorated with it), operations record nothing."""

    def _recreate_cm(self) -> no_grad:
        return no_grad()  # a fresh one per decorated call, so recursion restores correctly

    def __enter__(self) -> no_grad:
        self._previous = _mode.enabled
        _mode.enabled = False
        return self

    def __exit__(self, *exc: object) -> None:
        _mode.enabled = self._previous


@dataclass(frozen=True)
class Node:
    """How a tensor was made: its inputs, the gradient of each from the output's, and the
    versions of the tensors whose values that backward reads (so an in-place change made
    in between is caught instead of giving a wrong gradient)."""

    inputs: tuple[Tensor, ...]
    backward: Callable[[Gradient], Sequence[Gradient | None]]
    saved: tuple[tuple[Tensor, int], ...]

    def check_saved(self) -> None:
        for tensor, version in self.saved:
            if tensor._version != version:
                raise ModifiedTensorError(
                    f"a tensor of shape {tensor.shape} that this backward needs was modified in "
                    f"place after the forward used it (version {version}, now "
                    f"{tensor._version}); run backward() before optimizer steps, max_norm "
                    f"renorms or load_state_dict change it")


def record(data: Any, like: Tensor, inputs: tuple[Tensor, ...],
           backward: Callable[[Gradient], Sequence[Gradient | None]],
           saves: tuple[Tensor, ...] | None = None, view: bool = False) -> Tensor:
    """A tensor around `data` (on `like`'s device) that remembers how to pass gradients to
    `inputs`, when gradients are enabled and any input requires them. `saves` lists the
    tensors whose values `backward` reads (all inputs unless said otherwise); a `view`
    shares `like`'s data, and so its version counter."""
    from .tensor import Tensor

    tracked = _mode.enabled and any(t.requires_grad for t in inputs)
    out = Tensor._wrap(like._backend.xp.asarray(data), like.device, requires_grad=tracked,
                       view_of=like if view else None)
    if tracked:
        saved = tuple((t, t._version) for t in (inputs if saves is None else saves))
        out._node = Node(inputs, backward, saved)
    return out


def accumulation_dtype(dtype: DType) -> DType:
    """The dtype that gradients of a `dtype` tensor are summed in: F32 for the half types."""
    return DType.F32 if dtype in (DType.F16, DType.BF16) else dtype


def backward(root: Tensor, grad: Any = None) -> None:
    """Add d(root)/d(leaf) into ``leaf.grad`` for every leaf `root` depends on. Every
    gradient is computed before any ``.grad`` changes, so a backward that raises changes
    nothing."""
    if not root.requires_grad:
        raise InvalidArgumentError("backward() needs a tensor that requires grad (one computed "
                                   "from a tensor with requires_grad=True, outside no_grad)")
    backend = root._backend
    if grad is None:
        if root.numel() != 1:
            raise ShapeError(f"backward() without a gradient needs a one-element tensor, this one "
                             f"has shape {root.shape}; pass grad= of that shape")
        seed = backend.ones(root.shape, accumulation_dtype(root.dtype))
    else:
        from .tensor import as_array

        seed = as_array(grad, accumulation_dtype(root.dtype), root.device)
        if tuple(seed.shape) != root.shape:
            raise ShapeError(f"backward() got a gradient of shape {tuple(seed.shape)} for a "
                             f"tensor of shape {root.shape}")
    pending: dict[int, Gradient] = {id(root): seed}
    totals: list[tuple[Tensor, Gradient]] = []
    for tensor in _reverse_topological(root):
        gradient = pending.pop(id(tensor), None)
        if gradient is None:
            continue
        if tensor._node is None:
            totals.append((tensor, _with_existing(tensor, gradient)))
            continue
        tensor._node.check_saved()
        for parent, contribution in zip(tensor._node.inputs, tensor._node.backward(gradient)):
            if contribution is not None and parent.requires_grad:
                pending[id(parent)] = _add(pending.get(id(parent)), contribution)
    for leaf, total in totals:
        leaf.grad = _rounded(leaf, total)


def _reverse_topological(root: Tensor) -> list[Tensor]:
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        stack.append((tensor, True))
        if tensor._node is not None:
            stack.extend((parent, False) for parent in tensor._node.inputs
                         if parent.requires_grad and id(parent) not in seen)
    return order[::-1]


def _add(total: Gradient | None, more: Gradient) -> Gradient:
    if total is None:
        return more
    if isinstance(total, RowSparseGrad) and isinstance(more, RowSparseGrad):
        return total.merged(more)
    if isinstance(total, RowSparseGrad):
        total, more = more, total
    if isinstance(more, RowSparseGrad):
        return more.added_to(total)
    return total + more


def _with_existing(leaf: Tensor, gradient: Gradient) -> Gradient:
    """`gradient` plus what ``leaf.grad`` already holds (gradients accumulate)."""
    existing = leaf.grad
    if existing is None:
        return gradient
    return _add(gradient, existing if isinstance(existing, RowSparseGrad) else existing._data)


def _rounded(leaf: Tensor, gradient: Gradient) -> Tensor | RowSparseGrad:
    """A leaf's total gradient in the leaf's dtype: the one rounding of half precision."""
    from .tensor import Tensor

    if isinstance(gradient, RowSparseGrad):
        return gradient.astype(leaf.dtype)
    return Tensor._wrap(leaf._backend.astype(gradient, leaf.dtype), leaf.device)

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
from typing import Any, Callable, Sequence

from ..backends import Backend
from ..dtype import accumulation_dtype
from ..errors import InvalidArgumentError, ModifiedTensorError, ShapeError
from .ieee import ieee
from .sparse_grad import RowSparseGrad
from .tensor import Tensor, as_array, wrap

Gradient = Any  # a backend array or a RowSparseGrad
Backward = Callable[[Gradient], Sequence[Gradient]]


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


def is_grad_enabled() -> bool:
    """False inside `no_grad`: operations then record nothing."""
    return _mode.enabled


class Node:
    """How a tensor was made: its inputs, the gradient of each from the output's, and the
    versions of the tensors whose values that backward reads (so an in-place change made
    in between is caught instead of giving a wrong gradient)."""

    __slots__ = ("inputs", "backward", "saved")

    def __init__(self, inputs: tuple[Tensor, ...], backward: Backward,
                 saved: tuple[tuple[Tensor, int], ...]) -> None:
        self.inputs = inputs
        self.backward = backward
        self.saved = saved

    def check_saved(self) -> None:
        for tensor, version in self.saved:
            if tensor._version != version:
                raise ModifiedTensorError(
                    f"a tensor of shape {tensor.shape} that this backward needs was modified in "
                    f"place after the forward used it (version {version}, now "
                    f"{tensor._version}); run backward() before optimizer steps, max_norm "
                    f"renorms or load_state_dict change it")


def record(data: Any, backend: Backend, inputs: tuple[Tensor, ...], backward: Backward,
           saves: tuple[Tensor, ...] | None = None, view_of: Tensor | None = None,
           saves_output: bool = False) -> Tensor:
    """A tensor around `data` (an array of `backend`, or a NumPy scalar) that remembers how to
    pass gradients to `inputs`, when gradients are enabled and any input requires them.
    `backward` returns one gradient per input (None for none; those of inputs that do not
    require grad are ignored). `saves` lists the tensors whose values `backward` reads (all
    inputs unless said otherwise), `saves_output` whether it reads the output's values too;
    a view (`view_of`) shares that tensor's data and so its version counter."""
    tracked = _mode.enabled and any(t._requires_grad for t in inputs)
    out = wrap(backend.xp.asarray(data), backend, requires_grad=tracked, view_of=view_of)
    if tracked:
        saved = tuple(inputs if saves is None else saves) + ((out,) if saves_output else ())
        out._node = Node(inputs, backward, tuple((t, t._version) for t in saved))
    return out


@ieee  # the ops' gradients, as their results, are IEEE 754's without NumPy's warnings
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
        seed = as_array(grad, accumulation_dtype(root.dtype), backend)
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
            if contribution is not None and parent._requires_grad:
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
                         if parent._requires_grad and id(parent) not in seen)
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
    if isinstance(gradient, RowSparseGrad):
        return gradient.astype(leaf.dtype)
    return wrap(leaf._backend.astype(gradient, leaf.dtype), leaf._backend)

"""embtable tables inside PyTorch models (SPEC §13): `TableModule` wraps an embtable
`Embedding` or `EmbeddingBag` as a ``torch.nn.Module``.

The lookup runs in embtable (its kernels, its storage, its errors) and its output joins
PyTorch's autograd through a ``torch.autograd.Function``: PyTorch's ``loss.backward()``
hands the output's gradient to embtable's backward, which leaves the table's gradient in
``layer.weight.grad`` for an embtable optimizer (a `RowSparseGrad` for a sparse table),
while a torch optimizer steps the rest of the model. On the CPU the indices, the output
and its gradient cross by DLPack, without copies. Importing this module needs PyTorch.
"""

from __future__ import annotations

from typing import Any

import torch

from .core import Tensor, is_grad_enabled, no_grad
from .device import Device
from .errors import InvalidArgumentError
from .nn import Embedding, EmbeddingBag

__all__ = ["TableModule"]


class TableModule(torch.nn.Module):
    """`layer` (an embtable `Embedding` or `EmbeddingBag`, any storage) as a
    ``torch.nn.Module``: ``module(indices, offsets=None, per_sample_weights=None)`` takes
    torch tensors (offsets and per-sample weights only for an `EmbeddingBag`) and returns
    a torch tensor equal, bit for bit, to ``layer(...)`` called from embtable.

    It registers no torch ``Parameter`` (torch optimizers never see the table: step it with
    an embtable optimizer over ``layer.parameters()``). Its ``state_dict()`` holds the
    table's ``"weight"``, sharing memory with it, and ``load_state_dict`` loads into the
    table; ``per_sample_weights`` that require grad get their gradient in torch. The table
    stays where it is when the module is moved or cast (``module.to``): move it with
    ``module.layer.to(...)``.
    """

    def __init__(self, layer: Embedding | EmbeddingBag) -> None:
        if not isinstance(layer, (Embedding, EmbeddingBag)):
            raise InvalidArgumentError(f"TableModule wraps an embtable Embedding or EmbeddingBag, got "
                                       f"{type(layer).__name__}")
        super().__init__()
        self.layer = layer
        self.training = layer.training

    def forward(self, indices: torch.Tensor, offsets: torch.Tensor | None = None,
                per_sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        bag = isinstance(self.layer, EmbeddingBag)
        if not bag and (offsets is not None or per_sample_weights is not None):
            raise InvalidArgumentError("offsets and per_sample_weights are for an EmbeddingBag; this "
                                       "TableModule wraps an Embedding")
        tracked = torch.is_grad_enabled() and (self.layer.weight.requires_grad or (
            per_sample_weights is not None and per_sample_weights.requires_grad))
        # The anchor requires grad so that PyTorch calls the lookup's backward even when no
        # torch input does; it is no Parameter and holds no values.
        anchor = torch.empty(0, requires_grad=tracked)
        return _Lookup.apply(anchor, self.layer, indices, offsets, per_sample_weights)

    def train(self, mode: bool = True) -> TableModule:
        self.layer.train(mode)
        return super().train(mode)

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        for name, tensor in self.layer.state_dict().items():
            destination[prefix + name] = torch.from_dlpack(tensor.detach())

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        names = list(self.layer.state_dict())
        missing_keys.extend(prefix + n for n in names if prefix + n not in state_dict)
        unexpected_keys.extend(k for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix):]
                               and k[len(prefix):] not in names)
        present = {n: state_dict[prefix + n] for n in names if prefix + n in state_dict}
        if len(present) == len(names):
            try:
                self.layer.load_state_dict({n: t.detach() for n, t in present.items()})
            except Exception as error:  # reported the way torch reports a bad state dict
                error_msgs.append(f"{prefix}: {error}")

    def extra_repr(self) -> str:
        return repr(self.layer)


class _Lookup(torch.autograd.Function):
    """The embtable lookup as a node of PyTorch's graph: forward calls the layer, backward
    runs embtable's backward from the output's gradient."""

    @staticmethod
    def forward(ctx: Any, anchor: torch.Tensor, layer: Embedding | EmbeddingBag, indices: torch.Tensor,
                offsets: torch.Tensor | None, per_sample_weights: torch.Tensor | None) -> torch.Tensor:
        device = layer.weight.device
        ids = _to_embtable(indices, device)
        weights = None if per_sample_weights is None else _to_embtable(per_sample_weights, device)
        if weights is not None and per_sample_weights.requires_grad:
            weights.requires_grad = True
        arguments = (ids,) if isinstance(layer, Embedding) else (
            ids, None if offsets is None else _to_embtable(offsets, device), weights)
        if anchor.requires_grad and is_grad_enabled():
            out = layer(*arguments)
        else:
            with no_grad():
                out = layer(*arguments)
        ctx.embtable = (out, weights)
        return torch.from_dlpack(out.detach())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        out, weights = ctx.embtable  # kept: a backward with retain_graph=True may run again
        if out.requires_grad:
            out.backward(_to_embtable(grad, out.device))
        weights_grad = None
        if weights is not None and weights.grad is not None:
            weights_grad = torch.from_dlpack(weights.grad)
            weights.grad = None  # torch accumulates it; a second backward starts afresh
        return None, None, None, None, weights_grad


def _to_embtable(tensor: torch.Tensor, device: Device) -> Tensor:
    """`tensor`'s values as an embtable tensor on `device`, sharing memory where the
    devices allow."""
    return Tensor.from_dlpack(tensor.detach().contiguous(), device=device)

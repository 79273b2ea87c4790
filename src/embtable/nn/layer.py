"""`Layer`: the protocol every layer follows — a forward, its trainable tensors, its training
state, and its persistence (state dicts and safetensors checkpoints).

Parameters and children are found by looking at attributes: every `Tensor` attribute is a
parameter, every `Layer` attribute (or list/tuple of layers) a child, in the order they were
assigned. Nothing needs registering.
"""

from __future__ import annotations

import enum
import json
import os
from typing import Any, Iterator, Mapping

from .. import checkpoint
from ..backends import backend_for
from ..device import DeviceLike, as_device
from ..dtype import DTypeLike, as_float_dtype
from ..errors import InvalidArgumentError, SerializationError, ShapeError
from ..interop import host_array
from ..rng import preserved_generator
from ..sparse import RowSparseGrad
from ..tensor import Tensor


class LayerState(enum.Enum):
    """Whether a layer is training or evaluating."""

    TRAINING = "training"
    EVAL = "eval"


class Layer:
    """Base class of layers. Subclasses implement `forward` and `config`."""

    training: bool = True

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    # --- parameters and children ----------------------------------------------------------

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, tensor)`` for every float tensor attribute, children included; a
        tensor shared by several layers (tied weights) is listed once, under its first name."""
        seen: set[int] = set()
        for name, tensor in self._all_float_tensors():
            if id(tensor) not in seen:
                seen.add(id(tensor))
                yield name, tensor

    def _all_float_tensors(self) -> Iterator[tuple[str, Tensor]]:
        for name, value in vars(self).items():
            if isinstance(value, Tensor) and value.dtype.is_float:
                yield name, value
        for prefix, child in self._named_children():
            for name, tensor in child._all_float_tensors():
                yield f"{prefix}.{name}", tensor

    def parameters(self) -> list[Tensor]:
        """Every trainable tensor, children included."""
        return [tensor for _, tensor in self.named_parameters()]

    def _named_children(self) -> Iterator[tuple[str, Layer]]:
        for name, value in vars(self).items():
            if isinstance(value, Layer):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Layer):
                        yield f"{name}.{i}", item

    # --- training state -------------------------------------------------------------------

    @property
    def state(self) -> LayerState:
        return LayerState.TRAINING if self.training else LayerState.EVAL

    def train(self, mode: bool = True) -> Layer:
        """Put this layer and its children in training mode (or eval mode if `mode` is False)."""
        self.training = bool(mode)
        for _, child in self._named_children():
            child.train(mode)
        return self

    def eval(self) -> Layer:
        """Put this layer and its children in eval mode."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for tensor in self.parameters():
            tensor.grad = None

    def to(self, device: DeviceLike = None, dtype: DTypeLike = None) -> Layer:
        """Move every parameter to `device` and cast it to the float `dtype`, in place (the
        parameter objects stay the same, so optimizers holding them keep working).
        ``None`` leaves the device / dtype as it is."""
        target = None if device is None else as_device(device)
        resolved = None if dtype is None else as_float_dtype(dtype)
        if target is not None:
            backend_for(target)  # refuse an unavailable device before anything moves
        params = self.parameters()
        moved = [(t.to(target, resolved), _moved_grad(t.grad, target, resolved)) for t in params]
        for tensor, (copy, grad) in zip(params, moved):
            tensor._grad = None
            tensor._replace_data(copy._data, copy.device)
            tensor.grad = grad
        return self

    # --- state dicts ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Tensor]:
        """Every parameter by dotted name, sharing the parameters' data."""
        return {name: tensor.detach() for name, tensor in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy values into the parameters of the same names, cast to each parameter's dtype.

        Values may be embtable Tensors, NumPy arrays or any DLPack / array object (a PyTorch
        state dict loads as it is). The keys must match exactly and each shape must equal the
        parameter's; otherwise nothing is changed.
        """
        if not isinstance(state, Mapping):
            raise InvalidArgumentError(f"a state dict maps names to arrays, got {type(state).__name__}")
        params = dict(self.named_parameters())
        missing = sorted(params.keys() - state.keys())
        unexpected = sorted(state.keys() - params.keys())
        if missing or unexpected:
            raise InvalidArgumentError(
                f"state dict does not fit {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}")
        arrays = {}
        for name, tensor in params.items():
            value = state[name]
            array = value.numpy() if isinstance(value, Tensor) else host_array(value)
            if tuple(array.shape) != tensor.shape:
                raise ShapeError(f"state dict entry {name!r} has shape {tuple(array.shape)}, "
                                 f"expected {tensor.shape}")
            arrays[name] = Tensor(array, dtype=tensor.dtype, device=tensor.device)
        for name, tensor in params.items():
            tensor._replace_data(arrays[name]._data)

    # --- checkpoints ----------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON values) that rebuild this layer's shape."""
        raise NotImplementedError(f"{type(self).__name__} does not implement config")

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters and the config to a safetensors file."""
        params = dict(self.named_parameters())
        metadata = {
            "embtable.layer": type(self).__name__,
            "embtable.config": json.dumps(self.config()),
            "embtable.frozen": json.dumps([n for n, t in params.items() if not t.requires_grad]),
        }
        checkpoint.write(path, {name: t.numpy() for name, t in params.items()}, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Layer:
        """Rebuild a layer written by `save`."""
        tensors, metadata = checkpoint.read(path)
        try:
            kind = metadata["embtable.layer"]
            config = json.loads(metadata["embtable.config"])
            frozen = json.loads(metadata.get("embtable.frozen", "[]"))
        except (KeyError, ValueError) as error:
            raise SerializationError(f"{os.fspath(path)!r} is not an embtable layer checkpoint "
                                     f"(bad metadata: {error})") from None
        if kind != cls.__name__:
            raise SerializationError(f"{os.fspath(path)!r} holds a {kind} layer, not {cls.__name__}")
        try:
            layer = cls._from_checkpoint(config, tensors)
        except SerializationError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise SerializationError(f"{os.fspath(path)!r} does not rebuild a {cls.__name__}: "
                                     f"{type(error).__name__}: {error}") from None
        for name, tensor in layer.named_parameters():
            tensor.requires_grad = name not in frozen
        return layer

    @classmethod
    def _from_checkpoint(cls, config: dict[str, Any], tensors: dict[str, Any]) -> Layer:
        """Build a layer from a saved config and parameter arrays (the random initialisation
        this overwrites does not advance the global generator)."""
        with preserved_generator():
            layer = cls(**config)
        layer.load_state_dict(tensors)
        return layer


def _moved_grad(grad: Any, device: Any, dtype: Any) -> Any:
    """A parameter's gradient moved and cast along with it by `Layer.to`."""
    if grad is None:
        return None
    if isinstance(grad, RowSparseGrad):
        return RowSparseGrad(grad.indices.to(device), grad.values.to(device, dtype), grad.shape)
    return grad.to(device, dtype)

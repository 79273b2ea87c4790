"""`Layer`: the protocol every layer follows — a forward, its parameters and buffers, its
children, its training state, and its persistence (state dicts and safetensors checkpoints).

A layer says what its tensors are by assigning them, as in PyTorch:

- a **parameter** is a trainable tensor: a leaf tensor that requires grad when it is
  assigned to an attribute, or one given to `register_parameter` (None there makes an
  empty slot: ``Linear(..., bias=False)``). A parameter stays one when frozen later
  (``requires_grad = False``), when another tensor is assigned to its name, or None.
- a **buffer** is state that is saved and moved but not trained (a running statistic,
  integer codes of a quantized table): a tensor given to `register_buffer`.
- a **child** is a `Layer` attribute, or a layer inside a list, tuple or dict attribute.

Any other tensor attribute (a cached result, a constant) is none of these.
"""

from __future__ import annotations

import enum
import json
import os
from typing import Any, Iterator, Mapping

import numpy as np

from ..backends import backend_for
from ..core import Tensor
from ..device import DeviceLike, as_device
from ..dtype import DType, DTypeLike, as_float_dtype
from ..errors import InvalidArgumentError, SerializationError, ShapeError
from ..interop import host_array
from .. import checkpoint
from ..rng import preserved_generator
from ..tables import storage_of

_PARAMETERS = "_parameter_names"  # the instance's own registries, kept in its __dict__
_BUFFERS = "_buffer_names"


class LayerState(enum.Enum):
    """Whether a layer is training or evaluating."""

    TRAINING = "training"
    EVAL = "eval"


class Layer:
    """Base class of layers. Subclasses implement `forward` and `config`."""

    training: bool = True

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # --- what the layer holds -------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        parameters, buffers = self._registry(_PARAMETERS), self._registry(_BUFFERS)
        if name in buffers:
            _tensor_or_none("buffer", name, value)
        elif isinstance(value, Tensor) and (name in parameters or (value.is_leaf and value.requires_grad)):
            parameters[name] = None
        elif value is not None:
            parameters.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._registry(_PARAMETERS).pop(name, None)
        self._registry(_BUFFERS).pop(name, None)
        object.__delattr__(self, name)

    def _registry(self, key: str) -> dict[str, None]:
        """This layer's ordered set of parameter (or buffer) names, made on first use, so
        that subclasses need not call ``Layer.__init__``."""
        return self.__dict__.setdefault(key, {})

    def register_parameter(self, name: str, tensor: Tensor | None) -> None:
        """Make `tensor` the parameter `name` (trainable, in `parameters` and `state_dict`),
        whether or not it requires grad now; None makes an empty parameter slot."""
        self._register(_PARAMETERS, "parameter", name, tensor)

    def register_buffer(self, name: str, tensor: Tensor | None) -> None:
        """Make `tensor` (any dtype) the buffer `name`: saved, loaded and moved with the layer,
        never trained, as ``torch.nn.Module.register_buffer``."""
        self._register(_BUFFERS, "buffer", name, tensor)

    def _register(self, key: str, kind: str, name: str, tensor: Tensor | None) -> None:
        _tensor_or_none(kind, name, tensor)
        for registry in (_PARAMETERS, _BUFFERS):
            self._registry(registry).pop(name, None)
        self._registry(key)[name] = None
        object.__setattr__(self, name, tensor)

    def _own(self, key: str) -> Iterator[tuple[str, Tensor]]:
        names = self.__dict__.get(key, {})
        for name, value in vars(self).items():
            if name in names and value is not None:
                yield name, value

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        """``(name, layer)`` for every direct child: layer attributes, and layers held in
        lists, tuples and dicts (``"stack.0"``, ``"towers.user"``)."""
        for name, value in vars(self).items():
            if isinstance(value, Layer):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Layer):
                        yield f"{name}.{i}", item
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, Layer):
                        yield f"{name}.{key}", item

    def _named(self, key: str) -> Iterator[tuple[str, Tensor]]:
        """This layer's own parameters (or buffers), then its children's, by dotted name; a
        tensor held twice (tied weights) is listed once, under its first name."""
        seen: set[int] = set()
        for name, tensor in self._walk(key):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                yield name, tensor

    def _walk(self, key: str) -> Iterator[tuple[str, Tensor]]:
        yield from self._own(key)
        for prefix, child in self.named_children():
            for name, tensor in child._walk(key):
                yield f"{prefix}.{name}", tensor

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, tensor)`` for every parameter, this layer's first, then its
        children's; a tensor shared by several layers (tied weights) is listed once."""
        return self._named(_PARAMETERS)

    def parameters(self) -> list[Tensor]:
        """Every parameter, children included."""
        return [tensor for _, tensor in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, tensor)`` for every buffer, as `named_parameters` lists parameters."""
        return self._named(_BUFFERS)

    def buffers(self) -> list[Tensor]:
        """Every buffer, children included."""
        return [tensor for _, tensor in self.named_buffers()]

    # --- training state -------------------------------------------------------------------

    @property
    def state(self) -> LayerState:
        return LayerState.TRAINING if self.training else LayerState.EVAL

    def train(self, mode: bool = True) -> Layer:
        """Put this layer and its children in training mode (or eval mode if `mode` is False)."""
        self.training = bool(mode)
        for _, child in self.named_children():
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
        """Move every parameter and buffer (with any gradient) to `device`, and cast the float
        ones to the float `dtype`, in place: the tensor objects stay the same, so optimizers
        holding them keep working. ``None`` leaves the device / dtype as it is. Every copy
        is made before any tensor changes, so a move that fails changes nothing."""
        target = None if device is None else as_device(device)
        resolved = None if dtype is None else as_float_dtype(dtype)
        if target is not None:
            backend_for(target)  # refuse an unavailable device before anything moves
        tensors = []
        for tensor in self.parameters() + self.buffers():
            cast = resolved if tensor.dtype.is_float else None
            if (target is not None and target != tensor.device) or (cast is not None and cast != tensor.dtype):
                storage_of(tensor).check_load(target, cast)
                tensors.append((tensor, cast))
        moved = []
        for tensor, cast in tensors:
            grad = tensor.grad
            moved.append((storage_of(tensor).values().to(target, cast),
                          None if grad is None else grad.to(target, cast)))
        for (tensor, _), (copy, grad) in zip(tensors, moved):
            tensor.grad = None
            storage_of(tensor).load_(copy)
            tensor.grad = grad
        if resolved is not None:
            for layer in self._layers():
                layer._outputs_to(resolved)
        return self

    def _layers(self) -> Iterator[Layer]:
        """This layer and every layer below it."""
        yield self
        for _, child in self.named_children():
            yield from child._layers()

    def _outputs_to(self, dtype: DType) -> None:
        """Make `dtype` the dtype of this layer's outputs, where it keeps one apart from its
        tensors (a quantized table's: its rows are codes); most layers' outputs follow their
        tensors, so this does nothing."""

    # --- state dicts ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Tensor]:
        """Every parameter, then every buffer, by dotted name, sharing their data. A tensor
        reachable under several names (tied weights: ``output.weight`` assigned
        ``embedding.weight``) is listed under each of them, as by ``torch.nn.Module.state_dict``,
        so the state dict of a tied PyTorch model and this one have the same keys."""
        return {name: storage_of(tensor).values() for name, tensor in self._state_tensors().items()}

    def _state_tensors(self) -> dict[str, Tensor]:
        """Every parameter, then every buffer, under each of its names."""
        return {**dict(self._walk(_PARAMETERS)), **dict(self._walk(_BUFFERS))}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy values into the parameters and buffers of the same names, cast to each one's
        dtype.

        Values may be embtable Tensors, NumPy arrays or any DLPack / array object (a PyTorch
        state dict loads as it is). The keys must match exactly and each shape must equal the
        tensor's; otherwise nothing is changed. A tied tensor is given under every name
        `state_dict` lists it under (PyTorch's strict loading asks the same), with equal
        values under each: a state dict that gives it two values cannot be loaded.
        """
        if not isinstance(state, Mapping):
            raise InvalidArgumentError(f"a state dict maps names to arrays, got {type(state).__name__}")
        tensors = self._state_tensors()
        tied = _tied_names(tensors)
        missing = sorted(tensors.keys() - state.keys())
        unexpected = sorted(state.keys() - tensors.keys())
        if missing or unexpected:
            ties = "".join(f"; {name!r} is tied to {tied[name]!r} and must be given too" for name in missing
                           if name in tied)
            raise InvalidArgumentError(
                f"state dict does not fit {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}{ties}")
        arrays, values = {}, {}
        for name, tensor in tensors.items():
            value = state[name]
            arrays[name] = array = value.numpy() if isinstance(value, Tensor) else host_array(value)
            if tuple(array.shape) != tensor.shape:
                raise ShapeError(f"state dict entry {name!r} has shape {tuple(array.shape)}, "
                                 f"expected {tensor.shape}")
            if name in tied:
                if not _same_values(array, arrays[tied[name]]):
                    raise InvalidArgumentError(f"state dict entries {tied[name]!r} and {name!r} hold one tied "
                                               f"tensor but give it different values")
                continue
            storage_of(tensor).check_load(tensor.device, tensor.dtype)
            values[name] = Tensor(array, dtype=tensor.dtype, device=tensor.device)
        for name, value in values.items():
            storage_of(tensors[name]).load_(value)

    # --- description --------------------------------------------------------------------

    def extra_repr(self) -> str:
        """What the repr shows between the parentheses, before any children (as PyTorch)."""
        return ""

    def __repr__(self) -> str:
        """``Name(extra)``, then one indented line per child, as PyTorch prints modules."""
        children = [f"({name}): {child!r}" for name, child in self.named_children()]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = "\n".join(([self.extra_repr()] if self.extra_repr() else []) + children)
        return f"{type(self).__name__}(\n  " + lines.replace("\n", "\n  ") + "\n)"

    # --- checkpoints ----------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON values) that rebuild this layer's shape."""
        raise NotImplementedError(f"{type(self).__name__} does not implement config")

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters, the buffers and the config to a safetensors file: each
        tensor once, a tied one under its first name only (as safetensors' own
        ``save_model`` does; the layout of files written before state dicts listed tied
        names), which `load` ties back to the others."""
        tensors = self._state_tensors()
        tied = _tied_names(tensors)
        frozen = [n for n, t in self.named_parameters() if not t.requires_grad]
        checkpoint.write(path, {name: storage_of(t).values().numpy() for name, t in tensors.items()
                                if name not in tied},
                         checkpoint_metadata(type(self).__name__, self.config(), frozen))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Layer:
        """Rebuild a layer written by `save`."""
        tensors, metadata = cls._read_checkpoint(path)
        config, frozen = checkpoint_config(cls.__name__, metadata, path)
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
    def _read_checkpoint(cls, path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
        """The arrays and metadata `load` rebuilds the layer from."""
        return checkpoint.read(path)

    @classmethod
    def _from_checkpoint(cls, config: dict[str, Any], tensors: dict[str, Any]) -> Layer:
        """Build a layer from a saved config and its arrays (the random initialisation this
        overwrites does not advance the global generator)."""
        with preserved_generator():
            layer = cls(**config)
        tied = {name: tensors[first] for name, first in _tied_names(layer._state_tensors()).items()
                if first in tensors and name not in tensors}  # saved once, under the first name
        layer.load_state_dict({**tensors, **tied})
        return layer



def _tied_names(tensors: dict[str, Tensor]) -> dict[str, str]:
    """Each name of `tensors` (a layer's `_state_tensors`) whose tensor an earlier name
    already holds (a tied weight), mapped to that first name: the one `named_parameters`
    and `save` use."""
    first: dict[int, str] = {}
    return {name: first[id(tensor)] for name, tensor in tensors.items() if first.setdefault(id(tensor), name) != name}


def checkpoint_metadata(kind: str, config: dict[str, Any], frozen: list[str]) -> dict[str, str]:
    """The metadata of a checkpoint of a `kind` layer (its class name) built from `config`,
    whose parameters named in `frozen` do not require grad."""
    return {"embtable.layer": kind, "embtable.config": json.dumps(config), "embtable.frozen": json.dumps(frozen)}


def checkpoint_config(kind: str, metadata: dict[str, str], path: str | os.PathLike) -> tuple[dict[str, Any], list[str]]:
    """The config and frozen parameter names in a checkpoint's `metadata`, which must be of
    a `kind` layer (else `SerializationError`)."""
    try:
        stored_kind = metadata["embtable.layer"]
        config = checkpoint.parse_json(metadata["embtable.config"])
        frozen = checkpoint.parse_json(metadata.get("embtable.frozen", "[]"))
        if not isinstance(config, dict) or not isinstance(frozen, list):
            raise ValueError("config must be an object and frozen a list")
    except (KeyError, ValueError) as error:
        raise SerializationError(f"{os.fspath(path)!r} is not an embtable layer checkpoint "
                                 f"(bad metadata: {error})") from None
    if stored_kind != kind:
        raise SerializationError(f"{os.fspath(path)!r} holds a {stored_kind} layer, not {kind}")
    return config, frozen


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two host arrays of one shape hold equal values (NaN equal to NaN); at once
    when both view the same memory the same way (a tied tensor's entries, as a PyTorch state
    dict or a checkpoint gives them)."""
    if a.dtype == b.dtype and a.strides == b.strides and a.ctypes.data == b.ctypes.data:
        return True
    return bool(np.array_equal(a, b, equal_nan=True))


def _tensor_or_none(kind: str, name: str, value: Any) -> None:
    if value is not None and not isinstance(value, Tensor):
        raise InvalidArgumentError(f"{kind} {name!r} must be a Tensor or None, got {type(value).__name__}")

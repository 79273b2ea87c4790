"""`Optimizer`: what SGD, Adam, AdamW and Adagrad share — the parameters, hyper-parameters
and per-parameter state, validation of every gradient before any update, and state dicts.

Each optimizer updates a parameter from a dense gradient, or from a `RowSparseGrad` by
updating only the rows present ("lazy" updates). Updates of half-precision parameters are
computed in float32 and rounded once; their state is kept in float32.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import numpy as np

from ..autograd import accumulation_dtype
from ..errors import DeviceError, DTypeError, InvalidArgumentError, ShapeError
from ..sparse import RowSparseGrad
from ..tensor import Tensor


class Optimizer:
    """Base class. Subclasses set `hyper` names and implement `_update`."""

    hyper: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Tensor], **hyper: Any) -> None:
        self.params = list(params)
        if not self.params:
            raise InvalidArgumentError(f"{type(self).__name__} got no parameters to optimize")
        for i, param in enumerate(self.params):
            if not isinstance(param, Tensor) or not param.dtype.is_float:
                raise InvalidArgumentError(f"parameter {i} must be a float embtable Tensor, got {param!r}")
        if len({id(p) for p in self.params}) != len(self.params):
            raise InvalidArgumentError("a parameter appears more than once")
        for name, value in hyper.items():
            setattr(self, name, value)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    # --- the step -------------------------------------------------------------------------

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for param in self.params:
            param.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient. Every gradient is checked first, so a
        bad one raises before any parameter or state changes."""
        work = [(param, state, _checked_gradient(i, param))
                for i, (param, state) in enumerate(zip(self.params, self.state))
                if param.grad is not None]
        for param, state, (rows, grad) in work:
            scalars = self._scalars(state)
            buffers = [self._buffer(state, name, param) for name in self.buffers]
            backend = param._backend
            param._replace_data(param._data)  # updated in place below
            if backend.fused_step(self.kernel, param._data, rows, grad, buffers, scalars):
                continue
            wide = accumulation_dtype(param.dtype)
            targets = [param._data, *buffers]
            current = [t if rows is None else t[rows] for t in targets]
            updated = self._update(backend.xp, backend.astype(current[0], wide),
                                   backend.astype(grad, wide), current[1:], scalars, rows is not None)
            for target, values in zip(targets, updated):
                if rows is None:
                    target[...] = values
                else:
                    target[rows] = values

    #: the backend's fused kernel for this optimizer (see `numpy_backend.fused_step`)
    kernel: str = ""
    #: state arrays shaped like each parameter, zero until first used
    buffers: tuple[str, ...] = ()

    def _scalars(self, state: dict[str, Any]) -> tuple:
        """The scalar arguments of this step's update (advancing any step count in `state`)."""
        raise NotImplementedError

    def _update(self, xp: Any, p: Any, g: Any, buffers: list[Any], scalars: tuple,
                sparse: bool) -> list[Any]:
        """The new values of the parameter rows `p` and of its `buffers`' rows (all rows, or
        those of a row-sparse gradient when `sparse`) from their gradient `g`. This is the
        reference rule; a backend's fused kernel computes the same."""
        raise NotImplementedError

    def _buffer(self, state: dict[str, Any], name: str, param: Tensor) -> Any:
        """A zero-initialised state array shaped like `param`, made on first use."""
        if name not in state:
            state[name] = param._backend.zeros(param.shape, accumulation_dtype(param.dtype))
        return state[name]

    # --- state dicts ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {i: {name: value}}, "param_groups": [{hyper..., "params": [i...]}]}``,
        as in PyTorch; arrays are copied into Tensors."""
        state = {}
        for i, (param, entries) in enumerate(zip(self.params, self.state)):
            if entries:
                state[i] = {k: Tensor._wrap(v.copy(), param.device) if hasattr(v, "shape") else v
                            for k, v in entries.items()}
        group = {name: getattr(self, name) for name in self.hyper}
        group["params"] = list(range(len(self.params)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` returned; checked whole before anything changes."""
        try:
            (group,) = state_dict["param_groups"]
            entries = state_dict["state"]
            hyper = {name: group[name] for name in self.hyper}
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidArgumentError(f"not a {type(self).__name__} state dict: {error!r}") from None
        if list(group.get("params", [])) != list(range(len(self.params))):
            raise InvalidArgumentError(f"state dict is for {len(group.get('params', []))} "
                                       f"parameters, this optimizer has {len(self.params)}")
        restored: list[dict[str, Any]] = [{} for _ in self.params]
        for i, values in entries.items():
            if not 0 <= int(i) < len(self.params):
                raise InvalidArgumentError(f"state dict has state for parameter {i}, which does not exist")
            param = self.params[int(i)]
            for name, value in values.items():
                restored[int(i)][name] = _restored_value(name, value, param)
        for name, value in hyper.items():
            setattr(self, name, value)
        self.state = restored


def _restored_value(name: str, value: Any, param: Tensor) -> Any:
    if isinstance(value, (numbers.Number, np.generic)):
        return value
    array = Tensor(value, device=param.device)
    if array.shape[:1] != param.shape[:1] or (array.ndim > 1 and array.shape != param.shape):
        raise ShapeError(f"optimizer state {name!r} has shape {array.shape}, the parameter {param.shape}")
    if array.dtype.is_float:
        array = array.to(dtype=accumulation_dtype(param.dtype))
    return array._data


def _checked_gradient(index: int, param: Tensor) -> tuple[Any, Any]:
    """``(rows, values)`` of a row-sparse gradient, or ``(None, array)`` of a dense one."""
    grad = param.grad
    where = f"parameter {index} (shape {param.shape}, {param.dtype.name})"
    if isinstance(grad, RowSparseGrad):
        indices, values = grad.indices, grad.values
        if grad.shape != param.shape or param.ndim != 2:
            raise ShapeError(f"{where} has a row-sparse gradient of shape {grad.shape}")
        if indices.dtype.name != "I64" or indices.ndim != 1 or values.shape != (indices.shape[0], param.shape[1]):
            raise ShapeError(f"{where} has a row-sparse gradient with indices {indices.shape} "
                             f"{indices.dtype.name} and values {values.shape}; expected I64 [k] and [k, {param.shape[1]}]")
        rows = indices.numpy()
        if rows.size and (rows[0] < 0 or rows[-1] >= param.shape[0] or (np.diff(rows) <= 0).any()):
            raise ShapeError(f"{where} has a row-sparse gradient whose indices are not distinct, "
                             f"ascending rows in [0, {param.shape[0]})")
        array, result = values, (indices._data, values._data)
    elif isinstance(grad, Tensor):
        if grad.shape != param.shape:
            raise ShapeError(f"{where} has a gradient of shape {grad.shape}")
        array, result = grad, (None, grad._data)
    else:
        raise DTypeError(f"{where} has a gradient that is neither a Tensor nor a RowSparseGrad: {grad!r}")
    if array.dtype != param.dtype:
        raise DTypeError(f"{where} has a gradient of dtype {array.dtype.name}")
    if array.device != param.device:
        raise DeviceError(f"{where} is on {param.device} but its gradient is on {array.device}")
    return result


def non_negative(name: str, value: Any) -> float:
    """`value` as a float >= 0, or `InvalidArgumentError` naming `name`."""
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else -1.0
    if not number >= 0:
        raise InvalidArgumentError(f"{name} must be a number >= 0, got {value!r}")
    return number


def betas_pair(value: Any) -> tuple[float, float]:
    """`value` as two floats in [0, 1), or `InvalidArgumentError`."""
    try:
        beta1, beta2 = (non_negative("betas", b) for b in value)
    except (TypeError, ValueError):
        beta1 = beta2 = -1.0
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise InvalidArgumentError(f"betas must be two numbers in [0, 1), got {value!r}")
    return beta1, beta2

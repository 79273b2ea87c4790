"""`Optimizer`: what SGD, Adam, AdamW and Adagrad share — the parameters, hyper-parameters
and per-parameter state, validation of every gradient before any update, and state dicts.

Each optimizer is a `RowRule`: the math of one update, once. The storage that holds a
parameter's values (`embtable.tables.storage_of`) applies it, from a dense gradient, or
from a `RowSparseGrad` by updating only the rows present ("lazy" updates). Updates of
half-precision parameters are computed in float32 and rounded once; their state is kept in
float32.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..backends import FusedStep
from ..core import RowSparseGrad, Tensor
from ..dtype import accumulation_dtype
from ..errors import DeviceError, DTypeError, InvalidArgumentError, ShapeError
from ..tables import storage_of
from ..validate import integer, non_negative


class Optimizer:
    """Base class. Subclasses list their hyper-parameters with a validator each in `hyper`,
    name the backends' kernel for their rule in `fused_step` where there is one, and
    implement `scalars`, `update`, and where they keep state, `buffer_names`."""

    hyper: dict[str, Callable[[str, Any], Any]] = {}
    fused_step: FusedStep | None = None  # None: the reference rule runs on every backend

    def __init__(self, params: Iterable[Tensor], **hyper: Any) -> None:
        if callable(getattr(params, "parameters", None)):
            raise InvalidArgumentError(f"{type(self).__name__} takes the tensors to optimize, got the layer "
                                       f"{type(params).__name__}; pass model.parameters() (for a TableModule, "
                                       f"module.layer.parameters())")
        if isinstance(params, Tensor):
            raise InvalidArgumentError(f"{type(self).__name__} takes an iterable of tensors, got one Tensor; "
                                       f"pass [tensor]")
        self.params = list(params)
        if not self.params:
            raise InvalidArgumentError(f"{type(self).__name__} got no parameters to optimize")
        seen: dict[int, int] = {}
        for i, param in enumerate(self.params):
            if not isinstance(param, Tensor) or not param.dtype.is_float:
                raise InvalidArgumentError(f"parameter {i} must be a float embtable Tensor, got {param!r}")
            if id(param) in seen:
                raise InvalidArgumentError(f"parameter {i} is parameter {seen[id(param)]} again")
            seen[id(param)] = i
        self._set_hyper(hyper)
        self.state: list[dict[str, Any]] = [storage_of(param).resumed_state(self) for param in self.params]

    def _set_hyper(self, values: dict[str, Any]) -> None:
        checked = {name: check(name, values[name]) for name, check in self.hyper.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    # --- the step -------------------------------------------------------------------------

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for param in self.params:
            param.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient. Every gradient is checked first, so a
        bad one raises before any parameter or state changes."""
        work = [(storage_of(param), state, _checked_gradient(i, param))
                for i, (param, state) in enumerate(zip(self.params, self.state))
                if param.grad is not None]
        for storage, _, _ in work:
            storage.check_writable("an optimizer step")
        for storage, state, grad in work:
            step = state.get("step", 0) + 1
            storage.apply_update(self, grad, state, self.scalars(step))
            state["step"] = step

    def portable(self) -> Optimizer:
        """This optimizer's rule alone: an optimizer of the same kind and hyper-parameters
        with no parameters and no state (small and picklable: what a shard applies)."""
        rule = type(self).__new__(type(self))
        rule._set_hyper({name: getattr(self, name) for name in self.hyper})
        rule.params, rule.state = [], []
        return rule

    def buffer_names(self) -> tuple[str, ...]:
        """The state tensors kept per parameter, zero until first used."""
        return ()

    def buffer_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of each state tensor of a parameter of `shape`: the parameter's own."""
        return shape

    def scalars(self, step: int) -> tuple:
        """The scalar arguments of update number `step` (counted per parameter, from 1), in
        the order of the fused kernel's."""
        raise NotImplementedError

    def update(self, xp: Any, p: Any, g: Any, buffers: list[Any], scalars: tuple,
               sparse: bool) -> list[Any]:
        """The new values of the parameter rows `p` and of its `buffers`' rows (all rows, or
        those of a row-sparse gradient when `sparse`) from their gradient `g`, as arrays of
        namespace `xp`. This is the reference rule; a backend's fused kernel computes the
        same."""
        raise NotImplementedError

    # --- state dicts ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {i: {name: value}}, "param_groups": [{hyper..., "params": [i...]}]}``,
        as in PyTorch; arrays are copied into Tensors."""
        kept = [storage_of(param).state_for_dict(self, entries) for param, entries in zip(self.params, self.state)]
        state = {i: {k: Tensor(v, device=v.device) if isinstance(v, Tensor) else v for k, v in entries.items()}
                 for i, entries in enumerate(kept) if entries}
        group = {name: getattr(self, name) for name in self.hyper}
        group["params"] = list(range(len(self.params)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned; checked whole (hyper-parameters as the
        constructor checks them) before anything changes."""
        try:
            (group,) = state_dict["param_groups"]
            entries = dict(state_dict["state"])
            hyper = {name: group[name] for name in self.hyper}
            params = list(group["params"])
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidArgumentError(f"not a {type(self).__name__} state dict: {error!r}") from None
        if params != list(range(len(self.params))):
            raise InvalidArgumentError(f"state dict is for parameters {params}, this optimizer has "
                                       f"{len(self.params)}")
        previous = {name: getattr(self, name) for name in self.hyper}
        self._set_hyper(hyper)  # validates; undone below if the state does not fit
        try:
            restored = [_restored_state(i, entries.get(i, {}), param, self.buffer_names(),
                                        self.buffer_shape(param.shape)) for i, param in enumerate(self.params)]
        except BaseException:
            self._set_hyper(previous)
            raise
        unknown = set(entries) - set(range(len(self.params)))
        if unknown:
            self._set_hyper(previous)
            raise InvalidArgumentError(f"state dict has state for parameters {sorted(unknown, key=str)}, "
                                       f"which do not exist")
        self.state = restored


def _restored_state(index: int, entries: Any, param: Tensor, buffers: tuple[str, ...],
                    shape: tuple[int, ...]) -> dict[str, Any]:
    """One parameter's saved state, checked, as fresh tensors on the parameter's device."""
    if not isinstance(entries, Mapping):
        raise InvalidArgumentError(f"the state of parameter {index} must be a mapping, got {entries!r}")
    restored: dict[str, Any] = {}
    for name, value in entries.items():
        if name == "step":
            restored[name] = integer(f"parameter {index}'s step", value, 0)
        elif name in buffers:
            array = Tensor(value, dtype=accumulation_dtype(param.dtype), device=param.device)
            if array.shape != shape:
                raise ShapeError(f"optimizer state {name!r} of parameter {index} has shape "
                                 f"{array.shape}; expected {shape} for the parameter of shape {param.shape}")
            restored[name] = array  # a fresh row-major copy, as the fused kernels need
        else:
            raise InvalidArgumentError(f"parameter {index} has unknown optimizer state {name!r}; "
                                       f"expected 'step' or one of {list(buffers)}")
    return restored


def _checked_gradient(index: int, param: Tensor) -> Tensor | RowSparseGrad:
    """``param.grad``, checked to fit `param`: a dense tensor of its shape, or a
    `RowSparseGrad` of distinct ascending rows in range."""
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
        ascending = (rows[1:] > rows[:-1]).all()  # then only the ends can be out of range: one pass
        if rows.size and not (ascending and rows[0] >= 0 and rows[-1] < param.shape[0]):
            bad = np.flatnonzero((rows < 0) | (rows >= param.shape[0]) | np.r_[False, np.diff(rows) <= 0])
            raise ShapeError(f"{where} has a row-sparse gradient whose index {rows[bad[0]]} at "
                             f"position {bad[0]} breaks the rule: distinct rows in [0, "
                             f"{param.shape[0]}), ascending")
        if indices.device != param.device:
            raise DeviceError(f"{where} is on {param.device} but its gradient's rows are on {indices.device}")
        dense = values
    elif isinstance(grad, Tensor):
        if grad.shape != param.shape:
            raise ShapeError(f"{where} has a gradient of shape {grad.shape}")
        dense = grad
    else:
        raise DTypeError(f"{where} has a gradient that is neither a Tensor nor a RowSparseGrad: {grad!r}")
    if dense.dtype != param.dtype:
        raise DTypeError(f"{where} has a gradient of dtype {dense.dtype.name}")
    if dense.device != param.device:
        raise DeviceError(f"{where} is on {param.device} but its gradient is on {dense.device}")
    return grad


def betas_pair(name: str, value: Any) -> tuple[float, float]:
    """`value` as two floats in [0, 1), or `InvalidArgumentError` naming `name`."""
    try:
        beta1, beta2 = (non_negative(name, b) for b in value)
    except (TypeError, ValueError):
        beta1 = beta2 = -1.0
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise InvalidArgumentError(f"{name} must be two numbers in [0, 1), got {value!r}")
    return beta1, beta2


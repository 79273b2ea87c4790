"""`DenseTable`: a table whose rows are one array in memory, on any device (today's kind)."""

from __future__ import annotations

from typing import Any, Sequence

from ..backends import Backend
from ..core import RowSparseGrad, Tensor, backend_of, data_of, mark_modified, replace_data, wrap
from ..device import Device
from ..dtype import DType, accumulation_dtype
from .base import RowRule


class DenseTable:
    """The rows of a tensor held in memory: a layer's table, or any trainable tensor whose
    optimizer update runs here (a `Linear`'s weight and bias are dense 'tables' too).

    It keeps no copy of its own: the tensor's data is the table, so a storage can be made
    for any tensor at any time.
    """

    __slots__ = ("_tensor",)

    def __init__(self, tensor: Tensor) -> None:
        self._tensor = tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return self._tensor.shape

    @property
    def num_rows(self) -> int:
        return len(self._tensor)

    @property
    def dtype(self) -> DType:
        return self._tensor.dtype

    @property
    def device(self) -> Device:
        return self._tensor.device

    @property
    def backend(self) -> Backend:
        return backend_of(self._tensor)

    def gather(self, indices: Tensor) -> Tensor:
        backend = backend_of(self._tensor)
        return wrap(backend.take_rows(data_of(self._tensor), data_of(indices)), backend)

    def renorm_rows_(self, indices: Tensor, max_norm: float, norm_type: float) -> None:
        backend, table = backend_of(self._tensor), data_of(self._tensor)
        backend.renorm_rows_(table, backend.distinct(data_of(indices), table.shape[0]), max_norm, norm_type)
        mark_modified(self._tensor)

    def apply_update(self, rule: RowRule, grad: Tensor | RowSparseGrad, state: dict[str, Any],
                     scalars: Sequence[Any]) -> None:
        param = self._tensor
        backend = backend_of(param)
        buffers = [data_of(self._buffer(state, name)) for name in rule.buffer_names()]
        sparse = isinstance(grad, RowSparseGrad)
        rows = data_of(grad.indices) if sparse else None
        values = data_of(grad.values if sparse else grad)
        mark_modified(param)  # updated in place below
        table = data_of(param)
        if backend.fused_step(rule.fused_step, table, rows, values, buffers, scalars):
            return
        wide = accumulation_dtype(param.dtype)
        targets = [table, *buffers]
        current = [t if rows is None else t[rows] for t in targets]
        updated = rule.update(backend.xp, backend.astype(current[0], wide), backend.astype(values, wide),
                              current[1:], tuple(scalars), sparse)
        for target, new in zip(targets, updated):
            new = backend.astype(new, backend.dtype_of(target))  # half precision: rounded once
            if rows is None:
                target[...] = new
            else:
                target[rows] = new

    def _buffer(self, state: dict[str, Any], name: str) -> Tensor:
        """The state tensor `name`, shaped like the table in its accumulation dtype: zeros
        when first used, moved here when the table moved (``Layer.to``) since."""
        param = self._tensor
        buffer = state.get(name)
        if buffer is None:
            backend = backend_of(param)
            buffer = wrap(backend.zeros(param.shape, accumulation_dtype(param.dtype)), backend)
        elif buffer.device != param.device:
            buffer = buffer.to(param.device)
        state[name] = buffer
        return buffer

    def values(self) -> Tensor:
        return self._tensor.detach()

    def load_(self, values: Tensor) -> None:
        replace_data(self._tensor, data_of(values), backend_of(values))

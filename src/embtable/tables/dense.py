"""`DenseTable`: a table whose rows are one array in memory, on any device (today's kind)."""

from __future__ import annotations

from typing import Any, Sequence

from ..backends import Backend
from ..core import RowSparseGrad, Tensor, backend_of, data_of, mark_modified, replace_data, wrap
from ..core.ops.bags import Bags
from ..device import Device
from ..dtype import DType, accumulation_dtype
from ..errors import InvalidArgumentError
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

    @property
    def path(self) -> None:
        return None

    def check_writable(self, change: str) -> None:
        pass  # a tensor in memory may always change

    def check_load(self, device: Device | None, dtype: DType | None) -> None:
        pass  # it takes any device and dtype

    def state_for_dict(self, rule: RowRule, state: dict[str, Any]) -> dict[str, Any]:
        """The buffers are in `state`."""
        return state

    def resumed_state(self, rule: RowRule) -> dict[str, Any]:
        return {}

    def commit(self) -> None:
        raise InvalidArgumentError("commit() is for file-backed tables (Embedding.create / open); this table is "
                                   "in memory: save(path) writes it to a file")

    def gather(self, indices: Tensor) -> Tensor:
        backend = backend_of(self._tensor)
        return wrap(backend.take_rows(data_of(self._tensor), data_of(indices)), backend)

    def pool(self, indices: Tensor, bags: Bags, weights: Tensor | None, mode: str) -> tuple[Tensor, Tensor | None]:
        backend = backend_of(self._tensor)
        values, argmax = backend.pool_rows(data_of(self._tensor), data_of(indices), data_of(bags.offsets),
                                           None if weights is None else data_of(weights), mode, bags.padding_idx)
        return wrap(values, backend), None if argmax is None else wrap(argmax, backend)

    def prefetch(self, indices: Tensor) -> None:
        """Nothing to do: every row is in memory already."""

    def renorm_rows_(self, indices: Tensor, max_norm: float, norm_type: float) -> None:
        backend, table = backend_of(self._tensor), data_of(self._tensor)
        backend.renorm_rows_(table, backend.distinct(data_of(indices), table.shape[0]), max_norm, norm_type)
        mark_modified(self._tensor)

    def apply_update(self, rule: RowRule, grad: Tensor | RowSparseGrad, state: dict[str, Any],
                     scalars: Sequence[Any]) -> None:
        param = self._tensor
        kept = {name: self._buffer(state.get(name), rule.buffer_shape(self.shape)) for name in rule.buffer_names()}
        buffers = [data_of(buffer) for buffer in kept.values()]
        sparse = isinstance(grad, RowSparseGrad)
        rows = data_of(grad.indices) if sparse else None
        gradient = data_of(grad.values if sparse else grad)
        mark_modified(param)  # updated in place below
        if not backend_of(param).fused_step(rule.fused_step, data_of(param), rows, gradient, buffers, scalars):
            self._reference_update(rule, rows, gradient, buffers, scalars)
        state.update(kept)  # new or moved buffers, kept once the update is done

    def _reference_update(self, rule: RowRule, rows: Any, gradient: Any, buffers: list[Any],
                          scalars: Sequence[Any]) -> None:
        """`rule`'s reference update over the backend's array namespace, in the accumulation
        dtype (half precision: rounded once into the table)."""
        backend, table = backend_of(self._tensor), data_of(self._tensor)
        wide = accumulation_dtype(self._tensor.dtype)
        targets = [table, *buffers]
        current = [t if rows is None else t[rows] for t in targets]
        updated = rule.update(backend.xp, backend.astype(current[0], wide), backend.astype(gradient, wide),
                              current[1:], tuple(scalars), rows is not None)
        for target, new in zip(targets, updated):
            new = backend.astype(new, backend.dtype_of(target))
            if rows is None:
                target[...] = new
            else:
                target[rows] = new

    def _buffer(self, buffer: Tensor | None, shape: tuple[int, ...]) -> Tensor:
        """A state tensor of `shape` on the table's device in its accumulation dtype: zeros
        when first used, moved and cast when the table moved (``Layer.to``) since."""
        param = self._tensor
        wide = accumulation_dtype(param.dtype)
        if buffer is None:
            backend = backend_of(param)
            return wrap(backend.zeros(shape, wide), backend)
        if buffer.device != param.device or buffer.dtype != wide:
            return buffer.to(param.device, wide)
        return buffer

    def values(self) -> Tensor:
        return self._tensor.detach()

    def load_(self, values: Tensor) -> None:
        replace_data(self._tensor, data_of(values), backend_of(values))

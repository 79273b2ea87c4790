"""The array-with-gradients engine: `Tensor`, autograd, `RowSparseGrad` and the
differentiable ops. Imports no layer and no table."""

from . import ops
from .autograd import is_grad_enabled, no_grad
from .sparse_grad import RowSparseGrad
from .tensor import (SparseGradient, Tensor, ValueKeeper, backend_of, data_of, keep_values, keeper_of,
                     mark_modified, replace_data, wrap)

__all__ = ["RowSparseGrad", "SparseGradient", "Tensor", "ValueKeeper", "backend_of", "data_of", "is_grad_enabled",
           "keep_values", "keeper_of", "mark_modified", "no_grad", "ops", "replace_data", "wrap"]

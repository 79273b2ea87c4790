"""Optimizers: each takes dense gradients or row-sparse ones (lazy updates)."""

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rowwise_adagrad import RowWiseAdagrad
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Adagrad", "Optimizer", "RowWiseAdagrad"]

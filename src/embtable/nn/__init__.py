"""Layers and the functions behind them."""

from . import functional
from .embedding import Embedding
from .layer import Layer, LayerState
from .linear import Linear

__all__ = ["Embedding", "Layer", "LayerState", "Linear", "functional"]

"""Layers and the functions behind them."""

from . import functional
from .bag import EmbeddingBag
from .embedding import Embedding
from .layer import Layer, LayerState
from .linear import Linear

__all__ = ["Embedding", "EmbeddingBag", "Layer", "LayerState", "Linear", "functional"]

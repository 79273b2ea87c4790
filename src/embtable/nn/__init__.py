"""Layers and the functions behind them."""

from . import functional, utils
from .activation import Dropout, ReLU
from .bag import EmbeddingBag
from .embedding import Embedding
from .layer import Layer, LayerState
from .linear import Linear
from .quantized import QuantizedEmbedding, QuantizedEmbeddingBag
from .sequential import Sequential

__all__ = ["Dropout", "Embedding", "EmbeddingBag", "Layer", "LayerState", "Linear", "QuantizedEmbedding",
           "QuantizedEmbeddingBag", "ReLU", "Sequential", "functional", "utils"]

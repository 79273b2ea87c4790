"""Files of word vectors: word2vec text and binary, GloVe and fastText ``.vec``, plain or
compressed."""

from .formats import FORMATS
from .vocabulary import DuplicateWordWarning
from .word_vectors import load_word_vectors, save_word_vectors

__all__ = ["FORMATS", "DuplicateWordWarning", "load_word_vectors", "save_word_vectors"]

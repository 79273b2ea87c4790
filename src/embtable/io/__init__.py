"""Files of word vectors: word2vec text and binary, GloVe and fastText ``.vec``."""

from .word_vectors import FORMATS, load_word_vectors, save_word_vectors

__all__ = ["FORMATS", "load_word_vectors", "save_word_vectors"]

"""Programs built on the library — the ``embtable`` command, its demo (word2vec on the
standard library's docs) and its benchmark — not part of it: nothing in embtable imports
them."""

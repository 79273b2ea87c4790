"""The one random generator behind every initialisation, so `manual_seed` makes them all
reproducible. Values are drawn on the host, so a seed gives the same weights on every device.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from .validate import integer

#: Rows per independently seeded chunk of a table's initial values. Fixed, so that a table
#: drawn whole, in a file chunk by chunk, or shard by shard gets the same values.
CHUNK_ROWS = 1 << 16

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Reset the generator so that later random initialisations repeat exactly."""
    global _generator
    _generator = np.random.default_rng(integer("seed", seed, 0))


def generator() -> np.random.Generator:
    """The current generator."""
    return _generator


@contextlib.contextmanager
def preserved_generator() -> Iterator[None]:
    """Within this context draws happen as usual, but afterwards the generator is back where
    it was (for initialisations that are about to be overwritten)."""
    state = _generator.bit_generator.state
    try:
        yield
    finally:
        _generator.bit_generator.state = state


def table_seed() -> int:
    """One draw from the generator: the seed of a table's initial values (`chunk_states`)."""
    return int(_generator.integers(1 << 63))


def chunk_states(seed: int, first_chunk: int, count: int) -> np.ndarray:
    """The random states (``[count, 4]`` uint64, xoshiro256**'s) of chunks ``first_chunk ..``
    of the initial rows of `seed`: rows ``[c * CHUNK_ROWS, (c + 1) * CHUNK_ROWS)`` of a
    table come from chunk c's own stream, seeded by the seed and c alone, so the values of
    a row depend only on the seed and the row's place, however the table is drawn (whole,
    in a file chunk by chunk, shard by shard)."""
    states = [np.random.SeedSequence(seed, spawn_key=(chunk,)).generate_state(4, np.uint64)
              for chunk in range(first_chunk, first_chunk + count)]
    return np.array(states, dtype=np.uint64).reshape(count, 4)

"""The one random generator behind every initialisation, so `manual_seed` makes them all
reproducible. Values are drawn on the host, so a seed gives the same weights on every device.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
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
    """One draw from the generator: the seed of a table's initial values (`standard_normal_rows`)."""
    return int(_generator.integers(1 << 63))


def standard_normal_rows(out: np.ndarray, seed: int, first_row: int = 0) -> None:
    """Fill the 2-D float array `out` with rows ``first_row ..`` (a multiple of
    `CHUNK_ROWS`) of the N(0, 1) rows of `seed`: rows ``[c * CHUNK_ROWS, (c + 1) *
    CHUNK_ROWS)`` come from their own stream (the seed and ``c``), so the values of a row
    depend only on the seed and the row's place, however the table is drawn; the chunks are
    drawn on all cores."""
    starts = range(0, out.shape[0], CHUNK_ROWS)

    def draw(start: int) -> None:
        chunk = (first_row + start) // CHUNK_ROWS
        stream = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(chunk,))))
        stream.standard_normal(dtype=out.dtype, out=out[start:start + CHUNK_ROWS])

    if len(starts) <= 1:
        for start in starts:
            draw(start)
        return
    with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
        list(pool.map(draw, starts))

"""The one random generator behind every initialisation, so `manual_seed` makes them all
reproducible. Values are drawn on the host, so a seed gives the same weights on every device.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from .validate import integer

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

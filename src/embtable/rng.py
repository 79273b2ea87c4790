"""The one random generator behind every initialisation, so `manual_seed` makes them all
reproducible. Values are drawn on the host, so a seed gives the same weights on every device.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Iterator

import numpy as np

from .errors import InvalidArgumentError

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Reset the generator so that later random initialisations repeat exactly."""
    global _generator
    try:
        value = operator.index(seed)
    except TypeError:
        raise InvalidArgumentError(f"a seed must be an int, got {seed!r}") from None
    if value < 0:
        raise InvalidArgumentError(f"a seed must be >= 0, got {seed}")
    _generator = np.random.default_rng(value)


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

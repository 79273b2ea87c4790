"""Checks of scalar arguments at the public edge. Each returns the value in its canonical
type or raises `InvalidArgumentError` naming the argument, the bad value and what was
expected. Bools are refused wherever a number is expected."""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np

from .errors import InvalidArgumentError


def integer(name: str, value: Any, minimum: int) -> int:
    """`value` as an int >= `minimum`."""
    try:
        number = operator.index(value)
    except TypeError:
        number = minimum - 1
    if isinstance(value, (bool, np.bool_)) or number < minimum:
        raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


def positive_int(name: str, value: Any) -> int:
    """`value` as an int >= 1."""
    return integer(name, value, 1)


def real(name: str, value: Any, *, positive: bool) -> float:
    """`value` as a float that is > 0 (`positive`) or >= 0; inf allowed, NaN not."""
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) else math.nan
    if not (number > 0 if positive else number >= 0):
        raise InvalidArgumentError(f"{name} must be a number {'>' if positive else '>='} 0, got {value!r}")
    return number


def positive(name: str, value: Any) -> float:
    """`value` as a float > 0 (inf allowed)."""
    return real(name, value, positive=True)


def non_negative(name: str, value: Any) -> float:
    """`value` as a float >= 0."""
    return real(name, value, positive=False)


def probability(name: str, value: Any) -> float:
    """`value` as a float in [0, 1]."""
    number = real(name, value, positive=False)
    if number > 1:
        raise InvalidArgumentError(f"{name} must be a probability in [0, 1], got {value!r}")
    return number


def flag(name: str, value: Any) -> bool:
    """`value` as a bool (True, False or NumPy's bools; not 0 or 1)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
    return bool(value)

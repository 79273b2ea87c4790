"""`ieee`: the ops' float results are IEEE 754's, as PyTorch's are, without NumPy's warnings."""

from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np

Op = TypeVar("Op", bound=Callable)


def ieee(op: Op) -> Op:
    """`op` run with NumPy's floating-point error reports off, for the length of each call.

    Where the math has no finite answer, IEEE 754 gives one (``log(0) = -inf``,
    ``1 / 0 = inf``, ``0 / 0 = nan``, ``exp(1000) = inf``, ``sqrt(-1) = nan``) and PyTorch
    returns it silently; NumPy returns the same values but also emits a RuntimeWarning,
    which from inside a library is noise, and an exception under ``-W error``. Only the
    decorated call is affected: the caller's own NumPy settings stay as they are.
    """
    return np.errstate(all="ignore")(op)

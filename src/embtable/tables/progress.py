"""Progress bars that a caller (``progress=False``) and the environment (``TQDM_DISABLE``)
can silence.

tqdm 4.70 reads ``TQDM_DISABLE`` itself, but only as the default of its `disable` argument
(a caller that passes `disable`, as embtable must to show bars only where they help,
overrides it), only once, when tqdm is first imported, and as a plain truth value (``"0"``
silences too). So embtable reads the variable itself, whenever a bar is about to be made:
any value but ``""``, ``"0"``, ``"false"``, ``"no"`` or ``"off"`` (in any case) silences
every bar embtable shows.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

_NOT_SILENCED = ("", "0", "false", "no", "off")


def silenced_by_environment() -> bool:
    """Whether ``TQDM_DISABLE`` is set to silence progress bars."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in _NOT_SILENCED


def progress_bar(total: int, shown: bool, **options: Any) -> Any:
    """A context manager giving a tqdm bar over `total` (tqdm imported here, not with
    embtable; `options` are tqdm's), or, when not `shown` or when the environment silences
    bars, a bar that draws nothing (its `update` does nothing)."""
    if not shown or silenced_by_environment():
        return contextlib.nullcontext(_NoBar())
    from tqdm import tqdm

    return tqdm(total=total, **options)


class _NoBar:
    """What a silenced bar is: tqdm's methods that embtable calls, doing nothing."""

    def update(self, count: int) -> None:
        pass

    def set_postfix(self, *values: Any, **named: Any) -> None:
        pass

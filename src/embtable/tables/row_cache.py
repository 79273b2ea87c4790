"""`RowCache`: the bookkeeping of a file-backed table's rows held in memory — which row is
in which slot, which call last used it, and whether it changed since it was last written
to the file. It holds no row values: the table keeps those in arrays indexed by slot."""

from __future__ import annotations

from typing import Any

import numpy as np

EVICTED_SHARE = 4  # when full, a quarter of the slots are freed at once (one partial sort)


def _hashing() -> Any:
    """The numba hash-map kernels, imported (and numba with them) on first use."""
    from ..kernels.cpu import hashing

    return hashing


class RowCache:
    """Slots ``0 .. capacity - 1``, each empty or holding one table row."""

    def __init__(self, capacity: int) -> None:
        self.row_of = np.full(capacity, -1, np.int64)  # the row in each slot, -1: empty
        self.used = np.zeros(capacity, np.int64)  # the call that last used each slot
        self.dirty = np.zeros(capacity, bool)  # changed since last written to the file
        self.arriving = np.zeros(capacity, bool)  # its row's values still being read (a prefetch)
        self._free = np.arange(capacity - 1, -1, -1, dtype=np.int64)  # a stack of empty slots
        self._free_count = capacity
        self._call = 0
        self._bits = max(1, int(2 * capacity - 1).bit_length())  # the map stays at most half full
        self._keys = np.full(1 << self._bits, -1, np.int64)
        self._slots = np.zeros(1 << self._bits, np.int64)

    @property
    def capacity(self) -> int:
        return self.row_of.shape[0]

    @property
    def free(self) -> int:
        """The number of empty slots."""
        return self._free_count

    def begin_call(self) -> None:
        """Start a new call: rows used from now on are the most recent."""
        self._call += 1

    def slots_of(self, rows: np.ndarray) -> np.ndarray:
        """The slot of each of `rows` (int64, any order, repeats allowed), -1 where absent;
        the present ones count as used by this call."""
        slots = np.empty(rows.shape[0], np.int64)
        _hashing().find(self._keys, self._slots, self._bits, rows, slots)
        self.used[slots[slots >= 0]] = self._call
        return slots

    def assign(self, rows: np.ndarray) -> np.ndarray:
        """Empty slots for `rows` (distinct, absent, at most `free` of them), now holding
        them, clean and used by this call."""
        count = rows.shape[0]
        slots = self._free[self._free_count - count:self._free_count][::-1].copy()
        self._free_count -= count
        self.row_of[slots] = rows
        self.used[slots] = self._call
        self.dirty[slots] = False
        _hashing().insert(self._keys, self._slots, self._bits, rows, slots)
        return slots

    def victims(self, needed: int) -> np.ndarray:
        """The least recently used occupied slots not used by this call: at least `needed`
        of them where there are (a quarter of the cache at once, so this partial sort runs
        rarely), fewer when the call uses the others."""
        count = min(max(needed, self.capacity // EVICTED_SHARE), self.capacity - self._free_count)
        age = np.where(self.row_of >= 0, self.used, np.iinfo(np.int64).max)
        if count <= 0:
            return np.empty(0, np.int64)
        oldest = np.argpartition(age, count - 1)[:count] if count < self.capacity else np.arange(self.capacity)
        return oldest[age[oldest] < self._call]

    def release(self, slots: np.ndarray) -> None:
        """Empty `slots` (occupied, distinct; their rows written back by the caller)."""
        _hashing().remove(self._keys, self._slots, self._bits, self.row_of[slots])
        self.row_of[slots] = -1
        self.dirty[slots] = False
        self._free[self._free_count:self._free_count + slots.shape[0]] = slots
        self._free_count += slots.shape[0]

    def occupied(self) -> np.ndarray:
        """Every occupied slot, in slot order."""
        return np.flatnonzero(self.row_of >= 0)

    def grown(self, capacity: int) -> RowCache:
        """A cache of `capacity` (>= this one's) slots holding the same rows in the same
        slots, with their use, dirtiness and arrival."""
        bigger = RowCache(capacity)
        kept = self.occupied()
        empty = np.setdiff1d(np.arange(capacity, dtype=np.int64), kept)
        bigger._free_count = empty.shape[0]
        bigger._free[:bigger._free_count] = empty[::-1]
        bigger._call = self._call
        for name in ("row_of", "used", "dirty", "arriving"):
            getattr(bigger, name)[kept] = getattr(self, name)[kept]
        _hashing().insert(bigger._keys, bigger._slots, bigger._bits, self.row_of[kept], kept)
        return bigger

"""`Placement`: which shard of a sharded table holds each row, and where in that shard.

Rows are first permuted by a fixed bijection of the ids (a multiplication modulo the
number of rows, so runs of neighbouring or hot ids spread over every shard as hashing would
spread them), then the permuted space is cut into contiguous ranges, one per shard. The
permutation does not depend on the shard count, so resharding re-slices ranges.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidArgumentError

MULTIPLIER = 0x9E3779B1  # a prime near 2^32 / golden ratio: consecutive ids land far apart
MAX_ROWS = 3_000_000_000  # row * multiplier (both below this) fits in int64


class Placement:
    """Rows ``0 .. num_rows - 1`` over `shards` shards."""

    def __init__(self, num_rows: int, shards: int) -> None:
        if num_rows > MAX_ROWS:
            raise InvalidArgumentError(f"a sharded table holds at most {MAX_ROWS} rows, got {num_rows}")
        if not 1 <= shards <= num_rows:
            raise InvalidArgumentError(f"shards must be between 1 and num_embeddings ({num_rows}), got {shards}")
        self.num_rows = num_rows
        self.shards = shards
        multiplier = MULTIPLIER % num_rows or 1
        while math.gcd(multiplier, num_rows) != 1:
            multiplier += 1
        self.multiplier = multiplier
        self._inverse = pow(multiplier, -1, num_rows) if num_rows > 1 else 0
        self.bounds = np.array([num_rows * k // shards for k in range(shards + 1)], np.int64)

    def split(self, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each shard, which of `rows` (int64, in range, distinct) it holds, as
        positions into `rows`, and their places in the shard (ascending)."""
        permuted = rows * self.multiplier % self.num_rows
        order = np.argsort(permuted, kind="stable")  # by place: each shard's range in turn
        ends = np.searchsorted(permuted[order], self.bounds[1:])
        parts, start = [], 0
        for k, end in enumerate(ends):
            picked = order[start:end]
            parts.append((picked, permuted[picked] - self.bounds[k]))
            start = end
        return parts

    def rows_of(self, shard: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The rows held at places ``start:stop`` of `shard` (all of them by default), in
        place order."""
        low, high = int(self.bounds[shard]), int(self.bounds[shard + 1])
        places = np.arange(low + start, high if stop is None else low + stop, dtype=np.int64)
        return places * self._inverse % self.num_rows

    def size_of(self, shard: int) -> int:
        """How many rows `shard` holds."""
        return int(self.bounds[shard + 1] - self.bounds[shard])

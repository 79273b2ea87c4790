"""An open-addressing hash map from int64 keys (>= 0) to int64 values, as two flat arrays:
`keys` (-1 marks an empty place) and `values`, of one power-of-two size. Linear probing
from a Fibonacci hash; no deletion (a map that loses keys is rebuilt from the ones kept).
Kept at most half full by its owner, so probes stay short."""

from __future__ import annotations

import numba as nb
import numpy as np

from .launch import parallel_jit

jit = nb.njit(cache=True, nogil=True)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@jit
def _home(key, bits):
    """Where `key`'s probe starts in a map of ``2 ** bits`` places."""
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(64 - bits))


@parallel_jit
def find(keys, values, bits, queries, out):
    """``out[i]`` = the value of ``queries[i]``, or -1 where it is absent."""
    mask = keys.shape[0] - 1
    for i in nb.prange(queries.shape[0]):
        query = queries[i]
        place = _home(query, bits)
        found = -1
        while keys[place] != -1:
            if keys[place] == query:
                found = values[place]
                break
            place = (place + 1) & mask
        out[i] = found


@jit
def insert(keys, values, bits, new_keys, new_values):
    """Map each of `new_keys` (absent, distinct) to its `new_values` entry."""
    mask = keys.shape[0] - 1
    for i in range(new_keys.shape[0]):
        place = _home(new_keys[i], bits)
        while keys[place] != -1:
            place = (place + 1) & mask
        keys[place] = new_keys[i]
        values[place] = new_values[i]


@jit
def upsert(keys, values, bits, new_keys, new_values):
    """Map each of `new_keys` (distinct) to its `new_values` entry, replacing the value of
    a key already present. Returns the number of keys that were absent."""
    mask = keys.shape[0] - 1
    added = 0
    for i in range(new_keys.shape[0]):
        place = _home(new_keys[i], bits)
        while keys[place] != -1 and keys[place] != new_keys[i]:
            place = (place + 1) & mask
        if keys[place] == -1:
            added += 1
            keys[place] = new_keys[i]
        values[place] = new_values[i]
    return added


@jit
def remove(keys, values, bits, old_keys):
    """Forget each of `old_keys` (present, distinct), shifting the probe runs behind it back
    so that every key stays reachable from its home."""
    mask = keys.shape[0] - 1
    for i in range(old_keys.shape[0]):
        hole = _home(old_keys[i], bits)
        while keys[hole] != old_keys[i]:
            hole = (hole + 1) & mask
        place = hole
        while True:
            place = (place + 1) & mask
            if keys[place] == -1:
                break
            home = _home(keys[place], bits)
            stays = (hole < home <= place) if hole <= place else (home > hole or home <= place)
            if not stays:
                keys[hole] = keys[place]
                values[hole] = values[place]
                hole = place
        keys[hole] = -1

"""Reuse of large host buffers for the arrays the CPU kernels fill.

Fresh memory is expensive: the operating system zeroes every new page on first touch, which
was a third of the time of a large lookup on our benchmark machine, and on a virtual machine
a first touch sometimes cost ten times that. So the outputs of the CPU kernels that are at
least `MIN_BYTES` (lookup results, table gradients) come from a `BufferCache`: a buffer is
handed out again once nothing but the cache references it — the array, and every view of
it, has been dropped. Values are never shared: a buffer in use is never handed out.

Every buffer hands out memory that starts on a cache line (`embtable.memory`).

Idle buffers are kept up to a limit (`set_host_cache_limit`; 0 turns reuse off), enforced at
each large request and when the limit is set, and released by `empty_host_cache`, as
PyTorch's ``torch.cuda.empty_cache`` does for its GPU cache.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from typing import Sequence

import numpy as np

from ..memory import CACHE_LINE
from ..validate import integer

#: Smaller arrays come from NumPy directly: the C allocator already reuses their memory.
MIN_BYTES = 8 * 2**20
DEFAULT_LIMIT = 2**30


def _references(buffers: list[np.ndarray], i: int) -> int:
    return sys.getrefcount(buffers[i])


def _usable(buffer: np.ndarray) -> int:
    """The bytes of `buffer` an array can use: it has one cache line more, to start on one."""
    return buffer.nbytes - CACHE_LINE


#: The count `_references` gives for a buffer that only the cache's list holds.
_UNREFERENCED = _references([np.empty(0)], 0)


class BufferCache:
    """Hands out uninitialised arrays, reusing the memory of dropped ones of about the size."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._buffers: list[np.ndarray] = []  # flat uint8, most recently handed out last
        self._lock = threading.Lock()

    def empty(self, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
        """Like ``np.empty(shape, dtype)``, in an idle cached buffer of this size or up to
        twice it when there is one. Idle buffers beyond the limit are released."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype)
        with self._lock:
            buffer = self._take_idle(nbytes) if self.limit else None
            self._trim(self.limit)
            if buffer is None:
                buffer = np.empty(nbytes + CACHE_LINE, np.uint8)  # room to start on a cache line
            if self.limit:
                self._buffers.append(buffer)
        start = -buffer.ctypes.data % CACHE_LINE
        return buffer[start:start + nbytes].view(dtype).reshape(shape)

    def trim(self, limit: int) -> None:
        """Release the least recently used idle buffers until at most `limit` bytes are idle."""
        with self._lock:
            self._trim(limit)

    def idle_bytes(self) -> int:
        """The bytes held by buffers nothing else references."""
        with self._lock:
            return sum(_usable(self._buffers[i]) for i in self._idle())

    def _idle(self) -> list[int]:
        return [i for i in range(len(self._buffers)) if _references(self._buffers, i) == _UNREFERENCED]

    def _take_idle(self, nbytes: int) -> np.ndarray | None:
        """The smallest idle buffer of `nbytes` to twice that (the most recent of equals), so
        that a training loop's outputs and gradients each find their own buffer again."""
        fits = [i for i in self._idle() if nbytes <= _usable(self._buffers[i]) <= 2 * nbytes]
        if not fits:
            return None
        return self._buffers.pop(min(fits, key=lambda i: (self._buffers[i].nbytes, -i)))

    def _trim(self, limit: int) -> None:
        idle = self._idle()
        excess = sum(_usable(self._buffers[i]) for i in idle) - limit
        dropped = set()
        for i in idle:
            if excess <= 0:
                break
            excess -= _usable(self._buffers[i])
            dropped.add(i)
        self._buffers = [b for i, b in enumerate(self._buffers) if i not in dropped]

    def _forked(self) -> None:
        """In a child process: a lock another thread held at the fork would never be released."""
        self._lock = threading.Lock()


host_cache = BufferCache()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=host_cache._forked)


def set_host_cache_limit(nbytes: int) -> None:
    """Keep at most `nbytes` of idle host buffers for reuse (default 1 GiB); 0 turns reuse
    off. Idle buffers beyond it are released now; buffers in use never count. Arrays dropped
    later may stay idle beyond the limit until the next large allocation trims them."""
    host_cache.limit = integer("nbytes", nbytes, 0)
    host_cache.trim(host_cache.limit)


def empty_host_cache() -> None:
    """Release every idle cached host buffer to the system (arrays in use are untouched)."""
    host_cache.trim(0)

"""Reuse of large host buffers for the arrays the CPU kernels fill.

Fresh memory is expensive: the operating system zeroes every new page on first touch, which
was a third of the time of a large lookup on our benchmark machine, and on a virtual machine
a first touch sometimes cost ten times that. So the outputs of the CPU kernels that are at
least `MIN_BYTES` (lookup results, table gradients) come from a `BufferCache`: a buffer is
handed out again once nothing but the cache references it — the array, and every view of
it, has been dropped. Values are never shared: a buffer in use is never handed out.

Idle buffers are kept up to a limit (`set_host_cache_limit`; 0 turns reuse off) and released
by `empty_host_cache`, as PyTorch's ``torch.cuda.empty_cache`` does for its GPU cache.
"""

from __future__ import annotations

import sys
import threading
from typing import Sequence

import numpy as np

from ..validate import integer

#: Smaller arrays come from NumPy directly: the C allocator already reuses their memory.
MIN_BYTES = 8 * 2**20
DEFAULT_LIMIT = 2**30


def _references(buffers: list[np.ndarray], i: int) -> int:
    return sys.getrefcount(buffers[i])


#: The count `_references` gives for a buffer that only the cache's list holds.
_UNREFERENCED = _references([np.empty(0)], 0)


class BufferCache:
    """Hands out uninitialised arrays, reusing the memory of dropped ones of the same size."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._buffers: list[np.ndarray] = []  # flat uint8, most recently handed out last
        self._lock = threading.Lock()

    def empty(self, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
        """Like ``np.empty(shape, dtype)``, from a cached buffer when one of this size is idle."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < MIN_BYTES or self.limit == 0:
            return np.empty(shape, dtype)
        with self._lock:
            buffer = self._take_idle(nbytes)
            if buffer is None:
                buffer = np.empty(nbytes, np.uint8)
                self._trim(self.limit)
            self._buffers.append(buffer)
        return buffer.view(dtype).reshape(shape)

    def release(self) -> None:
        """Drop every idle buffer (its memory goes back to the system)."""
        with self._lock:
            self._trim(0)

    def idle_bytes(self) -> int:
        """The bytes held by buffers nothing else references."""
        with self._lock:
            return sum(self._buffers[i].nbytes for i in self._idle())

    def _idle(self) -> list[int]:
        return [i for i in range(len(self._buffers)) if _references(self._buffers, i) == _UNREFERENCED]

    def _take_idle(self, nbytes: int) -> np.ndarray | None:
        for i in reversed(self._idle()):
            if self._buffers[i].nbytes == nbytes:
                return self._buffers.pop(i)
        return None

    def _trim(self, limit: int) -> None:
        """Drop the least recently used idle buffers until at most `limit` bytes are idle."""
        idle = self._idle()
        excess = sum(self._buffers[i].nbytes for i in idle) - limit
        dropped = set()
        for i in idle:
            if excess <= 0:
                break
            excess -= self._buffers[i].nbytes
            dropped.add(i)
        self._buffers = [b for i, b in enumerate(self._buffers) if i not in dropped]


host_cache = BufferCache()


def set_host_cache_limit(nbytes: int) -> None:
    """Keep at most `nbytes` of idle host buffers for reuse (default 1 GiB); 0 turns reuse off
    and releases them. Buffers in use never count: the limit bounds memory kept for later."""
    host_cache.limit = integer("nbytes", nbytes, 0)
    if host_cache.limit == 0:
        host_cache.release()


def empty_host_cache() -> None:
    """Release every idle cached host buffer to the system (arrays in use are untouched)."""
    host_cache.release()

"""Host arrays whose data starts on a cache line.

NumPy's allocator aligns to 16 bytes, so a 256-byte table row (64 floats) usually spans five
cache lines instead of four, and its vector loads straddle lines. Measured on the 2-core
machine, pooling 2048 bags of 50 Zipf rows of a 1e5 x 64 table took 1.17-1.19 ms from a
64-byte aligned table against 1.36 ms from NumPy's own (8192 bags of 10 uniform rows of
1e6 x 64, read from memory: 4.41-4.57 against 4.54-4.93 ms). Tables, optimizer state and
large results are therefore allocated here.
"""

from __future__ import annotations

import math
import mmap
from typing import Sequence

import numpy as np

CACHE_LINE = 64


def _aligned(buffer: np.ndarray, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    offset = -buffer.ctypes.data % CACHE_LINE
    nbytes = math.prod(shape) * dtype.itemsize
    return buffer[offset:offset + nbytes].view(dtype).reshape(shape)


#: Below this many bytes an array is allocated as NumPy does: its rows are too few for
#: alignment to matter, and a small lookup's call time would (a few microseconds).
SMALL_BYTES = 4096


def aligned_empty(shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """Like ``np.empty``, with the data on a cache-line boundary (from `SMALL_BYTES` up)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < SMALL_BYTES:
        return np.empty(shape, dtype)
    return _aligned(np.empty(nbytes + CACHE_LINE, np.uint8), shape, dtype)


#: From this many bytes up, `aligned_zeros` maps fresh memory of its own.
LAZY_BYTES = 1 << 22


def aligned_zeros(shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """Like ``np.zeros``, with the data on a cache-line boundary, zeroed lazily, page by page,
    by the system. From `LAZY_BYTES` up the array is an anonymous mapping of its own in
    ordinary pages: NumPy asks for transparent huge pages for large arrays, and where free
    memory is fragmented the kernel then compacts memory to find each 2 MiB page on its
    first touch. Zeros are mostly optimizer state, which training touches a few rows at a
    time (measured on the 2-core VM: the first sparse Adam step over 1e6 x 64 state took
    1.1 s in huge pages, 0.07 s in ordinary ones, PyTorch's SparseAdam 0.6 s), and the
    memory a new table is drawn into (1e6 x 64: 0.37 s in huge pages, PyTorch 0.31 s; its
    lookups are ~10% faster in huge pages, which a table loaded from a file keeps)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < LAZY_BYTES or not hasattr(mmap, "MAP_PRIVATE"):  # (Windows: NumPy's zeros)
        return _aligned(np.zeros(nbytes + CACHE_LINE, np.uint8), shape, dtype)
    return _private_pages(nbytes).view(dtype).reshape(shape)


def _private_pages(nbytes: int) -> np.ndarray:
    """`nbytes` of zeros in a private anonymous mapping (a forked process gets its own copy
    on write, as with any allocation) in ordinary pages."""
    try:
        mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError as error:
        raise MemoryError(f"cannot allocate {nbytes} bytes: {error.strerror}") from None
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # where huge pages are on for every mapping
        mapping.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(mapping, np.uint8)

"""Reading and writing rows of a file at given byte offsets, from and into the rows of an
array, on several threads (the kernels release the GIL: a cold file's reads then wait on
the disk together, not one after another); and `in_background`, for reads that overlap
the caller's work."""

from __future__ import annotations

import errno
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

MIN_ROWS_PER_THREAD = 512  # fewer rows than this a thread are not worth handing over
BACKGROUND_THREADS = 4  # jobs of `in_background` at once (of any tables)
_pool: ThreadPoolExecutor | None = None
_background: ThreadPoolExecutor | None = None
_pools_made = threading.Lock()  # the pools are made on first use, from the caller's or a background thread


def _kernels() -> Any:
    """The numba pread/pwrite kernels, imported (and numba with them) on first use."""
    from ..kernels.cpu import file_rows

    return file_rows


def byte_rows(array: np.ndarray) -> np.ndarray:
    """`array`'s rows (its first axis) as a 2-D uint8 view sharing its memory (`array`:
    C-contiguous)."""
    return array.reshape(array.shape[0], -1).view(np.uint8)


def read_rows(fd: int, offsets: np.ndarray, rows: np.ndarray, places: np.ndarray, threads: int) -> None:
    """``rows[places[i]]`` = the bytes at ``offsets[i]`` of `fd` (`rows`: a 2-D uint8 array,
    C-contiguous; int64 offsets and places), on up to `threads` threads. `OSError` when the
    file ends first or a read fails."""
    _on_threads(_kernels().read_rows, fd, offsets, rows, places, threads, "read")


def write_rows(fd: int, offsets: np.ndarray, rows: np.ndarray, places: np.ndarray, threads: int = 1) -> None:
    """Write ``rows[places[i]]`` at ``offsets[i]`` of `fd`, on up to `threads` threads."""
    _on_threads(_kernels().write_rows, fd, offsets, rows, places, threads, "write")


def _on_threads(kernel: Any, fd: int, offsets: np.ndarray, rows: np.ndarray, places: np.ndarray, threads: int,
                what: str) -> None:
    count = offsets.shape[0]
    if count == 0:
        return
    parts = max(1, min(threads, count // MIN_ROWS_PER_THREAD))
    bounds = [count * part // parts for part in range(parts + 1)]
    pieces = [(offsets[low:high], places[low:high]) for low, high in zip(bounds, bounds[1:])]
    if parts == 1:
        done = [kernel(fd, offsets, rows, places)]
    else:
        done = list(_threads().map(lambda piece: kernel(fd, piece[0], rows, piece[1]), pieces))
    for (part_offsets, _), moved in zip(pieces, done):
        if moved < part_offsets.shape[0]:
            raise OSError(errno.EIO, f"could not {what} {rows.shape[1]} bytes at byte {int(part_offsets[moved])} "
                                     f"of file descriptor {fd} (the file is shorter, or the disk failed)")


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pools_made:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(16, os.cpu_count() or 1), thread_name_prefix="embtable-io")
    return _pool


def in_background(job: Callable[[], None]) -> Future:
    """Run `job` on a thread of its own pool (not the readers': a job may fan out reads over
    them without waiting on itself); its `Future` gives its end or its exception."""
    global _background
    with _pools_made:
        if _background is None:
            _background = ThreadPoolExecutor(max_workers=BACKGROUND_THREADS, thread_name_prefix="embtable-prefetch")
    return _background.submit(job)

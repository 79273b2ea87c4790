"""Moving rows between files and arrays with ``pread`` / ``pwrite``, one call per run of
rows that are consecutive both in the file and in the array. The kernels release the GIL,
so several threads can keep a disk's queue full; nothing is mapped, so reading a row
costs the process no resident file pages."""

from __future__ import annotations

import numba as nb
from numba import types

jit = nb.njit(cache=True, nogil=True)

# The C library's calls, linked by name (so the kernels can be cached, unlike ctypes').
_pread = types.ExternalFunction("pread", types.intp(types.int32, types.voidptr, types.uintp, types.int64))
_pwrite = types.ExternalFunction("pwrite", types.intp(types.int32, types.voidptr, types.uintp, types.int64))


@jit
def _run_end(offsets, places, width, start):
    """The end of the run of positions from `start` whose file offsets and array rows both
    follow each other."""
    end = start + 1
    while end < offsets.shape[0] and offsets[end] == offsets[end - 1] + width and places[end] == places[end - 1] + 1:
        end += 1
    return end


@jit
def _transfer(fd, offsets, rows, places, write):
    """Read (or `write`) ``rows[places[i]]`` (a C-contiguous uint8 array's rows) from (to)
    byte ``offsets[i]`` of `fd`. Returns the number of positions moved: fewer than asked
    when a call failed or a read met the end of the file."""
    width = rows.shape[1]
    base = rows.ctypes.data
    start = 0
    while start < offsets.shape[0]:
        end = _run_end(offsets, places, width, start)
        wanted, done = (end - start) * width, 0
        while done < wanted:
            at, count, where = base + places[start] * width + done, wanted - done, offsets[start] + done
            got = _pwrite(fd, at, count, where) if write else _pread(fd, at, count, where)
            if got <= 0:
                return start
            done += got
        start = end
    return offsets.shape[0]


@jit
def read_rows(fd, offsets, rows, places):
    """``rows[places[i]]`` = the ``rows.shape[1]`` bytes at ``offsets[i]`` of `fd`; the
    number of positions read (fewer: a read failed or met the end of the file)."""
    return _transfer(fd, offsets, rows, places, False)


@jit
def write_rows(fd, offsets, rows, places):
    """Write ``rows[places[i]]`` at ``offsets[i]`` of `fd`; the number of positions written."""
    return _transfer(fd, offsets, rows, places, True)

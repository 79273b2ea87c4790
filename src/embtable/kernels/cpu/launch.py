"""`parallel_jit`, how every parallel kernel is compiled: launched safely from several Python
threads at once.

numba runs a kernel's ``prange`` loops on its threading layer, chosen when its threads start:
TBB, else OpenMP, else its own "workqueue", whichever loads first. TBB and OpenMP may be
entered by several threads at once (each caller gets a team of its own); the workqueue layer
may not: it aborts the whole process when two threads launch kernels at the same time. The
kernels release the GIL (``nogil``), so threads serving one table launch them at the same
time. Where the workqueue layer is the one in use (no TBB nor OpenMP runtime: a slim
container image without ``libgomp``, macOS without ``libomp``; ``pip install tbb`` gives one),
each kernel is wrapped so that launches take turns; elsewhere a kernel is the compiled
function itself, at no cost.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable

import numba as nb

_REASSOCIATE = {"reassoc", "contract"}  # a dot product's sum in vector lanes, with fused multiply-adds
_one_launch = threading.Lock()  # held by a launch where the layer is not threadsafe


def _threadsafe_layer() -> bool:
    """Whether the threading layer numba uses may be entered by several threads at once."""
    nb.get_num_threads()  # starts numba's threads, which settles the layer
    return nb.threading_layer() != "workqueue"


THREADSAFE = _threadsafe_layer()


def parallel_jit(function: Callable[..., Any] | None = None, *, reassociate: bool = False) -> Any:
    """`function` compiled as a parallel kernel (cached on disk, GIL released), its
    launches taking turns when the threading layer is not threadsafe. With `reassociate`
    (``@parallel_jit(reassociate=True)``) its float sums may be reordered and multiply-adds
    fused, which a reduction such as a dot product needs to use vector registers: still the
    same bits for the same inputs (the order is fixed when compiled), not the sequential
    order's."""
    if function is None:
        return functools.partial(parallel_jit, reassociate=reassociate)
    kernel = nb.njit(cache=True, nogil=True, parallel=True, fastmath=_REASSOCIATE if reassociate else False)(function)
    if THREADSAFE:
        return kernel

    @functools.wraps(function)
    def launch(*args: Any) -> Any:
        with _one_launch:
            return kernel(*args)

    return launch

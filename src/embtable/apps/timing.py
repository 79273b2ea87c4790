"""Timing for the benchmarks: workloads, interleaved medians, the machine's copy bandwidth
and a description of the machine. Shared by `bench` and `bench_bags`."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Workload:
    distribution: str  # "uniform" or "zipf"
    rows: int
    dim: int
    batch: int

    def __str__(self) -> str:
        return f"{self.distribution:7} V={self.rows:<8.0e} D={self.dim:<3} N={self.batch:<6}"


def indices_for(workload: Workload, rng: np.random.Generator) -> np.ndarray:
    """Uniform rows, or Zipf(1.05) ranks mapped to randomly placed rows (hot rows scattered)."""
    if workload.distribution == "uniform":
        return rng.integers(0, workload.rows, workload.batch)
    weights = 1.0 / np.arange(1, workload.rows + 1) ** 1.05
    ranks = rng.choice(workload.rows, workload.batch, p=weights / weights.sum())
    return rng.permutation(workload.rows)[ranks]


def median_ms(run: Callable[[], None], setup: Callable[[], None] = lambda: None,
              repeats: int = 7) -> float:
    """Median wall time of `run` in milliseconds; `setup` runs untimed before each call."""
    return side_by_side([(run, setup)], repeats)[0]


_synchronize: Callable[[], None] = lambda: None  # torch.cuda.synchronize when timing a GPU


def time_on_device(synchronize: Callable[[], None]) -> None:
    """Wait for `synchronize` (a GPU's queue) around every timed call from now on."""
    global _synchronize
    _synchronize = synchronize


def side_by_side(cases: list[tuple[Callable[[], None], Callable[[], None]]], repeats: int = 7,
                 calls: int = 1) -> list[float]:
    """Median ms of a call of each ``(run, setup)`` case, the cases taking turns (case 1,
    case 2, case 1, ...) so that both see the same machine: this one's speed drifts between
    seconds. Each turn makes `calls` timed calls of its case in a row (`setup` before each):
    with ``calls > 1`` a library's worker threads, which spin for a while after its call,
    slow only the first calls of the other's turn, as in a server that runs one library."""
    times: list[list[float]] = [[] for _ in cases]
    for turn in range(repeats + 1):  # turn 0 warms up: compilation, allocator, caches
        for (run, setup), record in zip(cases, times):
            for _ in range(calls):
                setup()
                _synchronize()
                start = time.perf_counter()
                run()
                _synchronize()
                if turn:
                    record.append(time.perf_counter() - start)
    return [statistics.median(record) * 1e3 for record in times]


def copy_bandwidth(nbytes: int = 256 * 2**20) -> tuple[float, float]:
    """GB/s (bytes read + written) of a parallel copy into a preallocated and into a fresh
    destination, the ceilings for a gather."""
    import numba

    @numba.njit(parallel=True)
    def copy(src, dst):
        for i in numba.prange(src.shape[0]):
            dst[i] = src[i]

    src = np.ones(nbytes // 8, np.uint64)
    dst = np.empty_like(src)
    prealloc = median_ms(lambda: copy(src, dst))
    fresh = median_ms(lambda: copy(src, np.empty_like(src)))
    return 2 * nbytes / prealloc / 1e6, 2 * nbytes / fresh / 1e6


def medians(runs: list[list[tuple]]) -> list[tuple]:
    """Per line, the median of each float over the runs (which all measured the same lines,
    in the same order); other fields (labels, counts) from the first run."""
    return [tuple(statistics.median(values) if isinstance(values[0], float) else values[0]
                  for values in zip(*lines)) for lines in zip(*runs)]


def machine() -> str:
    import numba
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, NumPy {np.__version__}, "
            f"numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads), "
            f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)")

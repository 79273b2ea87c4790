"""Serving one table from several Python threads (issue #17): lookups and sum-pooled bags of
one embtable table called from 1 and from 2 threads at once, float32 and int8, against
PyTorch's ``F.embedding`` / ``F.embedding_bag`` (and its int8 byte op) called from threads
the same way, side by side in one process. Run by hand (never in CI):

    .venv/bin/python benchmarks/threads.py [--table 1e6x64] [--lookup 4096] [--bags 256]
        [--length 20] [--threads 1 2] [--seconds 0.5] [--runs 3] [--kernel-threads N]

A measurement calls one case from T threads at once for `--seconds`, each call on the next
of 64 batches of uniform ids (rows come from memory, as in serving), and counts the calls
that finished: calls/s, and ids/s (ids looked up or pooled). Every case and thread count
takes its turn within a run (a warm-up turn first); each number is the median of `--runs`
runs, and "spread" is the runs' range over that median: how noisy the machine was. Both
libraries release the GIL in their kernels (embtable's numba kernels are compiled with
``nogil=True``), so threads overlap there, not in each call's Python. `--kernel-threads`
sets numba's and PyTorch's threads per call (default: theirs, one per core; numba's count is
a setting of each calling thread, PyTorch's of the process).

Ratios: this case's calls/s over PyTorch's float32 case (over its int8 one too, for int8
bags) at the same thread count (above 1: embtable serves more), and T threads over 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from typing import Callable

import numba
import numpy as np
import torch

import embtable as et
from embtable.apps.timing import machine
from quantized_table import bags, table_size

BATCHES = 64  # batches of ids each case cycles through


class Case:
    """A call and the batches of arguments it cycles through (`ids`: ids per call, on average)."""

    def __init__(self, call: Callable[..., object], batches: list[tuple], ids: float) -> None:
        self.call, self.batches, self.ids = call, batches, ids


def calls_per_second(case: Case, threads: int, seconds: float, kernel_threads: int | None) -> float:
    """Calls of `case` finished per second by `threads` threads calling it at once for
    `seconds`, each starting at other batches, with `kernel_threads` numba threads a call
    (a setting of each thread; None: numba's default)."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)

    def serve(thread: int) -> None:
        if kernel_threads:
            numba.set_num_threads(kernel_threads)
        start.wait()
        k = thread * (BATCHES // threads)
        while time.perf_counter() < deadline:
            case.call(*case.batches[k % BATCHES])
            k += 1
            counts[thread] += 1

    workers = [threading.Thread(target=serve, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - began)


def cases(weights: np.ndarray, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Case]:
    """Every case by name: embtable's float32 and int8 lookups and sum bags, PyTorch's."""
    rows = weights.shape[0]
    tweights = torch.from_numpy(weights)
    lookups = [rng.integers(0, rows, args.lookup) for _ in range(BATCHES)]
    bagged = [bags(rng, rows, args.bags, args.length) for _ in range(BATCHES)]
    bag_ids = statistics.mean(flat.shape[0] for flat, _ in bagged)
    tlookups = [(torch.from_numpy(ids),) for ids in lookups]
    tbagged = [(torch.from_numpy(flat), torch.from_numpy(bounds)) for flat, bounds in bagged]
    table = et.nn.Embedding.from_pretrained(weights)
    bag = et.nn.EmbeddingBag.from_pretrained(weights, mode="sum", include_last_offset=True)
    packed = torch.ops.quantized.embedding_bag_byte_prepack(tweights)
    byte_bag = torch.ops.quantized.embedding_bag_byte_rowwise_offsets
    return {
        "lookup f32": Case(table, [(ids,) for ids in lookups], args.lookup),
        "lookup int8": Case(table.to_quantized(8), [(ids,) for ids in lookups], args.lookup),
        "lookup torch f32": Case(lambda ids: torch.nn.functional.embedding(ids, tweights), tlookups, args.lookup),
        "sum bag f32": Case(bag, bagged, bag_ids),
        "sum bag int8": Case(bag.to_quantized(8), bagged, bag_ids),
        "sum bag torch f32": Case(lambda flat, bounds: torch.nn.functional.embedding_bag(
            flat, tweights, bounds, mode="sum", include_last_offset=True), tbagged, bag_ids),
        "sum bag torch int8": Case(lambda flat, bounds: byte_bag(
            packed, flat, bounds, False, 0, False, None, None, True), tbagged, bag_ids),
    }


def measured(named: dict[str, Case], args: argparse.Namespace) -> dict[tuple[str, int], list[float]]:
    """Calls/s of every case at every thread count, one list per pair: one value a run."""
    rates: dict[tuple[str, int], list[float]] = {(name, t): [] for name in named for t in args.threads}
    for run in range(args.runs + 1):  # run 0 warms up: compilation, allocators, caches
        for name, case in named.items():
            for threads in args.threads:
                rate = calls_per_second(case, threads, args.seconds if run else 0.1, args.kernel_threads)
                if run:
                    rates[name, threads].append(rate)
    return rates


def report(named: dict[str, Case], rates: dict[tuple[str, int], list[float]], threads: list[int]) -> list[str]:
    """A line per case and thread count: calls/s, ids/s, the spread, and the ratios."""
    median = {key: statistics.median(values) for key, values in rates.items()}
    lines = []
    for name, case in named.items():
        what, layout = ("lookup", name[len("lookup "):]) if name.startswith("lookup") else \
            ("sum bag", name[len("sum bag "):])
        for count in threads:
            rate = median[name, count]
            spread = (max(rates[name, count]) - min(rates[name, count])) / rate
            ratios = [f"/ torch f32 {rate / median[f'{what} torch f32', count]:5.2f}x"]
            if layout == "int8" and (f"{what} torch int8", count) in median:
                ratios.append(f"/ torch int8 {rate / median[f'{what} torch int8', count]:5.2f}x")
            if count != threads[0]:
                ratios.append(f"{count} threads / {threads[0]} {rate / median[name, threads[0]]:4.2f}x")
            lines.append(f"  {name:20s} {count} thread{'s' if count > 1 else ' '} {rate:9.0f} calls/s "
                         f"{rate * case.ids / 1e6:7.2f} M ids/s  spread {100 * spread:3.0f}%   " + "   ".join(ratios))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=table_size, default=(10**6, 64))
    parser.add_argument("--lookup", type=int, default=4096, help="ids per lookup")
    parser.add_argument("--bags", type=int, default=256, help="bags per pooled call")
    parser.add_argument("--length", type=int, default=20, help="mean ids per bag")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kernel-threads", type=int, help="numba's and PyTorch's threads per call")
    args = parser.parse_args()
    if args.kernel_threads:
        numba.set_num_threads(args.kernel_threads)  # this thread's; each serving thread sets its own
        torch.set_num_threads(args.kernel_threads)  # the process's
    rows, dim = args.table
    print(machine(), flush=True)
    kernel_threads = numba.get_num_threads()  # (starts numba's threads, which settles its threading layer)
    print(f"numba threading layer {numba.threading_layer()}, {kernel_threads} kernel threads a call; PyTorch "
          f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} before", flush=True)
    rng = np.random.default_rng(0)
    named = cases(rng.standard_normal((rows, dim), dtype=np.float32), args, rng)
    print(f"{rows:.0e} x {dim}, lookups of {args.lookup} ids, sum bags: {args.bags} of ~{args.length} ids, "
          f"{args.runs} runs of {args.seconds} s per case", flush=True)
    for line in report(named, measured(named, args), args.threads):
        print(line, flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} after", flush=True)


if __name__ == "__main__":
    main()

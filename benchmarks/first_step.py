"""What a new table costs before training is under way: building a 1e6 x 64 sparse table and
its first sparse Adam step, embtable against PyTorch (``nn.Embedding(sparse=True)`` and
``SparseAdam``). Run by hand (never in CI):

    .venv/bin/python benchmarks/first_step.py [--rows 1000000] [--dim 64] [--runs 3]

The costs are those of fresh memory (the system zeroes each page on its first touch), so
each run is a fresh process building one table of each library, in alternating order (the
second library in a process gets memory the first one returned). The kernels are compiled
(or read from numba's cache) on a small table first, which is not timed. The ids of the
step are 65536 Zipf(1.2) draws, as a skewed training batch. Medians of `--runs` runs of
each order; ratios are PyTorch's time over embtable's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np


def step_ids(rows: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.minimum(rng.zipf(1.2, 65536) - 1, rows - 1).astype(np.int64)


def build_and_step(new_table: Callable[[], Any], new_optimizer: Callable[[Any], Any], ids: Any) -> tuple[float, float]:
    """Seconds to build a table (`new_table`) and to take its first step (`new_optimizer`
    over its parameters) on a batch of `ids`."""
    start = time.perf_counter()
    table = new_table()
    built = time.perf_counter() - start
    optimizer = new_optimizer(table.parameters())
    start = time.perf_counter()
    table(ids).sum().backward()
    optimizer.step()
    return built, time.perf_counter() - start


def embtable_costs(rows: int, dim: int) -> tuple[float, float]:
    import embtable as et

    ids = step_ids(rows)
    build_and_step(lambda: et.nn.Embedding(1000, dim, sparse=True), lambda p: et.optim.Adam(p, lr=1e-3),
                   ids % 1000)  # compiles (or loads) the kernels
    return build_and_step(lambda: et.nn.Embedding(rows, dim, sparse=True), lambda p: et.optim.Adam(p, lr=1e-3), ids)


def torch_costs(rows: int, dim: int) -> tuple[float, float]:
    import torch

    return build_and_step(lambda: torch.nn.Embedding(rows, dim, sparse=True),
                          lambda p: torch.optim.SparseAdam(p, lr=1e-3), torch.from_numpy(step_ids(rows)))


COSTS = {"embtable": embtable_costs, "torch": torch_costs}


def one_process(order: list[str], rows: int, dim: int) -> dict[str, tuple[float, float]]:
    """Each library's (build, first step) seconds, measured in a fresh process in `order`."""
    code = (f"import json, sys; sys.path.insert(0, {sys.path[0]!r}); import first_step as f; "
            f"print(json.dumps({{name: f.COSTS[name]({rows}, {dim}) for name in {order!r}}}))")
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return {name: tuple(value) for name, value in json.loads(output.splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10**6)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    for run in range(args.runs):
        for order in (["embtable", "torch"], ["torch", "embtable"]):
            for position, (name, (built, stepped)) in enumerate(one_process(order, args.rows, args.dim).items()):
                which = "first" if position == 0 else "second"
                results.setdefault((name, f"build, {which} in process"), []).append(built)
                results.setdefault((name, f"first step, {which} in process"), []).append(stepped)
    print(f"{args.rows:.0e} x {args.dim} sparse table, 65536 Zipf ids, medians of {args.runs} fresh processes:")
    for what in sorted({what for _, what in results}):
        ours, theirs = (statistics.median(results[name, what]) for name in ("embtable", "torch"))
        print(f"  {what:30s} embtable {ours:6.3f} s   torch {theirs:6.3f} s   torch / embtable {theirs / ours:5.2f}x")


if __name__ == "__main__":
    main()

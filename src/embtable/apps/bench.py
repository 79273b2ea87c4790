"""Side-by-side timing of embtable and PyTorch on identical inputs, in one process.

Every number is the median of repeated runs; results are reported as ratios
``torch_time / embtable_time`` (above 1: embtable is faster). Nothing here asserts a speed:
the output is for BENCHMARKS.md. Needs PyTorch: without it, `main` says how to install the
CPU build the test suite pins, and returns 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import os
import re
import subprocess
import sys
import tempfile
from typing import Callable, Iterator

import numpy as np

import embtable as et
from embtable.nn import Embedding

from . import bench_bags, bench_dlrm
from .timing import Workload, copy_bandwidth, indices_for, machine, median_ms, medians, side_by_side, time_on_device


def _pair(theirs: Callable[[], None], ours: Callable[[], None], repeats: int,
          setup_theirs: Callable[[], None] = lambda: None,
          setup_ours: Callable[[], None] = lambda: None, calls: int = 1) -> tuple[float, float]:
    torch_ms, our_ms = side_by_side([(theirs, setup_theirs), (ours, setup_ours)], repeats, calls)
    return torch_ms, our_ms


class Pair:
    """The same embedding table in embtable and in PyTorch, on one device."""

    def __init__(self, weights: np.ndarray, device: str = "cpu", **options):
        import torch

        torch_options = {k: v for k, v in options.items() if k != "sparse"}
        self.ours = Embedding.from_pretrained(weights, freeze=False, device=device, **options)
        self.theirs = torch.nn.Embedding.from_pretrained(torch.from_numpy(weights.copy()).to(device), freeze=False,
                                                         sparse=options.get("sparse", False),
                                                         **torch_options)


def run_ops(workload: Workload, weights: np.ndarray, host_indices: np.ndarray, repeats: int,
            device: str = "cpu") -> dict:
    """{op: (torch ms, embtable ms)} for one workload, on `device` for both."""
    import torch

    ti = torch.from_numpy(host_indices).to(device)
    host_upstream = np.random.default_rng(1).standard_normal((len(host_indices), workload.dim)).astype(np.float32)
    tu = torch.from_numpy(host_upstream).to(device)
    indices, upstream = et.Tensor(host_indices, device=device), et.Tensor(host_upstream, device=device)
    results = {}

    plain = Pair(weights, device)
    results["forward"] = _pair(lambda: plain.theirs(ti), lambda: plain.ours(indices), repeats)

    renorm = Pair(weights, device, max_norm=1.0)
    results["forward max_norm"] = _pair(lambda: renorm.theirs(ti), lambda: renorm.ours(indices), repeats)

    def backward_times(pair: Pair) -> tuple[float, float]:
        state = {}

        def torch_setup():
            pair.theirs.weight.grad = None
            state["out"] = pair.theirs(ti)

        def ours_setup():
            pair.ours.weight.grad = None
            state["out"] = pair.ours(indices)

        return _pair(lambda: state["out"].backward(tu), lambda: state["out"].backward(upstream), repeats,
                     torch_setup, ours_setup)

    results["backward"] = backward_times(plain)
    results["backward freq"] = backward_times(Pair(weights, device, scale_grad_by_freq=True))

    sparse = Pair(weights, device, sparse=True)
    torch_adam = torch.optim.SparseAdam(sparse.theirs.parameters(), lr=1e-3)
    our_adam = et.optim.Adam(sparse.ours.parameters(), lr=1e-3)
    state = {}

    def torch_step():
        state["out"].backward(tu)
        torch_adam.step()

    def our_step():
        state["out"].backward(upstream)
        our_adam.step()

    def torch_setup():
        torch_adam.zero_grad()
        state["out"] = sparse.theirs(ti)

    def ours_setup():
        our_adam.zero_grad()
        state["out"] = sparse.ours(indices)

    results["sparse step"] = _pair(torch_step, our_step, repeats, torch_setup, ours_setup)
    return results


def dense_adam(weights: np.ndarray, repeats: int, device: str = "cpu") -> tuple[float, float]:
    import torch

    grad = np.random.default_rng(2).standard_normal(weights.shape).astype(np.float32)
    theirs = torch.from_numpy(weights.copy()).to(device).requires_grad_()
    theirs.grad = torch.from_numpy(grad).to(device)
    ours = et.Tensor(weights, requires_grad=True, device=device)
    ours.grad = et.Tensor(grad, device=device)
    torch_adam, our_adam = torch.optim.Adam([theirs]), et.optim.Adam([ours])
    return _pair(torch_adam.step, our_adam.step, repeats)


def small_batches(weights: np.ndarray, sizes: tuple[int, ...] = (1, 32, 1024, 4096),
                  device: str = "cpu", calls: int = 30) -> list[tuple[int, float, float]]:
    """(N, torch us, embtable us) of an inference lookup (no autograd) of N uniform indices:
    serving latency, where per-call costs rather than bandwidth decide. Each call looks up
    other indices (64 batches in turn), so rows come from memory as in serving, not from a
    cache warmed by the same batch; the libraries take turns of `calls` calls, about 600
    calls each in all."""
    import torch

    plain = Pair(weights, device)
    rng = np.random.default_rng(4)
    results = []
    for n in sizes:
        hosts = [rng.integers(0, weights.shape[0], n) for _ in range(64)]
        theirs_in = itertools.cycle([torch.from_numpy(h).to(device) for h in hosts])
        ours_in = itertools.cycle([et.Tensor(h, device=device) for h in hosts])
        with torch.no_grad(), et.no_grad():
            theirs, ours = _pair(lambda: plain.theirs(next(theirs_in)), lambda: plain.ours(next(ours_in)),
                                 repeats=max(600 // calls, 1), calls=calls)
        results.append((n, theirs * 1e3, ours * 1e3))
    return results


def gather_bandwidth(weights: np.ndarray, indices: np.ndarray) -> tuple[float, float]:
    """GB/s of the gather kernel into a preallocated buffer, and of the whole forward
    (validation, a fresh output, the gather)."""
    from embtable.backends.numpy_backend import as_row_words
    from embtable.kernels.cpu.rows import gather

    out = np.empty((len(indices), weights.shape[1]), weights.dtype)
    raw_table, raw_out = as_row_words(weights), as_row_words(out)
    moved = 2 * out.nbytes + indices.nbytes
    emb = Embedding.from_pretrained(weights)
    return (moved / median_ms(lambda: gather(raw_table, indices, raw_out)) / 1e6,
            moved / median_ms(lambda: emb(indices)) / 1e6)


_FIRST_CALL = """
import time, numpy as np, embtable as et
start = time.perf_counter()
emb = et.nn.Embedding(1000, 16, sparse=True, max_norm=1.0)
out = emb(np.arange(100) % 7)
out.backward(np.ones(out.shape, np.float32))
et.optim.Adam(emb.parameters()).step()
print(time.perf_counter() - start)
"""


def first_call_seconds() -> tuple[float, float]:
    """Seconds for a first forward + backward + sparse Adam step in a new process: with an
    empty kernel cache (compiling), then again in another process (reusing the cache)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        run = [sys.executable, "-c", _FIRST_CALL]
        cold = float(subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout)
        warm = float(subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout)
    return cold, warm


def scaling(rows_list: list[int], dim: int, batch: int, active: int,
            repeats: int) -> list[tuple[int, float, float, float, int]]:
    """The sparse training step (forward + backward + Adam) at growing table sizes, for a
    fixed batch of `batch` indices drawn three ways: from `active` rows among the first
    ``rows_list[0]`` (the same work and memory at every size: only costs that grow with the
    table itself can show), from `active` rows scattered over the whole table (the same
    work, spread over more memory), and uniformly over the table (more distinct rows as the
    table grows). Each result: rows, the three times in ms, and the uniform batch's number
    of distinct rows."""
    rng = np.random.default_rng(3)
    results = []
    for rows in rows_list:
        clustered = rng.choice(rows_list[0], active, replace=False)
        scattered = rng.choice(rows, active, replace=False)
        uniform = rng.integers(0, rows, batch)
        results.append((rows, *(sparse_step_ms(rows, dim, chosen, repeats) for chosen in (
            clustered[rng.integers(0, active, batch)], scattered[rng.integers(0, active, batch)],
            uniform)), np.unique(uniform).size))
    return results


def sparse_step_ms(rows: int, dim: int, indices: np.ndarray, repeats: int) -> float:
    """Median ms of zero_grad + forward + backward + Adam on a fresh sparse table."""
    emb = Embedding(rows, dim, sparse=True)
    adam = et.optim.Adam(emb.parameters(), lr=1e-3)
    upstream = np.ones((len(indices), dim), np.float32)

    def step() -> None:
        adam.zero_grad()
        emb(indices).backward(upstream)
        adam.step()

    return median_ms(step, repeats=repeats)  # its warm-up step makes the batch's rows' pages


#: One line of the table: workload, op, then torch ms and embtable ms — or, for the op
#: "gather", the gather kernel's and the whole forward's GB/s.
Row = tuple[str, str, float, float]


def table_rows(sizes: list[tuple[int, int]], repeats: int, device: str) -> Iterator[Row]:
    """Every op on every workload of `sizes` (rows, dim), uniform and Zipf, N = 16384 and
    262144, then the dense Adam step; on the CPU, gather bandwidth where D=64, N=262144."""
    rng = np.random.default_rng(0)
    for rows, dim in sizes:
        weights = (rng.standard_normal((rows, dim)) / np.sqrt(dim)).astype(np.float32)
        for distribution in ("uniform", "zipf"):
            for batch in (16_384, 262_144):
                workload = Workload(distribution, rows, dim, batch)
                indices = indices_for(workload, rng)
                for op, (theirs, ours) in run_ops(workload, weights, indices, repeats, device).items():
                    yield str(workload), op, theirs, ours
                if device == "cpu" and dim == 64 and batch == 262_144:
                    yield (str(workload), "gather", *gather_bandwidth(weights, indices))
        yield (f"dense V={rows:.0e} D={dim}", "dense Adam step", *dense_adam(weights, repeats, device))
        del weights


def row_line(row: Row, prealloc: float, fresh: float) -> str:
    label, op, a, b = row
    if op == "gather":
        return (f"{label:40} gather: kernel {a:.1f} GB/s ({100 * a / prealloc:.0f}% of copy), "
                f"forward {b:.1f} GB/s ({100 * b / fresh:.0f}% of a fresh copy)")
    return f"{label:40} {op:17} {a:9.2f} {b:11.2f} {a / b:6.2f}"


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


#: Where pip finds PyTorch's CPU-only wheels (PyPI's default Linux wheel is the CUDA build,
#: several GB).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pinned_torch() -> str:
    """The torch requirement of embtable's ``test`` extra (``torch==2.13.0``: the version the
    suite is checked against), read from the installed package's metadata so that it follows
    pyproject.toml; plain ``torch`` where that metadata is missing."""
    try:
        requirements = importlib.metadata.requires("embtable") or []
    except importlib.metadata.PackageNotFoundError:
        return "torch"
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        if re.fullmatch(r"torch\s*==\s*\S+", spec.strip()) and re.search(r"extra\s*==\s*.test.", marker):
            return spec.replace(" ", "")
    return "torch"


def missing_torch() -> str | None:
    """None if PyTorch imports; else what to run to install it (the benchmark's other side)."""
    try:
        import torch  # noqa: F401
    except ImportError as error:
        return (f"embtable bench times embtable against PyTorch, which does not import here ({error}).\n"
                f"Install the CPU build of the version the tests pin (PyPI's default Linux wheel is the CUDA "
                f"build, several GB):\n"
                f"    {sys.executable} -m pip install '{pinned_torch()}' --index-url {TORCH_CPU_INDEX}")
    return None


def main(argv: list[str] | None = None) -> int:
    """`embtable bench`: parse the options, then time (0), or explain what is missing (2)."""
    parser = argparse.ArgumentParser(prog="embtable bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="V=1e5 and D=64 only, fewer repeats")
    parser.add_argument("--repeats", type=_at_least_one, default=7, help="timed calls per op (median)")
    parser.add_argument("--runs", type=_at_least_one, default=1,
                        help="measure the whole table this many times and report per-op medians "
                             "(on a machine whose speed drifts)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the V=1e5..1e7 scaling run")
    parser.add_argument("--device", default="cpu", help="cpu (default) or a GPU such as cuda:0: both "
                                                        "libraries run there")
    parser.add_argument("--bags", action="store_true", help="time EmbeddingBag against "
                                                            "torch.nn.functional.embedding_bag instead")
    parser.add_argument("--dlrm", action="store_true", help="time a DLRM-style training step: all PyTorch, "
                                                            "PyTorch with embtable tables, all embtable")
    args = parser.parse_args(argv)
    hint = missing_torch()
    if hint:
        print(hint, file=sys.stderr)
        return 2
    repeats = 3 if args.quick else args.repeats
    if args.bags or args.dlrm:
        print(f"machine: {machine()}; device: cpu")
        return (bench_bags if args.bags else bench_dlrm).main(args.quick, repeats, args.runs)
    device = str(et.Device.parse(args.device))
    on_cpu = device == "cpu"
    if not on_cpu:
        import torch

        time_on_device(torch.cuda.synchronize if device.startswith("cuda") else torch.mps.synchronize)

    print(f"machine: {machine()}; device: {device}")
    prealloc = fresh = float("nan")
    if on_cpu:
        cold, warm = first_call_seconds()
        print(f"first call in a new process: {cold:.2f} s compiling kernels, {warm:.2f} s with the cache")
        prealloc, fresh = copy_bandwidth()
        print(f"parallel copy: {prealloc:.1f} GB/s into a preallocated buffer, {fresh:.1f} GB/s into a fresh one")
    print()

    sizes = [(100_000, 64)] if args.quick else [(100_000, 64), (100_000, 300), (1_000_000, 64), (1_000_000, 300)]
    print(f"{'workload':40} {'op':17} {'torch ms':>9} {'embtable ms':>11} {'ratio':>6}")
    runs: list[list[Row]] = []
    stream = sys.stdout if args.runs == 1 else sys.stderr  # with several runs, only medians on stdout
    for run in range(args.runs):
        if args.runs > 1:
            print(f"run {run + 1} of {args.runs}:", file=sys.stderr)
        runs.append([])
        for row in table_rows(sizes, repeats, device):
            runs[-1].append(row)
            print(row_line(row, prealloc, fresh), file=stream, flush=True)
    if args.runs > 1:
        for row in medians(runs):
            print(row_line(row, prealloc, fresh))
    print()
    print(f"inference lookup (no autograd), V=1e5 D=64: {'N':>6} {'torch us':>9} {'embtable us':>11} {'ratio':>6}")
    weights = (np.random.default_rng(5).standard_normal((100_000, 64)) / 8).astype(np.float32)
    for n, theirs, ours in medians([small_batches(weights, device=device) for _ in range(args.runs)]):
        print(f"{'':43}{n:6} {theirs:9.1f} {ours:11.1f} {theirs / ours:6.2f}")
    if on_cpu and not args.no_scaling:
        print()
        rows_list = [100_000, 1_000_000] if args.quick else [100_000, 1_000_000, 10_000_000]
        timings = medians([scaling(rows_list, 64, 65_536, 16_384, repeats) for _ in range(args.runs)])
        print("sparse step (forward + backward + Adam), D=64, N=65536 indices from:")
        print(f"  {'':11} {'16384 rows in the first 1e5':>28} {'16384 rows anywhere':>20} "
              f"{'uniform over V (distinct rows)':>31}")
        for rows, clustered, scattered, uniform, distinct in timings:
            print(f"  V={rows:<8.0e} {clustered:25.2f} ms {scattered:17.2f} ms {uniform:12.2f} ms ({distinct})")
        (_, *first, first_distinct), (_, *last, last_distinct) = timings[0], timings[-1]
        ratios = [b / a for a, b in zip(first, last)]
        per_row = ratios[2] * first_distinct / last_distinct
        print(f"largest / smallest table: {ratios[0]:.2f}x, {ratios[1]:.2f}x, {ratios[2]:.2f}x the time "
              f"(uniform: {per_row:.2f}x per distinct row)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

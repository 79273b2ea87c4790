"""`EmbeddingBag` against ``torch.nn.functional.embedding_bag`` (PyTorch's FBGEMM path on the
CPU), side by side in one process, the libraries taking turns run by run; ratios are
``torch_time / embtable_time``. Run by ``embtable bench --bags``; nothing here asserts a
speed."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from typing import Iterator

import numpy as np

import embtable as et

from .timing import Workload, copy_bandwidth, indices_for, medians, side_by_side


@dataclass(frozen=True)
class BagWorkload:
    distribution: str  # "uniform" or "zipf"
    rows: int
    dim: int
    bags: int
    mean_length: int

    def __str__(self) -> str:
        return (f"{self.distribution:7} V={self.rows:<6.0e} D={self.dim:<3} "
                f"B={self.bags:<4} L={self.mean_length:<2}")


WORKLOADS = [BagWorkload(d, v, dim, b, length) for d in ("uniform", "zipf")
             for v, dim in ((100_000, 32), (100_000, 64), (100_000, 128), (1_000_000, 32), (1_000_000, 64),
                            (1_000_000, 128), (10_000_000, 32), (10_000_000, 64))
             for b, length in ((2048, 50), (8192, 10))]
QUICK = [BagWorkload("zipf", 100_000, 64, 2048, 50), BagWorkload("uniform", 1_000_000, 64, 8192, 10)]


def bag_inputs(workload: BagWorkload, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids, offsets (bags of 1 to 2L - 1 ids, mean L) and per-sample weights."""
    lengths = rng.integers(1, 2 * workload.mean_length, workload.bags)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    ids = indices_for(Workload(workload.distribution, workload.rows, workload.dim, int(lengths.sum())), rng)
    return ids.astype(np.int64), offsets, rng.random(ids.shape[0]).astype(np.float32)


def run_ops(workload: BagWorkload, weights: np.ndarray, repeats: int) -> Iterator[tuple[str, str, float, float]]:
    """(workload, op, torch ms, embtable ms) for each op; and the pooled gather's GB/s."""
    import torch

    ids, offsets, sample = bag_inputs(workload, np.random.default_rng(3))
    t_ids, t_offsets, t_sample = torch.from_numpy(ids), torch.from_numpy(offsets), torch.from_numpy(sample)
    e_ids, e_offsets, e_sample = et.Tensor(ids), et.Tensor(offsets), et.Tensor(sample)
    label = str(workload)

    def both(mode: str, sparse: bool = False, freeze: bool = False) -> tuple[torch.nn.EmbeddingBag, et.nn.EmbeddingBag]:
        theirs = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(weights), freeze=freeze, mode=mode,
                                                       sparse=sparse)
        return theirs, et.nn.EmbeddingBag.from_pretrained(weights, freeze=freeze, mode=mode, sparse=sparse)

    with torch.no_grad(), et.no_grad():  # frozen tables: PyTorch's fastest (FBGEMM) path
        for mode in ("sum", "mean", "max"):
            theirs, ours = both(mode, freeze=True)
            times = side_by_side([(lambda: theirs(t_ids, t_offsets), lambda: None),
                                  (lambda: ours(e_ids, e_offsets), lambda: None)], repeats)
            yield label, f"forward {mode}", *times
            if mode == "sum":
                moved = (ids.shape[0] + workload.bags) * workload.dim * 4 + ids.nbytes
                yield label, "pool GB/s", 0.0, moved / times[1] / 1e6
        theirs, ours = both("sum", freeze=True)
        yield label, "weighted sum", *side_by_side(
            [(lambda: theirs(t_ids, t_offsets, per_sample_weights=t_sample), lambda: None),
             (lambda: ours(e_ids, e_offsets, e_sample), lambda: None)], repeats)

    theirs, ours = both("mean")
    upstream = np.ones((workload.bags, workload.dim), np.float32)
    t_up, e_up = torch.from_numpy(upstream), et.Tensor(upstream)
    state: dict = {}

    def torch_forward() -> None:
        theirs.weight.grad = None
        state["theirs"] = theirs(t_ids, t_offsets)

    def our_forward() -> None:
        ours.weight.grad = None
        state["ours"] = ours(e_ids, e_offsets)

    yield label, "dense backward", *side_by_side([(lambda: state["theirs"].backward(t_up), torch_forward),
                                                  (lambda: state["ours"].backward(e_up), our_forward)], repeats)
    state.clear()  # the outputs, with their graphs

    theirs, ours = both("mean", sparse=True)
    torch_adam, our_adam = torch.optim.SparseAdam(theirs.parameters(), lr=1e-3), et.optim.Adam(ours.parameters())

    def torch_step() -> None:
        torch_adam.zero_grad()
        theirs(t_ids, t_offsets).backward(t_up)
        torch_adam.step()

    def our_step() -> None:
        our_adam.zero_grad()
        ours(e_ids, e_offsets).backward(e_up)
        our_adam.step()

    yield label, "sparse step", *side_by_side([(torch_step, lambda: None), (our_step, lambda: None)], repeats)


SMALL = ((1, 10), (32, 10), (256, 20))  # (bags, ids per bag) of a serving call


def small_bags(weights: np.ndarray, calls: int = 30) -> list[tuple[str, float, float]]:
    """(label, torch us, embtable us) of an inference sum-pool (no autograd) of B bags of L
    uniform ids: serving latency, where per-call costs decide. As the lookup's small
    batches: each call pools other ids (64 batches in turn), the libraries take turns of
    `calls` calls, about 600 calls each."""
    import torch

    rng = np.random.default_rng(4)
    theirs = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(weights), mode="sum")
    ours = et.nn.EmbeddingBag.from_pretrained(weights, mode="sum")
    results = []
    for bags, length in SMALL:
        hosts = [rng.integers(0, weights.shape[0], bags * length) for _ in range(64)]
        offsets = np.arange(bags, dtype=np.int64) * length
        theirs_in = itertools.cycle([(torch.from_numpy(h), torch.from_numpy(offsets)) for h in hosts])
        ours_in = itertools.cycle([(et.Tensor(h), et.Tensor(offsets)) for h in hosts])
        with torch.no_grad(), et.no_grad():
            times = side_by_side([(lambda: theirs(*next(theirs_in)), lambda: None),
                                  (lambda: ours(*next(ours_in)), lambda: None)], repeats=max(600 // calls, 1),
                                 calls=calls)
        results.append((f"B={bags} L={length}", times[0] * 1e3, times[1] * 1e3))
    return results


def table(workloads: list[BagWorkload], repeats: int) -> Iterator[tuple[str, str, float, float]]:
    for workload in workloads:
        weights = (np.random.default_rng(5).standard_normal((workload.rows, workload.dim)) / 8).astype(np.float32)
        yield from run_ops(workload, weights, repeats)
        del weights


def line(row: tuple[str, str, float, float], copy: float) -> str:
    label, op, theirs, ours = row
    if op == "pool GB/s":
        return f"{label:40} {op:15} {'':9} {ours:11.1f} GB/s ({100 * ours / copy:.0f}% of copy)"
    return f"{label:40} {op:15} {theirs:9.2f} {ours:11.2f} {theirs / ours:6.2f}"


def main(quick: bool, repeats: int, runs: int) -> int:
    """Print the table (medians of `runs` runs) for every workload, or two with `quick`."""
    prealloc, _ = copy_bandwidth()
    print(f"parallel copy: {prealloc:.1f} GB/s into a preallocated buffer")
    print(f"{'workload':40} {'op':15} {'torch ms':>9} {'embtable ms':>11} {'ratio':>6}")
    workloads = QUICK if quick else WORKLOADS
    results = []
    for run in range(runs):
        if runs > 1:
            print(f"run {run + 1} of {runs}:", file=sys.stderr)
        results.append([])
        for row in table(workloads, repeats):
            results[-1].append(row)
            print(line(row, prealloc), file=sys.stderr if runs > 1 else sys.stdout, flush=True)
    if runs > 1:
        for row in medians(results):
            print(line(row, prealloc))
    print()
    print(f"inference sum-pool (no autograd), V=1e5 D=64: {'bags':>12} {'torch us':>9} {'embtable us':>11} {'ratio':>6}")
    weights = (np.random.default_rng(5).standard_normal((100_000, 64)) / 8).astype(np.float32)
    for label, theirs, ours in medians([small_bags(weights) for _ in range(runs)]):
        print(f"{'':46}{label:>12} {theirs:9.1f} {ours:11.1f} {theirs / ours:6.2f}")
    return 0

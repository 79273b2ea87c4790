"""A DLRM-style model's training step three ways in one process, taking turns: all PyTorch
(``nn.EmbeddingBag(sparse=True)`` + ``SparseAdam``), PyTorch with embtable tables through
`embtable.torch.TableModule`, and all embtable. Ratios are ``torch_time / time``. Run by
``embtable bench --dlrm``; nothing here asserts a speed."""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

import embtable as et

from .timing import Workload, indices_for, medians, side_by_side

ROWS, DIM, BATCH, LENGTH, HIDDEN = 1_000_000, 64, 2048, 20, (128, 64)
QUICK_ROWS = 100_000


def click_batch(rows: int, distribution: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Two features' ids (bags of LENGTH per sample, as 1-D ids with offsets) and labels."""
    ids = [indices_for(Workload(distribution, rows, DIM, BATCH * LENGTH), rng).astype(np.int64) for _ in range(2)]
    offsets = np.arange(BATCH, dtype=np.int64) * LENGTH
    return ids[0], ids[1], offsets, (rng.random(BATCH) < 0.3).astype(np.float32)


def mlp(nn: Any) -> Any:
    """The model's MLP from `nn` (``torch.nn`` or ``embtable.nn``: they spell these alike)."""
    widths = (2 * DIM, *HIDDEN)
    layers: list[Any] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], 1))


def steps(rows: int, batch: tuple[np.ndarray, ...]) -> dict[str, Callable[[], None]]:
    """One training step (zero_grad, forward, BCE loss, backward, optimizer steps) of each way."""
    import torch

    from ..torch import TableModule

    weights = [(np.random.default_rng(k).standard_normal((rows, DIM)) / 8).astype(np.float32) for k in (1, 2)]
    first, second, offsets, labels = batch
    t_first, t_second, t_offsets, t_labels = (torch.from_numpy(a) for a in batch)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    torch_tables = [torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(w.copy()), freeze=False, mode="sum",
                                                          sparse=True) for w in weights]
    torch_top = mlp(torch.nn)
    torch_optimizers = [torch.optim.SparseAdam([p for t in torch_tables for p in t.parameters()], lr=1e-3),
                        torch.optim.Adam(torch_top.parameters(), lr=1e-3)]

    def mixed_tables() -> list[TableModule]:
        return [TableModule(et.nn.EmbeddingBag.from_pretrained(w.copy(), freeze=False, mode="sum", sparse=True))
                for w in weights]

    mixed, mixed_top = mixed_tables(), mlp(torch.nn)
    mixed_optimizers = [et.optim.Adam([p for t in mixed for p in t.layer.parameters()], lr=1e-3),
                        torch.optim.Adam(mixed_top.parameters(), lr=1e-3)]

    ours = [et.nn.EmbeddingBag.from_pretrained(w.copy(), freeze=False, mode="sum", sparse=True) for w in weights]
    our_top = mlp(et.nn)
    our_optimizer = et.optim.Adam([p for t in ours for p in t.parameters()] + our_top.parameters(), lr=1e-3)

    def torch_way(tables: list[Any], top: Any, optimizers: list[Any]) -> Callable[[], None]:
        def step() -> None:
            for optimizer in optimizers:
                optimizer.zero_grad()
            pooled = torch.cat([tables[0](t_first, t_offsets), tables[1](t_second, t_offsets)], dim=1)
            bce(top(pooled).reshape(-1), t_labels).backward()
            for optimizer in optimizers:
                optimizer.step()
        return step

    def embtable_way() -> None:
        our_optimizer.zero_grad()
        pooled = et.cat([ours[0](first, offsets), ours[1](second, offsets)], dim=1)
        et.nn.functional.binary_cross_entropy_with_logits(our_top(pooled).reshape(-1), labels).backward()
        our_optimizer.step()

    return {"all PyTorch": torch_way(torch_tables, torch_top, torch_optimizers),
            "PyTorch + embtable tables": torch_way(mixed, mixed_top, mixed_optimizers),
            "all embtable": embtable_way}


def run(rows: int, distribution: str, repeats: int) -> list[tuple[str, str, float, float]]:
    """(workload, way, torch ms, this way's ms) for the two ways that use embtable."""
    ways = steps(rows, click_batch(rows, distribution, np.random.default_rng(3)))
    times = side_by_side([(step, lambda: None) for step in ways.values()], repeats)
    label = f"{distribution:7} V={rows:.0e} D={DIM} B={BATCH} L={LENGTH}"
    return [(label, name, times[0], ms) for name, ms in zip(list(ways)[1:], times[1:])]


def main(quick: bool, repeats: int, runs: int) -> int:
    """Print each way's step time against all-PyTorch (medians of `runs` runs)."""
    rows = QUICK_ROWS if quick else ROWS
    print(f"MLP {2 * DIM}-{'-'.join(map(str, HIDDEN))}-1, two sum-pooled tables, Adam everywhere")
    print(f"{'workload':40} {'way':27} {'torch ms':>9} {'ms':>9} {'ratio':>6}")
    results = []
    for count in range(runs):
        if runs > 1:
            print(f"run {count + 1} of {runs}:", file=sys.stderr)
        results.append([row for distribution in ("uniform", "zipf") for row in run(rows, distribution, repeats)])
    for label, way, theirs, ours in medians(results):
        print(f"{label:40} {way:27} {theirs:9.1f} {ours:9.1f} {theirs / ours:6.2f}")
    return 0

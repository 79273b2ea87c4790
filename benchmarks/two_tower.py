"""A matrix-factorisation / two-tower retrieval training step with sampled negatives,
embtable against the same model in PyTorch, in one process, the ways taking turns step
by step. Run by hand (never in CI):

    .venv/bin/python benchmarks/two_tower.py [--runs 3] [--users 1e6] [--items 1e6] [--dim 64]
        [--batch 4096] [--negatives 5] [--sampling uniform|zipf] [--optimizers sgd adam]
        [--repeats 7] [--calls 1] [--threads 2] [--profile]

The model: a user table and an item table (``sparse=True``, float32, the same initial
weights in both libraries). A step takes a batch of users (Zipf(1.05) ids: hot users
repeat), one positive item each (Zipf(1.05)) and `--negatives` negatives each (uniform
over the items, or Zipf(1.05) popularity with ``--sampling zipf``), scores each user
against its 1 + K items by a dot product, takes the binary cross-entropy with logits
(label 1 for the positive, 0 for the negatives, the mean over all B x (1 + K) scores), its
backward, and an optimizer step on both tables: sparse SGD (``torch.optim.SGD`` /
``et.optim.SGD``), or lazy Adam (``torch.optim.SparseAdam`` / ``et.optim.Adam``, which
takes SparseAdam's step on a row-sparse gradient).

The ways:

- ``torch mul-sum``: ``nn.Embedding(sparse=True)``, ``(u[:, None, :] * items(ids)).sum(-1)``.
- ``torch bmm``: the same scored by ``torch.bmm(items(ids), u[:, :, None])``.
- ``embtable composed``: ``(users(u)[:, None, :] * items(ids)).sum(-1)``, op by op.
- ``embtable fused``: ``F.embedding_dot(users, u, items, ids)``.

Each way trains its own copy of the model on the same sequence of batches (16 batches,
drawn before timing and cycled). Its first step, from the shared initial weights on the
first batch, is checked against the same step computed in float64 with NumPy: the loss,
both tables' gradients (the same rows, to float32 tolerance) and the rows after the
update, else the script stops (the ways must be the same model). Then each way takes a
step on every batch untimed: the first steps pay for compilation and for the first touch
of the optimizer's state (fresh pages, zeroed by the system on first use), which
`first_step.py` measures. The runs of an optimizer time the same models, which go on
training.

Times are ms per whole step (zero_grad, forward, loss, backward, optimizer step; the ids
are drawn beforehand), each the median of `--repeats` timed steps after a warm-up turn,
the ways taking turns (`--calls` steps a turn); with ``--runs R`` the median over R runs.
ratio = the faster PyTorch way's time / this way's time (above 1: faster than PyTorch).
PyTorch runs on `--threads` threads (2), numba on its default, one per core. Nothing here
asserts a speed.

``--profile`` instead times the phases of each way's step (zero_grad, forward, loss,
backward, optimizer step): medians over `--repeats` steps, the ways taking turns.

The machine's other load matters much: with 2 cores, another busy process makes every
parallel kernel (numba's and PyTorch's) wait for a descheduled thread, and steps take
several times as long. The script prints the load average and the share of the CPUs
that other processes used during each run; trust runs where that share is near 0%.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

import embtable as et
from embtable.apps.timing import Workload, indices_for, machine, medians, side_by_side

BATCHES = 16  # batches of ids each way cycles through


class OthersLoad:
    """The share of the machine's CPU time that other processes used while this one ran
    (from /proc/stat and this process's own CPU time; None where /proc/stat is missing).
    With 2 cores another busy process makes every parallel kernel wait for a descheduled
    thread, so the times of a run mean little when this is more than a few percent."""

    def __enter__(self) -> OthersLoad:
        self.start = self._sample()
        self.share: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        if self.start is not None and end is not None:
            (busy0, total0, mine0), (busy1, total1, mine1) = self.start, end
            self.share = max(0.0, (busy1 - busy0) - (mine1 - mine0)) / max(total1 - total0, 1e-9)

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + fields[4]
        times = os.times()
        return (sum(fields) - idle) / tick, sum(fields) / tick, times.user + times.system


def draw_batches(args: argparse.Namespace, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """`BATCHES` (user ids [B], item ids [B, 1 + K]: the positive first) pairs."""
    batches = []
    for _ in range(BATCHES):
        users = indices_for(Workload("zipf", args.users, args.dim, args.batch), rng).astype(np.int64)
        positives = indices_for(Workload("zipf", args.items, args.dim, args.batch), rng).astype(np.int64)
        count = args.batch * args.negatives
        if args.sampling == "zipf":
            negatives = indices_for(Workload("zipf", args.items, args.dim, count), rng)
        else:
            negatives = rng.integers(0, args.items, count)
        items = np.concatenate([positives[:, None], negatives.reshape(args.batch, args.negatives)], axis=1)
        batches.append((users, np.ascontiguousarray(items, dtype=np.int64)))
    return batches


def labels(batch: int, negatives: int) -> np.ndarray:
    out = np.zeros((batch, 1 + negatives), np.float32)
    out[:, 0] = 1
    return out


class Way:
    """One library's model (`users`, `items`, `optimizer`), stepping through `batches`."""

    users: Any
    items: Any
    optimizer: Any
    batches: list[tuple[Any, Any]]
    target: Any
    next = 0

    def forward(self, users: Any, items: Any) -> Any:
        """The scores ``[B, 1 + K]``."""
        raise NotImplementedError

    def loss(self, scores: Any) -> Any:
        raise NotImplementedError

    def step(self, batch: int | None = None, update: bool = True) -> Any:
        """A training step on `batch` (None: the next one); the loss."""
        if batch is None:
            batch, self.next = self.next, (self.next + 1) % len(self.batches)
        self.optimizer.zero_grad()
        loss = self.loss(self.forward(*self.batches[batch]))
        loss.backward()
        if update:
            self.optimizer.step()
        return loss

    def phases(self, batch: int) -> tuple[float, ...]:
        """Seconds of zero_grad, forward, loss, backward and optimizer step of one step."""
        clock = [time.perf_counter()]
        self.optimizer.zero_grad()
        clock.append(time.perf_counter())
        scores = self.forward(*self.batches[batch])
        clock.append(time.perf_counter())
        loss = self.loss(scores)
        clock.append(time.perf_counter())
        loss.backward()
        clock.append(time.perf_counter())
        self.optimizer.step()
        clock.append(time.perf_counter())
        return tuple(b - a for a, b in zip(clock, clock[1:]))


class TorchWay(Way):
    """The model in PyTorch: two ``nn.Embedding(sparse=True)`` and SGD or SparseAdam, scored
    by a product and a sum (``mul-sum``) or by ``torch.bmm``."""

    def __init__(self, weights: tuple[np.ndarray, np.ndarray], optimizer: str, lr: float, score: str,
                 batches: list[tuple[np.ndarray, np.ndarray]], target: np.ndarray) -> None:
        self.users, self.items = (torch.nn.Embedding.from_pretrained(torch.from_numpy(w.copy()), freeze=False,
                                                                     sparse=True) for w in weights)
        params = list(self.users.parameters()) + list(self.items.parameters())
        self.optimizer = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.SparseAdam(params, lr=lr)
        self.bmm = score == "bmm"
        self.batches = [(torch.from_numpy(u), torch.from_numpy(i)) for u, i in batches]
        self.target = torch.from_numpy(target)

    def forward(self, users: Any, items: Any) -> Any:
        u, rows = self.users(users), self.items(items)
        if self.bmm:
            return torch.bmm(rows, u[:, :, None]).squeeze(-1)
        return (u[:, None, :] * rows).sum(-1)

    def loss(self, scores: Any) -> Any:
        return torch.nn.functional.binary_cross_entropy_with_logits(scores, self.target)

    def grads(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each table's gradient as (distinct rows ascending, their summed gradients)."""
        out = []
        for table in (self.users, self.items):
            grad = table.weight.grad.coalesce()
            out.append((grad.indices()[0].numpy(), grad.values().numpy()))
        return out

    def rows(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.users.weight.detach().numpy()[users], self.items.weight.detach().numpy()[items]


class EmbtableWay(Way):
    """The model in embtable: two ``Embedding(sparse=True)`` and SGD or (lazy) Adam, scored
    by `F.embedding_dot` (fused) or by lookups, a product and a sum (composed)."""

    def __init__(self, weights: tuple[np.ndarray, np.ndarray], optimizer: str, lr: float, fused: bool,
                 batches: list[tuple[np.ndarray, np.ndarray]], target: np.ndarray) -> None:
        self.users, self.items = (et.nn.Embedding.from_pretrained(w.copy(), freeze=False, sparse=True)
                                  for w in weights)
        params = self.users.parameters() + self.items.parameters()
        self.optimizer = et.optim.SGD(params, lr=lr) if optimizer == "sgd" else et.optim.Adam(params, lr=lr)
        self.fused = fused
        self.batches = batches
        self.target = target

    def forward(self, users: Any, items: Any) -> Any:
        if self.fused:
            return et.nn.functional.embedding_dot(self.users, users, self.items, items)
        return (self.users(users)[:, None, :] * self.items(items)).sum(axis=-1)

    def loss(self, scores: Any) -> Any:
        return et.nn.functional.binary_cross_entropy_with_logits(scores, self.target)

    def grads(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each table's gradient as (distinct rows ascending, their summed gradients)."""
        return [(t.weight.grad.indices.numpy(), t.weight.grad.values.numpy()) for t in (self.users, self.items)]

    def rows(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.users.weight.numpy()[users], self.items.weight.numpy()[items]


WAYS = ("torch mul-sum", "torch bmm", "embtable composed", "embtable fused")


def build(name: str, weights: tuple[np.ndarray, np.ndarray], optimizer: str, lr: float,
          batches: list[tuple[np.ndarray, np.ndarray]], target: np.ndarray) -> Way:
    if name.startswith("torch"):
        return TorchWay(weights, optimizer, lr, name.split()[1], batches, target)
    return EmbtableWay(weights, optimizer, lr, name.endswith("fused"), batches, target)


def reference(weights: tuple[np.ndarray, np.ndarray], batch: tuple[np.ndarray, np.ndarray], target: np.ndarray,
              optimizer: str, lr: float) -> tuple[float, list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """The first step in float64 with NumPy: the loss, each table's gradient (distinct rows
    ascending, their gradients) and the looked-up rows after the update (SGD, or the first
    step of SparseAdam / embtable's lazy Adam with the default betas and eps)."""
    users, items = batch
    tables = [w.astype(np.float64) for w in weights]
    a, b = tables[0][users], tables[1][items]
    scores = np.einsum("nd,nkd->nk", a, b)
    loss = float(np.mean(np.maximum(scores, 0) - scores * target + np.log1p(np.exp(-np.abs(scores)))))
    g = (1 / (1 + np.exp(-scores)) - target) / scores.size
    grads = []
    for ids, per_position in ((users, np.einsum("nk,nkd->nd", g, b)),
                              (items.reshape(-1), (g[:, :, None] * a[:, None, :]).reshape(-1, a.shape[1]))):
        rows, slots = np.unique(ids, return_inverse=True)
        summed = np.zeros((rows.size, a.shape[1]))
        np.add.at(summed, slots, per_position)
        grads.append((rows, summed))
    for table, (rows, grad) in zip(tables, grads):
        if optimizer == "sgd":
            table[rows] -= lr * grad
        else:  # SparseAdam's first step: m = 0.1 g, v = 0.001 g^2, step size lr sqrt(0.001) / 0.1
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            m, v = (1 - beta1) * grad, (1 - beta2) * grad * grad
            table[rows] -= lr * np.sqrt(1 - beta2) / (1 - beta1) * m / (np.sqrt(v) + eps)
    return loss, grads, tables[0][users], tables[1][items]


def check_same_model(ways: dict[str, Way], weights: tuple[np.ndarray, np.ndarray],
                     optimizer: str, lr: float, batches: list[tuple[np.ndarray, np.ndarray]],
                     target: np.ndarray) -> None:
    """The first step of every way (fresh from the same weights, on the first batch)
    against the same step in float64: the loss, both tables' gradients (the same rows, to
    float32 tolerance) and the rows after the optimizer's update. Raises SystemExit where
    a way does not compute the same model.

    The updated rows may differ from float64 by more than the gradients do: PyTorch's
    sparse SGD adds a row's gradient once per occurrence of its id (a hot row: hundreds of
    float32 roundings), embtable once for the row's summed gradient."""
    batch = batches[0]
    ref_loss, ref_grads, ref_u, ref_i = reference(weights, batch, target, optimizer, lr)
    moved = max(np.abs(ref_u - weights[0][batch[0]]).max(), np.abs(ref_i - weights[1][batch[1]]).max())
    scale = max(np.abs(v).max() for _, v in ref_grads)
    for name, way in ways.items():
        loss = float(way.step(0, update=False).item())
        grads = way.grads()
        way.optimizer.step()
        u, i = way.rows(*batch)
        if any(not np.array_equal(rows, ref_rows) for (rows, _), (ref_rows, _) in zip(grads, ref_grads)):
            raise SystemExit(f"{name}'s gradient holds other rows than the reference's")
        grad_diff = max(np.abs(v - ref_v).max() for (_, v), (_, ref_v) in zip(grads, ref_grads)) / scale
        row_diff = max(np.abs(u - ref_u).max(), np.abs(i - ref_i).max())
        print(f"  {optimizer:4} {name:18} loss {loss:.7f} (float64 {ref_loss:.7f}); gradients off by "
              f"{grad_diff:.1e} of the largest; rows after the step off by {row_diff:.1e} (the step moved "
              f"them up to {moved:.1e})")
        if abs(loss - ref_loss) > 1e-6 * max(1.0, abs(ref_loss)) or grad_diff > 1e-5 or row_diff > 1e-5 + 1e-3 * moved:
            raise SystemExit(f"{name} does not compute the model of the float64 reference ({optimizer})")


def prepared(args: argparse.Namespace, weights: tuple[np.ndarray, np.ndarray], batches: list, target: np.ndarray,
             optimizer: str, check: bool) -> dict[str, Way]:
    """Every way's model with `optimizer`, checked (`check`), then a step on every batch
    (compilation, and the first touch of the optimizer's state: fresh pages)."""
    ways = {name: build(name, weights, optimizer, args.lr, batches, target) for name in WAYS}
    if check:
        check_same_model(ways, weights, optimizer, args.lr, batches, target)
    for way in ways.values():
        for _ in range(BATCHES):
            way.step()
    return ways


def run(args: argparse.Namespace, ways: dict[str, Way], optimizer: str) -> list[tuple[str, str, float]]:
    """(optimizer, way, ms per step) of each way, taking turns."""
    times = side_by_side([(way.step, lambda: None) for way in ways.values()], args.repeats, args.calls)
    return [(optimizer, name, ms) for name, ms in zip(ways, times)]


def profile(args: argparse.Namespace, weights: tuple[np.ndarray, np.ndarray], batches: list,
            target: np.ndarray, optimizer: str) -> None:
    """Each way's phases (zero_grad, forward, loss, backward, step), the ways taking turns
    step by step after a step on every batch: medians of `--repeats` steps."""
    ways = list(prepared(args, weights, batches, target, optimizer, check=False).values())
    phases: list[list[tuple[float, ...]]] = [[] for _ in ways]
    with OthersLoad() as load:
        for step in range(args.repeats):
            for way, record in zip(ways, phases):
                record.append(way.phases(step % BATCHES))
    del ways
    names = ("zero_grad", "forward", "loss", "backward", "step")
    for name, record in zip(WAYS, phases):
        parts = [statistics.median(p[j] for p in record) * 1e3 for j in range(len(names))]
        totals = [sum(p) * 1e3 for p in record]
        print(f"{optimizer:4} {name:18} " + " ".join(f"{n} {ms:6.2f}" for n, ms in zip(names, parts))
              + f" | step {statistics.median(totals):6.2f} (fastest {min(totals):6.2f})")
    if load.share is not None:
        print(f"     (other processes used {load.share:.0%} of the CPUs meanwhile)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=lambda s: int(float(s)), default=1_000_000)
    parser.add_argument("--items", type=lambda s: int(float(s)), default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--sampling", choices=("uniform", "zipf"), default="uniform",
                        help="how negatives are drawn: uniform over the items or Zipf(1.05) popularity")
    parser.add_argument("--optimizers", nargs="+", choices=("sgd", "adam"), default=["sgd", "adam"])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=7, help="timed steps of each way per run")
    parser.add_argument("--runs", type=int, default=1, help="runs of each optimizer's ways (the same models)")
    parser.add_argument("--calls", type=int, default=1,
                        help="steps of a way in a row in its turn (more: less of the other library's spinning "
                             "threads in the times)")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads (numba uses one per core)")
    parser.add_argument("--profile", action="store_true", help="time the phases of embtable's step instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    weights = tuple((np.random.default_rng(seed).standard_normal((rows, args.dim)) / 8).astype(np.float32)
                    for seed, rows in ((1, args.users), (2, args.items)))
    batches = draw_batches(args, rng)
    target = labels(args.batch, args.negatives)
    print(machine())
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"users {args.users:.0e} x {args.dim}, items {args.items:.0e} x {args.dim}, batch {args.batch}, "
          f"1 positive + {args.negatives} {args.sampling} negatives, Zipf(1.05) users and positives, "
          f"float32, sparse, lr {args.lr}")
    if args.profile:
        for optimizer in args.optimizers:
            profile(args, weights, batches, target, optimizer)
        return 0

    print(f"check of each way's first step against float64 (NumPy):")
    results: list[list[tuple[str, str, float]]] = [[] for _ in range(args.runs)]
    others = []
    for optimizer in args.optimizers:
        ways = prepared(args, weights, batches, target, optimizer, check=True)
        for count in range(args.runs):
            with OthersLoad() as load:
                results[count] += run(args, ways, optimizer)
            others.append(load.share)
            if load.share is not None:
                print(f"{optimizer} run {count + 1} of {args.runs}: other processes used {load.share:.0%} "
                      f"of the CPUs", file=sys.stderr)
        del ways
    table = medians(results)
    print(f"load average after: {os.getloadavg()[0]:.2f}; other processes' share of the CPUs "
          f"during the runs: {', '.join('?' if o is None else f'{o:.0%}' for o in others)}")
    print(f"ms per step, medians of {args.repeats} x {args.calls} steps"
          + (f", median over {args.runs} runs" if args.runs > 1 else "")
          + "; ratio = the faster PyTorch way / this way")
    print(f"{'optimizer':10} {'way':18} {'ms/step':>9} {'ratio':>7}")
    for optimizer in args.optimizers:
        lines = [line for line in table if line[0] == optimizer]
        best_torch = min(ms for _, name, ms in lines if name.startswith("torch"))
        for _, name, ms in lines:
            print(f"{optimizer:10} {name:18} {ms:9.2f} {best_torch / ms:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sharded tables (SPEC §12) against the same table in one process: a sparse training step
(lookup, backward, optimizer step) at several shard counts, interleaved run by run, as
ratios; and how evenly Zipf traffic falls on the shards. Run by hand (never in CI):

    .venv/bin/python benchmarks/sharded_table.py [--rows 1000000] [--dim 64] [--batch 65536]
        [--shards 1 2 4] [--steps 10] [--runs 3]

On one machine every shard shares its cores with the caller, so this measures what the
transport costs (serialising ids and rows to the shard processes and back), not what more
machines would add.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import ray

import embtable as et
from embtable.distributed import ShardedEmbedding
from embtable.tables.placement import Placement


def zipf_ids(rng: np.random.Generator, rows: int, count: int) -> np.ndarray:
    """Zipf(1.05) ranks, rank r at row r: the hot rows are the first ids, as in a vocabulary
    sorted by frequency (the worst case for range placement without a permutation)."""
    return np.minimum(rng.zipf(1.05, count) - 1, rows - 1)


def step_ms(layer: et.nn.Embedding, optimizer: et.optim.Optimizer, batches: list[np.ndarray]) -> float:
    """The median time of one training step over `batches` (the first one not counted)."""
    times = []
    for ids in batches:
        start = time.perf_counter()
        optimizer.zero_grad()
        layer(ids).sum().backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1e3


def balance(rows: int, shards: int, ids: np.ndarray) -> float:
    """The busiest shard's share of the distinct rows of `ids`, over the even share."""
    distinct = np.unique(ids)
    counts = [picked.shape[0] for picked, _ in Placement(rows, shards).split(distinct)]
    return max(counts) / (distinct.shape[0] / shards)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"{args.rows:.0e} x {args.dim} float32, Adam, Zipf(1.05) batches of {args.batch}; machine: "
          f"{os.cpu_count()} cores; medians of {args.runs} runs of {args.steps} steps, interleaved")
    rng = np.random.default_rng(0)
    local = et.nn.Embedding(args.rows, args.dim, sparse=True)
    tables = {shards: ShardedEmbedding(args.rows, args.dim, shards=shards) for shards in args.shards}
    optimizers = {key: et.optim.Adam(layer.parameters(), lr=0.01)
                  for key, layer in [("local", local), *tables.items()]}
    times: dict[object, list[float]] = {key: [] for key in optimizers}
    for _ in range(args.runs):
        batches = [zipf_ids(rng, args.rows, args.batch) for _ in range(args.steps + 1)]
        for key, layer in [("local", local), *tables.items()]:
            times[key].append(step_ms(layer, optimizers[key], batches))
    local_ms = statistics.median(times["local"])
    print(f"one process: {local_ms:.1f} ms a step")
    for shards in args.shards:
        sharded_ms = statistics.median(times[shards])
        print(f"{shards} shards: {sharded_ms:.1f} ms a step ({sharded_ms / local_ms:.2f}x one process); busiest "
              f"shard holds {balance(args.rows, shards, zipf_ids(rng, args.rows, args.batch)):.3f}x the even share "
              f"of a batch's distinct rows")
    ray.shutdown()


if __name__ == "__main__":
    main()

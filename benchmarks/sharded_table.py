"""Sharded tables (SPEC §12) against the same table in one process, and against the floor of
moving their data between processes here. Run by hand (never in CI):

    .venv/bin/python benchmarks/sharded_table.py [--rows 1000000] [--dim 64] [--batches 4096 65536]
        [--shards 1 2 4] [--steps 10] [--runs 3] [--long-steps 400]

For each batch size and id law (Zipf(1.05), the hot ids first as in a vocabulary sorted by
frequency; uniform) it times a lookup (no gradient) and a sparse Adam training step
(lookup, backward, step) of one table in this process and of tables over 1, 2 and 4 shard
actors, interleaved run by run, as ratios. The **Pipe floor** moves the same bytes a
sharded call moves (ids to each shard, its rows back; for a step also its rows' gradients
to it) over `multiprocessing.Pipe`s to as many echoing processes, all shards at once, and
times only that: the least any transport between processes costs on this machine. The
**overhead** of a sharded table is its time less the local table's; it is reported over
the floor. The third workload of each is the step prefetching the next batch after its
backward (`prefetch`: a no-op in one process). A last line gives the mean of a long run of
Zipf steps of the largest batch, which counts the snapshots in-memory shards take now and
then (a median of short runs leaves them out).
It also reports how evenly a batch's distinct rows fall on the shards.

On one machine every shard shares its cores with the caller: this measures what the
transport costs, not what more machines would add.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from typing import Callable

import numpy as np

import embtable as et
from embtable.distributed import ShardedEmbedding
from embtable.tables.placement import Placement

PLACE_BYTES = 8  # an int64 place a shard is sent per row


def zipf_ids(rng: np.random.Generator, rows: int, count: int) -> np.ndarray:
    """Zipf(1.05) ranks, rank r at row r: the hot rows are the first ids (the worst case for
    range placement without a permutation)."""
    return np.minimum(rng.zipf(1.05, count) - 1, rows - 1)


def uniform_ids(rng: np.random.Generator, rows: int, count: int) -> np.ndarray:
    return rng.integers(0, rows, count)


LAWS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {"zipf": zipf_ids, "uniform": uniform_ids}


def lookup(layer: et.nn.Embedding, optimizer: et.optim.Optimizer, ids: np.ndarray, following: np.ndarray) -> None:
    with et.no_grad():
        layer(ids)


def train_step(layer: et.nn.Embedding, optimizer: et.optim.Optimizer, ids: np.ndarray, following: np.ndarray
               ) -> None:
    optimizer.zero_grad()
    layer(ids).sum().backward()
    optimizer.step()


def prefetched_step(layer: et.nn.Embedding, optimizer: et.optim.Optimizer, ids: np.ndarray,
                    following: np.ndarray) -> None:
    """A training step that, after its backward, prefetches the next batch's rows: their
    gather overlaps the step, whose replies bring back the rows it changed."""
    optimizer.zero_grad()
    layer(ids).sum().backward()
    layer.prefetch(following)
    optimizer.step()


def median_ms(run: Callable[[np.ndarray, np.ndarray], None], batches: list[np.ndarray]) -> float:
    """The median time of `run` over `batches` (each with the one after it; the first not counted)."""
    times = []
    for ids, following in zip(batches, batches[1:]):
        start = time.perf_counter()
        run(ids, following)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1e3


class PipeFloor:
    """`count` processes that answer each message with as many bytes as it asks for."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("fork")  # before Ray starts: nothing of it inherited
        self._pipes, self._processes = [], []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=_echo, args=(theirs,), daemon=True)
            process.start()
            self._pipes.append(ours)
            self._processes.append(process)

    def round_trip(self, messages: list[tuple[int, int]]) -> None:
        """Send process k ``messages[k][0]`` bytes asking for ``messages[k][1]`` back, all at
        once, and wait for every answer."""
        for pipe, (out, back) in zip(self._pipes, messages):
            pipe.send_bytes(back.to_bytes(8, "little") + bytes(out))
        for pipe, _ in zip(self._pipes, messages):
            pipe.recv_bytes()

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.send_bytes(b"")
        for process in self._processes:
            process.join()


def _echo(pipe: multiprocessing.connection.Connection) -> None:
    while message := pipe.recv_bytes():
        pipe.send_bytes(bytes(int.from_bytes(message[:8], "little")))


def floor_ms(floor: PipeFloor, placement: Placement, row_bytes: int, batches: list[np.ndarray],
             training: bool) -> float:
    """The Pipe floor of the bytes a sharded lookup (or step) of each batch moves."""
    def run(ids: np.ndarray, following: np.ndarray) -> None:
        counts = [places.shape[0] for _, places in placement.split(np.unique(ids))]
        floor.round_trip([(PLACE_BYTES * n, row_bytes * n) for n in counts])  # ids out, rows back
        if training:
            floor.round_trip([((PLACE_BYTES + row_bytes) * n, 8) for n in counts])  # gradients out
    return median_ms(run, batches)


def balance(placement: Placement, ids: np.ndarray) -> float:
    """The busiest shard's share of the distinct rows of `ids`, over the even share."""
    distinct = np.unique(ids)
    counts = [picked.shape[0] for picked, _ in placement.split(distinct)]
    return max(counts) / (distinct.shape[0] / placement.shards)


def long_run(args: argparse.Namespace, rng: np.random.Generator) -> None:
    """The mean time of a Zipf step of the largest batch over `--long-steps` steps of fresh
    tables, so that it counts the snapshots in-memory shards take every so often (medians
    of short runs miss them); one process and each shard count in alternating blocks."""
    block, batch = 20, max(args.batches)
    batches = [zipf_ids(rng, args.rows, batch) for _ in range(block + 2)]
    layers = {"local": et.nn.Embedding(args.rows, args.dim, sparse=True),
              **{shards: ShardedEmbedding(args.rows, args.dim, shards=shards) for shards in args.shards}}
    optimizers = {key: et.optim.Adam(layer.parameters(), lr=0.01) for key, layer in layers.items()}
    totals = {key: 0.0 for key in layers}
    for _ in range(args.long_steps // block):
        for key, layer in layers.items():
            start = time.perf_counter()
            for ids in batches[:block]:
                train_step(layer, optimizers[key], ids, ids)
            totals[key] += time.perf_counter() - start
    steps = args.long_steps // block * block
    local = totals["local"] / steps * 1e3
    print(f"zipf   {batch:6d} step, mean of {steps} local {local:6.1f} | "
          + " | ".join(f"{shards}: {totals[shards] / steps * 1e3:6.1f} ({totals[shards] / totals['local']:4.2f}x)"
                       for shards in args.shards), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[4096, 65536])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--long-steps", type=int, default=400, help="steps of the run whose mean counts snapshots")
    args = parser.parse_args()
    floors = {shards: PipeFloor(shards) for shards in args.shards}
    import ray  # after the floor's processes are forked

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"{args.rows:.0e} x {args.dim} float32, Adam; {os.cpu_count()} cores; medians of {args.runs} runs of "
          f"{args.steps} calls, interleaved; times in ms; overhead = sharded - one process, over the Pipe floor")
    rng = np.random.default_rng(0)
    layers = {"local": et.nn.Embedding(args.rows, args.dim, sparse=True),
              **{shards: ShardedEmbedding(args.rows, args.dim, shards=shards) for shards in args.shards}}
    optimizers = {key: et.optim.Adam(layer.parameters(), lr=0.01) for key, layer in layers.items()}
    row_bytes = 4 * args.dim
    for batch in args.batches:
        for law, draw in LAWS.items():
            for op, run in (("lookup", lookup), ("step", train_step), ("step, prefetching", prefetched_step)):
                times: dict[object, list[float]] = {key: [] for key in [*layers, *(("floor", k) for k in floors)]}
                for _ in range(args.runs):
                    batches = [draw(rng, args.rows, batch) for _ in range(args.steps + 2)]
                    for key, layer in layers.items():
                        times[key].append(median_ms(lambda ids, following: run(layer, optimizers[key], ids,
                                                                               following), batches))
                    for shards, floor in floors.items():
                        times["floor", shards].append(floor_ms(floor, Placement(args.rows, shards), row_bytes,
                                                               batches, run is not lookup))
                local = statistics.median(times["local"])
                cells = []
                for shards in args.shards:
                    sharded, floor = statistics.median(times[shards]), statistics.median(times["floor", shards])
                    cells.append(f"{shards}: {sharded:6.1f} ({sharded / local:4.2f}x, floor {floor:5.1f}, overhead "
                                 f"{(sharded - local) / floor:4.1f}x floor)")
                print(f"{law:7s} {batch:6d} {op:17s} local {local:6.1f} | " + " | ".join(cells), flush=True)
    del layers, optimizers, layer  # their shards' memory
    long_run(args, rng)
    ids = zipf_ids(rng, args.rows, max(args.batches))
    print("busiest shard over the even share of a Zipf batch's distinct rows: "
          + ", ".join(f"{shards} shards {balance(Placement(args.rows, shards), ids):.3f}x" for shards in args.shards))
    for floor in floors.values():
        floor.close()
    ray.shutdown()


if __name__ == "__main__":
    main()

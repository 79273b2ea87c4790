"""File-backed tables (SPEC §11) against an in-memory table: creation, sparse training steps,
commits, bytes written to disk and peak memory. Run once by hand (never in CI):

    .venv/bin/python benchmarks/mapped_table.py --path /big/disk/table.safetensors
        [--rows 100000000] [--dim 64] [--steps 300] [--batch 65536] [--cache-gib 4]

It writes a rows x dim float32 table (25.6 GB at the defaults), trains it with Adam and
RowWiseAdagrad on Zipf(1.05) ids (hot rows scattered over the table) and on uniform ids,
committing every --commit-every steps, and times the same steps on an in-memory 1e6 x dim
table given Zipf ids of the same ranks. Each optimizer gets a table of its own, created
afresh. Steps on the file run in blocks of --block, alternately with `prefetch` (each step
prefetches the next one's ids, the block's last one excepted) and without, so the two are
compared over the same stretch of the run. It reports each step's rows read for the first
time (ids no earlier batch had: no cache can hold them) and bytes read from the disk, and
deletes its files at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import time

import numpy as np

import embtable as et

MEMORY_ROWS = 1_000_000
SCATTER = 0x9E3779B1  # rank -> row: multiplication by a constant coprime to the row count


def zipf_rows(rng: np.random.Generator, rows: int, count: int, exponent: float = 1.05) -> np.ndarray:
    """`count` ids whose ranks follow Zipf(`exponent`) over `rows` (inverse CDF of the
    continuous law), rank r placed at row ``r * SCATTER mod rows`` (hot rows scattered)."""
    u = rng.random(count)
    ranks = np.floor((1 + u * (rows ** (1 - exponent) - 1)) ** (1 / (1 - exponent))).astype(np.int64) - 1
    ranks = np.clip(ranks, 0, rows - 1)
    return (ranks * SCATTER) % rows


def memory_status() -> dict[str, int]:
    """This process's resident memory now (anonymous and file-backed pages), in bytes."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[name] = int(value.split()[0]) * 1024
    return fields


def reset_peak_memory() -> None:
    """Start this process's peak-RSS count (VmHWM) afresh from its current RSS (Linux)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def io_bytes(field: str) -> int:
    """Bytes this process caused to be read from (``read_bytes``) or written to
    (``write_bytes``) storage so far (/proc/self/io): page-cache hits are not counted."""
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def written_bytes() -> int:
    return io_bytes("write_bytes")


def first_touches(batches: list[np.ndarray], rows: int) -> list[int]:
    """How many distinct ids of each batch no earlier batch had."""
    seen = np.zeros(rows, bool)
    counts = []
    for ids in batches:
        distinct = np.unique(ids)
        counts.append(int(np.count_nonzero(~seen[distinct])))
        seen[distinct] = True
    return counts


def train(emb: et.nn.Embedding, optimizer_cls: type, batches: list[np.ndarray], commit_every: int | None,
          state_bytes_per_row: int, block: int) -> dict[str, object]:
    """Time each step (lookup, backward, optimizer step) over `batches`, in blocks of
    `block` steps alternately prefetching the next step's ids and not; commit every
    `commit_every` steps (file-backed tables), timing each commit against the rows changed
    since the previous one and the bytes written meanwhile."""
    optimizer = optimizer_cls(emb.parameters(), lr=0.01)
    step_ms, commits, peak = [], [], {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
    prefetched, read_mb = [], []
    reset_peak_memory()
    changed: list[np.ndarray] = []
    written = first_written = written_bytes()
    row_bytes = emb.embedding_dim * 4 + state_bytes_per_row
    for number, ids in enumerate(batches, 1):
        in_prefetch_block = (number - 1) // block % 2 == 0
        prefetched.append(in_prefetch_block and (number - 1) % block != 0)
        read = io_bytes("read_bytes")
        start = time.perf_counter()
        if in_prefetch_block and number % block != 0 and number < len(batches):
            emb.prefetch(batches[number])
        optimizer.zero_grad()
        emb(ids).sum().backward()
        optimizer.step()
        step_ms.append((time.perf_counter() - start) * 1e3)
        read_mb.append((io_bytes("read_bytes") - read) / 1e6)
        changed.append(ids)
        if commit_every and number % commit_every == 0:
            start = time.perf_counter()
            emb.commit()
            seconds = time.perf_counter() - start
            rows = np.unique(np.concatenate(changed)).shape[0]
            now = written_bytes()
            folded = json.loads(open(emb.path + ".state/manifest.json").read())["logged"] == 0
            commits.append({"seconds": seconds, "rows": rows, "written_per_changed": (now - written) / (rows * row_bytes),
                            "folded": folded})
            written, changed = now, []
        status = memory_status()
        for name in peak:
            peak[name] = max(peak[name], status[name])
    peak["VmHWM"] = memory_status()["VmHWM"]
    warm = range(len(step_ms) // 5, len(step_ms))  # the first fifth fills the cache
    all_changed = sum(commit["rows"] for commit in commits) * row_bytes
    return {"step_ms": statistics.median(step_ms[i] for i in warm if not prefetched[i]),
            "prefetched_ms": statistics.median([step_ms[i] for i in warm if prefetched[i]] or [float("nan")]),
            "read_mb": statistics.median(read_mb[i] for i in warm),
            "first_ms": step_ms[0], "mean_ms": statistics.fmean(step_ms),
            "commits": commits, "peak": peak,
            "written_per_changed": (written_bytes() - first_written) / all_changed if all_changed else float("nan"),
            "distinct": statistics.median(np.unique(ids).shape[0] for ids in batches[:20])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", required=True)
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--commit-every", type=int, default=50)
    parser.add_argument("--uniform-steps", type=int, default=40,
                        help="steps of uniform ids (each changes ~batch new rows: commits write far more)")
    parser.add_argument("--cache-gib", type=float, default=4.0)
    parser.add_argument("--block", type=int, default=10,
                        help="steps a block; blocks alternate between prefetching and not")
    parser.add_argument("--only", choices=["zipf", "uniform"], default=None)
    args = parser.parse_args()
    cache_bytes = int(args.cache_gib * (1 << 30))
    print(f"table {args.rows:.0e} x {args.dim} float32 ({args.rows * args.dim * 4 / 1e9:.1f} GB), "
          f"cache {args.cache_gib} GiB, batches of {args.batch}, {args.steps} steps, "
          f"commit every {args.commit_every}; machine: {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    print(f"interpreter with embtable imported: RSS {memory_status()['VmRSS'] / 2**20:.0f} MiB")
    rng = np.random.default_rng(0)
    cases = [("zipf", lambda rows: zipf_rows(rng, rows, args.batch), args.steps, args.commit_every),
             ("uniform", lambda rows: rng.integers(0, rows, args.batch), args.uniform_steps, args.uniform_steps)]
    try:
        for optimizer_cls, state_per_row in ((et.optim.RowWiseAdagrad, 4), (et.optim.Adam, 2 * args.dim * 4)):
            for name, draw, steps, commit_every in cases:
                if args.only and name != args.only:
                    continue
                seed = int(rng.integers(1 << 30))
                rng = np.random.default_rng(seed)
                file_batches = [draw(args.rows) for _ in range(steps)]
                touches = first_touches(file_batches, args.rows)
                rng = np.random.default_rng(seed)  # the same ranks, placed in the smaller table
                memory_batches = [draw(MEMORY_ROWS) for _ in range(steps)]
                if name == "zipf" or args.only:
                    create(args.path, args.rows, args.dim, cache_bytes)
                emb = et.nn.Embedding.open(args.path, writable=True, cache_bytes=cache_bytes)
                on_file = train(emb, optimizer_cls, file_batches, commit_every, state_per_row, args.block)
                on_file["first_touches"] = statistics.median(touches[len(touches) // 5:])
                del emb
                gc.collect()
                memory = et.nn.Embedding(MEMORY_ROWS, args.dim, sparse=True)
                in_memory = train(memory, optimizer_cls, memory_batches, None, state_per_row, args.block)
                del memory
                gc.collect()
                report(optimizer_cls.__name__, name, on_file, in_memory)
    finally:
        os.unlink(args.path)
        shutil.rmtree(args.path + ".state", ignore_errors=True)


def create(path: str, rows: int, dim: int, cache_bytes: int) -> None:
    """A fresh table of the seed 0 at `path` (its old files replaced), timed."""
    start, written = time.perf_counter(), written_bytes()
    reset_peak_memory()
    et.manual_seed(0)
    et.nn.Embedding.create(path, rows, dim, cache_bytes=cache_bytes)
    gc.collect()
    print(f"\ncreate: {time.perf_counter() - start:.1f} s, {(written_bytes() - written) / 1e9:.1f} GB written, "
          f"peak RSS {memory_status()['VmHWM'] / 2**30:.2f} GiB")


def report(optimizer: str, distribution: str, on_file: dict, in_memory: dict) -> None:
    commits = on_file["commits"]
    memory_ms = statistics.median([in_memory["step_ms"], in_memory["prefetched_ms"]])
    print(f"{optimizer} {distribution}: step {on_file['step_ms']:.1f} ms in the file, {on_file['prefetched_ms']:.1f} ms "
          f"prefetched, vs {memory_ms:.1f} ms in memory ({on_file['step_ms'] / memory_ms:.2f}x, prefetched "
          f"{on_file['prefetched_ms'] / memory_ms:.2f}x; first step {on_file['first_ms']:.0f} ms, mean with "
          f"evictions {on_file['mean_ms']:.1f} ms); distinct rows a batch: {on_file['distinct']:.0f} (memory "
          f"table: {in_memory['distinct']:.0f}); read for the first time a step: {on_file['first_touches']:.0f} "
          f"rows; read from disk a step: {on_file['read_mb']:.1f} MB")
    for commit in commits:
        print(f"  commit: {commit['seconds']:.2f} s for {commit['rows']} rows changed; "
              f"{commit['written_per_changed']:.1f} bytes written per changed byte"
              f"{' (the log folded into the files)' if commit['folded'] else ''}")
    print(f"  over the run: {on_file['written_per_changed']:.1f} bytes written per changed byte (folds included)")
    peak = on_file["peak"]
    print(f"  peak RSS {peak['VmHWM'] / 2**30:.2f} GiB (high-water mark); sampled after steps: "
          f"RSS {peak['VmRSS'] / 2**30:.2f} GiB (anonymous {peak['RssAnon'] / 2**30:.2f}, "
          f"file pages {peak['RssFile'] / 2**30:.2f})")


if __name__ == "__main__":
    main()

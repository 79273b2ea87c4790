"""`Embedding.most_similar` (SPEC §5, "Nearest rows") against a plain NumPy brute force and
gensim's ``KeyedVectors.most_similar``, side by side in one process, the cases taking turns.
Run by hand (never in CI; needs gensim):

    .venv/bin/python benchmarks/most_similar.py [--rows 1000000] [--dim 64] [--queries 1 64]
        [--k 10] [--runs 3] [--turns 3]

A float32 table of standard normal rows; each case finds the `--k` rows of highest cosine
similarity to each of 1 and 64 query vectors:

- embtable: ``most_similar`` on the table in memory, and on the same table file-backed
  (``Embedding.open``, read-only, rows read through its cache: warm after the first call);
- NumPy: unit rows (normalised once, untimed, and kept: a second table) ``@`` the unit
  queries, ``argpartition``, then the `k` sorted: a ``[Q, rows]`` score matrix at once;
- gensim: ``KeyedVectors.most_similar(vector, topn=k)`` (norms computed once, untimed),
  one call per query: it has no batch of queries.

Times are medians over `--runs` runs of `--turns` interleaved turns (after one warm-up
turn); ratios are the other's time over embtable's (above 1: embtable is faster). Peak
extra memory is what one call allocates above what was held before it (tracemalloc, which
sees NumPy's allocations), not counting what a method keeps between calls (listed).
Agreement is the share of the brute force's rows that embtable also returned.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import tracemalloc

import numpy as np
from gensim.models import KeyedVectors

import embtable as et
from embtable.apps.timing import machine, side_by_side


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(unit_rows: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The `k` rows of highest cosine per query, best first, from a whole score matrix."""
    scores = unit(queries) @ unit_rows.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def peak_mib(call) -> float:
    """MiB allocated at the peak of one `call`, above what was allocated before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        call()
        return (tracemalloc.get_traced_memory()[1] - before) / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    in_memory = et.nn.Embedding.from_pretrained(weights)
    folder = tempfile.mkdtemp()
    in_memory.save(os.path.join(folder, "table.safetensors"))
    on_file = et.nn.Embedding.open(os.path.join(folder, "table.safetensors"))
    unit_rows = unit(weights)
    vectors = KeyedVectors(args.dim)
    vectors.add_vectors([str(i) for i in range(args.rows)], weights)
    vectors.fill_norms()
    print(f"{args.rows:.0e} x {args.dim} float32, k={args.k}; kept between calls: NumPy's unit rows "
          f"{unit_rows.nbytes / 2**20:.0f} MiB, gensim's norms {vectors.norms.nbytes / 2**20:.0f} MiB, "
          f"embtable nothing")
    for count in args.queries:
        queries = rng.standard_normal((count, args.dim)).astype(np.float32)
        cases = {
            "embtable": lambda: in_memory.most_similar(queries, args.k),
            "embtable file": lambda: on_file.most_similar(queries, args.k),
            "numpy": lambda: brute_force(unit_rows, queries, args.k),
            "gensim": lambda: [vectors.most_similar(q, topn=args.k) for q in queries],
        }
        names = list(cases)
        runs = [side_by_side([(cases[name], lambda: None) for name in names], repeats=args.turns)
                for _ in range(args.runs)]
        ms = {name: statistics.median(run[i] for run in runs) for i, name in enumerate(names)}
        peaks = {name: peak_mib(cases[name]) for name in names}
        ours = in_memory.most_similar(queries, args.k)[0].numpy()
        theirs = brute_force(unit_rows, queries, args.k)
        agreement = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ours, theirs)])
        print(f"{count} quer{'y' if count == 1 else 'ies'}: agreement with NumPy {agreement:.3f}")
        for name in names:
            ratio = "" if name == "embtable" else f"   {ms[name] / ms['embtable']:6.2f}x embtable's time"
            print(f"  {name:14} {ms[name]:9.1f} ms   peak extra {peaks[name]:7.1f} MiB{ratio}")


if __name__ == "__main__":
    main()

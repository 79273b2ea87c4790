"""Load time of a 1M x 100 word2vec text file: embtable.io.load_word_vectors against gensim's
KeyedVectors.load_word2vec_format, on the same file, as a ratio (above 1: embtable is
faster). Writes the file once (random vectors, 6 decimals) into the temporary folder.
Needs gensim (pip install gensim); not part of the tests.

    .venv/bin/python benchmarks/load_vectors.py [--rows 1000000] [--dim 100]
"""

import argparse
import os
import tempfile
import time

import numpy as np
from gensim.models import KeyedVectors

import embtable as et


def write(path: str, rows: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"{rows} {dim}\n")
        for start in range(0, rows, 10_000):
            block = rng.standard_normal((min(10_000, rows - start), dim)).astype(np.float32)
            text = np.char.mod("%.6f", block)
            file.writelines(f"w{start + i} {' '.join(row)}\n" for i, row in enumerate(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=100)
    args = parser.parse_args()
    path = os.path.join(tempfile.gettempdir(), f"embtable-vectors-{args.rows}x{args.dim}.txt")
    if not os.path.exists(path):
        start = time.perf_counter()
        write(path, args.rows, args.dim)
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.0f} MB) in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    words, emb = et.io.load_word_vectors(path)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    kv = KeyedVectors.load_word2vec_format(path)
    theirs = time.perf_counter() - start
    assert words == kv.index_to_key and np.array_equal(emb.weight.numpy(), kv.vectors)
    print(f"embtable: {ours:.1f} s   gensim: {theirs:.1f} s   ratio gensim / embtable: {theirs / ours:.2f}")


if __name__ == "__main__":
    main()

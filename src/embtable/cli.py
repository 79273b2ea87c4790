"""The ``embtable`` command."""

from __future__ import annotations

import argparse
import sys

import embtable as et
from embtable.nn import Embedding


def demo() -> None:
    """Look up the seed's examples and print what comes back."""
    et.manual_seed(0)
    cases = [
        ("indices", Embedding.new(10, 5), [1, 3, 5, 7]),
        ("batch of indices", Embedding.new(10, 5), et.Tensor([1, 3, 5, 7, 2, 4, 6, 8]).reshape(2, 4)),
        ("word embeddings", Embedding.new(10000, 300), [42, 1337, 7, 42]),
        ("one-hot to dense", Embedding.new(10, 5), [0, 3, 9, 2]),
        ("with padding", Embedding(1000, 64, padding_idx=0), [0, 1, 2, 0, 3, 0]),
        ("with maximum norm", Embedding(1000, 64, max_norm=1.0), [5, 10, 15]),
    ]
    for title, layer, indices in cases:
        vectors = layer(indices)
        shape = indices.shape if isinstance(indices, et.Tensor) else (len(indices),)
        norms = vectors.numpy().astype("float64")
        largest = float((norms**2).sum(axis=-1).max() ** 0.5)
        print(f"{title:>18}: {layer!r} maps indices of shape {shape} to {vectors.shape}, "
              f"largest row norm {largest:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embtable", description=et.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the seed's examples and print the shapes")
    commands.add_parser("bench", help="time embtable against PyTorch (pass --help for options)",
                        add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from embtable.bench import main as bench

        return bench(rest)
    parser.parse_args(argv)
    demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())

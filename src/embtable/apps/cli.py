"""The ``embtable`` command: ``demo`` (train word vectors), ``neighbors``, ``bench``."""

from __future__ import annotations

import argparse
import os
import sys

import embtable as et

from . import demo, neighbors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embtable", description=et.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(commands.add_parser(
        "demo", help="train word vectors on the standard library's docs and show them"))
    near = commands.add_parser("neighbors", help="nearest neighbours of words (cosine) in vectors a demo wrote "
                                                 "or in a word-vector file")
    near.add_argument("words", nargs="+")
    near.add_argument("--vectors", default="embtable-demo",
                      help="a demo's --out folder, or a word-vector file: word2vec text or binary, GloVe, "
                           "fastText .vec (default: %(default)s)")
    near.add_argument("-k", type=int, default=10, help="neighbours per word (default: %(default)s)")
    commands.add_parser("bench", help="time embtable against PyTorch (pass --help for options)",
                        add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from .bench import main as bench

        return bench(rest)
    args = parser.parse_args(argv)
    wait_politely()
    if args.command == "neighbors":
        return demo.errors_as_messages(lambda: neighbors.show(args.words, args.vectors, args.k))
    return demo.errors_as_messages(lambda: demo.run(args))


def wait_politely() -> None:
    """Let the OpenMP workers of numba's kernels sleep between kernels (``OMP_WAIT_POLICY=
    PASSIVE``) unless the environment already chose a policy; in effect for this process's
    kernels, which have not started yet. By default they spin a while after each kernel, and
    beside one busy process that doubled the demo's time (BENCHMARKS.md: 36.4 s against
    17.9 s idle; passive 17.9 s and 17.8 s idle). The library leaves the default alone:
    sleeping workers add a wake-up (10-70 us measured) to every parallel kernel, which a
    program making many small calls would feel. ``bench`` keeps the default, to time what
    a library user gets. The variable is this process's (children inherit it); it does
    nothing where GNU OpenMP was loaded before, or where numba runs on TBB."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


if __name__ == "__main__":
    sys.exit(main())

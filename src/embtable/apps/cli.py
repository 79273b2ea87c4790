"""The ``embtable`` command: ``demo`` (train word vectors), ``neighbors``, ``bench``."""

from __future__ import annotations

import argparse
import sys

import embtable as et

from . import demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embtable", description=et.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(commands.add_parser(
        "demo", help="train word vectors on the standard library's docs and show them"))
    near = commands.add_parser("neighbors", help="nearest neighbours in vectors a demo wrote")
    near.add_argument("words", nargs="+")
    near.add_argument("--vectors", default="embtable-demo", help="the demo's --out folder (default: %(default)s)")
    near.add_argument("-k", type=int, default=10)
    commands.add_parser("bench", help="time embtable against PyTorch (pass --help for options)",
                        add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from .bench import main as bench

        return bench(rest)
    args = parser.parse_args(argv)
    if args.command == "neighbors":
        return demo.errors_as_messages(lambda: demo.neighbors(args.words, args.vectors, args.k))
    return demo.errors_as_messages(lambda: demo.run(args))


if __name__ == "__main__":
    sys.exit(main())

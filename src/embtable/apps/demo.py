"""The main job (`embtable demo`): train word vectors on a corpus every machine has, write
them out, draw them, and show nearest neighbours."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import embtable as et

from ..errors import Error, InvalidArgumentError
from ..tables.progress import progress_bar
from . import plots
from ..nn.nearest import returnable_rows
from .corpus import file_corpus, stdlib_corpus
from .word2vec import FINAL_LR_SHARE, OPTIMIZERS, Settings, Vocabulary, train

PROBES = ("list", "file", "thread", "error", "string", "socket")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, each with its help and default (`embtable demo --help`)."""
    defaults = Settings()
    parser.add_argument("--corpus", help="a UTF-8 text file to train on (default: the docstrings and comments "
                                         "of Python's standard library)")
    parser.add_argument("--out", default="embtable-demo", help="folder for the results (default: %(default)s)")
    parser.add_argument("--min-count", type=int, default=5,
                        help="leave out words seen fewer times than this (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=defaults.dim,
                        help="length of each word vector (default: %(default)s)")
    parser.add_argument("--window", type=int, default=defaults.window,
                        help="the most words on each side of a word that count as its context; each word "
                             "draws a window of 1 to this many (default: %(default)s)")
    parser.add_argument("--negatives", type=int, default=defaults.negatives,
                        help="noise words contrasted with each (word, context) pair (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="passes over the corpus (default: %(default)s)")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=defaults.optimizer,
                        help="sgd: word2vec's and gensim's plain SGD, the rate falling linearly to "
                             f"{FINAL_LR_SHARE:g} of its start over training; adam: Adam, the rate constant "
                             "(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=None,
                        help="the learning rate (SGD's per (word, context) pair at the start) (default: "
                             + ", ".join(f"{rate} for {name}" for name, rate in OPTIMIZERS.items()) + ")")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the initial vectors and every random draw of training (default: %(default)s)")
    parser.add_argument("--device", default="cpu",
                        help="where the tables live: cpu, cuda, cuda:N or mps (default: %(default)s)")
    parser.add_argument("--probes", nargs="*", default=list(PROBES), metavar="WORD",
                        help=f"words whose nearest neighbours to print (default: {' '.join(PROBES)})")


def run(args: argparse.Namespace) -> None:
    """Build the corpus, train, write every output, print neighbours."""
    et.set_default_device(args.device)
    if min(args.dim, args.window, args.negatives, args.epochs, args.min_count) < 1 or \
            (args.lr is not None and args.lr <= 0):
        raise InvalidArgumentError("--dim, --window, --negatives, --epochs and --min-count must be >= 1 "
                                   "and --lr > 0")
    started = time.perf_counter()
    corpus = file_corpus(args.corpus) if args.corpus else stdlib_corpus()
    total = sum(map(len, corpus))
    if total == 0:
        raise InvalidArgumentError(f"the corpus {args.corpus or 'of the standard library'} holds no words")
    vocabulary = Vocabulary.build(corpus, args.min_count)
    ids, sentence_of = vocabulary.encode(corpus)
    if len(ids) <= args.window:
        raise InvalidArgumentError(f"the corpus has {len(ids)} words seen {args.min_count}+ times, "
                                   f"no more than the window ({args.window}): nothing to learn")
    if not (sentence_of[1:] == sentence_of[:-1]).any():
        raise InvalidArgumentError("no two words of the corpus share a sentence: nothing to learn")
    print(f"corpus: {total} words in {len(corpus)} sentences; vocabulary: {len(vocabulary)} words "
          f"seen {args.min_count}+ times ({time.perf_counter() - started:.1f} s)")

    et.manual_seed(args.seed)
    settings = Settings(dim=args.dim, window=args.window, negatives=args.negatives, epochs=args.epochs, lr=args.lr,
                        optimizer=args.optimizer)
    with progress_bar(len(ids) * args.epochs, True, unit="word", unit_scale=True, desc="training",
                      mininterval=1.0) as bar:

        def progress(words: int, loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(words)

        model, losses, finished = train(vocabulary, ids, sentence_of, settings, np.random.default_rng(args.seed),
                                        progress)
    if not finished:
        print("stopped early (Ctrl-C): saving what was learned")
    save(args.out, vocabulary, model.words, losses)
    print(f"wrote {', '.join(OUTPUTS)} to {args.out}/ ({time.perf_counter() - started:.0f} s in all)")
    index = vocabulary.index()
    k = min(6, returnable_rows(len(vocabulary), model.words.padding_idx, by_index=True))
    for word in args.probes if k else ():  # one word has no neighbours
        if word not in index:
            print(f"{word}: {word!r} is not in the vocabulary of {len(vocabulary)} words")
            continue
        rows, scores = model.words.most_similar(index[word], k=k)
        print(f"{word:>8}: " + ", ".join(f"{vocabulary.words[r]} ({s:.2f})"
                                         for r, s in zip(rows.tolist(), scores.tolist())))


OUTPUTS = ("vectors.safetensors", "vocab.txt", "vectors.txt", "loss.png", "map.png")


def save(folder: str, vocabulary: Vocabulary, table: et.nn.Embedding, losses: list[list[float]]) -> None:
    """Write the word vectors (safetensors and word2vec text), the vocabulary and the two
    plots (`plots`); `losses` holds each epoch's batch losses."""
    os.makedirs(folder, exist_ok=True)
    table.save(os.path.join(folder, "vectors.safetensors"))
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as file:
        file.writelines(f"{w} {c}\n" for w, c in zip(vocabulary.words, vocabulary.counts))
    et.io.save_word_vectors(os.path.join(folder, "vectors.txt"), vocabulary.words, table)
    plots.write(plots.loss_figure(losses), os.path.join(folder, "loss.png"))
    plots.write(plots.word_map_figure(vocabulary.words, table.weight.numpy()), os.path.join(folder, "map.png"))


def errors_as_messages(action) -> int:
    """Run `action`; an embtable error becomes a one-line message and exit status 2."""
    try:
        action()
    except Error as error:
        print(f"embtable: {error}")
        return 2
    return 0

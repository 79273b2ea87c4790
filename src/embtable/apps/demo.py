"""The main job (`embtable demo`): train word vectors on a corpus every machine has, write
them out, draw them, and show nearest neighbours."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import embtable as et

from ..errors import Error, InvalidArgumentError
from ..validate import integer
from .corpus import file_corpus, stdlib_corpus
from .word2vec import Settings, Vocabulary, nearest, train

PROBES = ("list", "file", "thread", "error", "string", "socket")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument("--corpus", help="a UTF-8 text file (default: the docstrings and comments "
                                         "of Python's standard library)")
    parser.add_argument("--out", default="embtable-demo", help="folder for the results (default: %(default)s)")
    parser.add_argument("--min-count", type=int, default=5, help="drop rarer words (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=defaults.dim)
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--negatives", type=int, default=defaults.negatives)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--probes", nargs="*", default=list(PROBES), help="words whose neighbours to print")


def run(args: argparse.Namespace) -> None:
    """Build the corpus, train, write every output, print neighbours."""
    from tqdm import tqdm

    et.set_default_device(args.device)
    if min(args.dim, args.window, args.negatives, args.epochs, args.min_count) < 1 or args.lr <= 0:
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
    settings = Settings(dim=args.dim, window=args.window, negatives=args.negatives, epochs=args.epochs, lr=args.lr)
    bar = tqdm(total=len(ids) * args.epochs, unit="word", unit_scale=True, desc="training", mininterval=1.0)

    def progress(words: int, loss: float) -> None:
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.update(words)

    model, losses, finished = train(vocabulary, ids, sentence_of, settings, np.random.default_rng(args.seed),
                                    progress)
    bar.close()
    if not finished:
        print("stopped early (Ctrl-C): saving what was learned")
    vectors = model.words.weight.numpy().astype(np.float64)
    save(args.out, vocabulary, model.words, vectors, losses)
    print(f"wrote {', '.join(OUTPUTS)} to {args.out}/ ({time.perf_counter() - started:.0f} s in all)")
    for word in args.probes:
        try:
            found = nearest(vectors, vocabulary.words, word, k=6)
        except InvalidArgumentError as error:
            print(f"{word}: {error}")
            continue
        print(f"{word:>8}: " + ", ".join(f"{w} ({s:.2f})" for w, s in found))


OUTPUTS = ("vectors.safetensors", "vocab.txt", "vectors.txt", "loss.png", "map.png")


def save(folder: str, vocabulary: Vocabulary, table: et.nn.Embedding, vectors: np.ndarray,
         losses: list[float]) -> None:
    """Write the word vectors (safetensors and word2vec text), the vocabulary and the plots."""
    os.makedirs(folder, exist_ok=True)
    table.save(os.path.join(folder, "vectors.safetensors"))
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as file:
        file.writelines(f"{w} {c}\n" for w, c in zip(vocabulary.words, vocabulary.counts))
    et.io.save_word_vectors(os.path.join(folder, "vectors.txt"), vocabulary.words, table)
    plot(folder, vocabulary.words, vectors, losses)


def plot(folder: str, words: list[str], vectors: np.ndarray, losses: list[float]) -> None:
    """loss.png: the batch losses; map.png: the 200 most frequent words on their first two
    principal components."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(losses, linewidth=0.6, alpha=0.5, label="batch")
    if len(losses) >= 50:
        smooth = np.convolve(losses, np.ones(50) / 50, mode="valid")
        axes.plot(np.arange(49, len(losses)), smooth, label="mean of 50")
    axes.set(xlabel="batch", ylabel="negative-sampling loss", title="embtable word2vec training")
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(folder, "loss.png"), dpi=120)
    plt.close(figure)

    top = vectors[:200] - vectors[:200].mean(axis=0)
    _, _, components = np.linalg.svd(top, full_matrices=False)
    points = top @ components[:2].T
    figure, axes = plt.subplots(figsize=(12, 12))
    axes.scatter(points[:, 0], points[:, 1], s=4)
    for word, (x, y) in zip(words[:200], points):
        axes.annotate(word, (x, y), fontsize=7)
    axes.set(title="the 200 most frequent words, first two principal components")
    figure.tight_layout()
    figure.savefig(os.path.join(folder, "map.png"), dpi=100)
    plt.close(figure)


def neighbors(words: list[str], folder: str, k: int = 10) -> None:
    """Print the nearest neighbours of `words` in the vectors a demo run wrote to `folder`."""
    k = integer("-k", k, 1)
    try:
        table = et.nn.Embedding.load(os.path.join(folder, "vectors.safetensors"))
        with open(os.path.join(folder, "vocab.txt"), encoding="utf-8") as file:
            vocabulary = [line.split(" ", 1)[0] for line in file]
    except OSError as error:
        raise InvalidArgumentError(f"no demo vectors in {folder!r} ({error.strerror}); run `embtable demo` "
                                   f"first or pass --vectors") from None
    vectors = table.weight.numpy().astype(np.float64)
    for word in words:
        found = nearest(vectors, vocabulary, word, k)
        print(f"{word}: " + ", ".join(f"{w} ({s:.2f})" for w, s in found))


def errors_as_messages(action) -> int:
    """Run `action`; an embtable error becomes a one-line message and exit status 2."""
    try:
        action()
    except Error as error:
        print(f"embtable: {error}")
        return 2
    return 0

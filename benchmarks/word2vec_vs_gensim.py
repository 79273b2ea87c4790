"""embtable's word2vec (the demo's) against gensim's Word2Vec: the same corpus and settings
(skip-gram, 5 negatives, window 5, dim 100, 5 epochs, 2 workers, min_count 5, sample 1e-3;
`--epochs`, `--optimizer`, `--lr` and `--batch` change embtable's and the epochs both's).

Reports training words per second (corpus words x epochs / training seconds) for both, the
median of `--runs` runs taken in turn (embtable, gensim, embtable, ...: this machine's speed
drifts), and how alike the two sets of vectors are: the Spearman correlation of the pairwise
cosine similarities of the 300 most frequent words, and the mean overlap of their 10 nearest
neighbours. The first two gensim runs (seeds 0 and 1) calibrate those numbers: two runs of
the same algorithm differ too. Needs gensim (pip install gensim); not part of the tests.

    .venv/bin/python benchmarks/word2vec_vs_gensim.py [--runs 3] [--epochs N] [--optimizer adam]
"""

import argparse
import time

import numpy as np
from gensim.models import Word2Vec
from scipy.stats import spearmanr

import embtable as et
from embtable.apps.corpus import stdlib_corpus
from embtable.apps.word2vec import Settings, Vocabulary, train, unit_rows


def gensim_vectors(corpus, words, settings, seed):
    start = time.perf_counter()
    model = Word2Vec(corpus, vector_size=settings.dim, window=settings.window, negative=settings.negatives,
                     sg=1, min_count=5, sample=settings.subsample, epochs=settings.epochs, workers=2, seed=seed)
    seconds = time.perf_counter() - start
    return np.array([model.wv[w] for w in words], np.float64), seconds


def embtable_vectors(corpus, vocabulary, settings, seed):
    ids, sentence_of = vocabulary.encode(corpus)
    et.manual_seed(seed)
    start = time.perf_counter()
    model, _, _ = train(vocabulary, ids, sentence_of, settings, np.random.default_rng(seed))
    seconds = time.perf_counter() - start
    return model.words.weight.numpy().astype(np.float64), seconds


def agreement(a, b, frequent=300, k=10):
    """Spearman rho of pairwise similarities among the `frequent` first words, and the mean
    share of their `k` nearest neighbours (in the whole vocabulary) that the two agree on."""
    ua, ub = unit_rows(a), unit_rows(b)
    upper = np.triu_indices(frequent, 1)
    rho = spearmanr((ua[:frequent] @ ua[:frequent].T)[upper], (ub[:frequent] @ ub[:frequent].T)[upper])[0]
    overlaps = []
    for i in range(frequent):
        na = set(np.argsort(-(ua @ ua[i]))[1:k + 1])
        nb = set(np.argsort(-(ub @ ub[i]))[1:k + 1])
        overlaps.append(len(na & nb) / k)
    return rho, float(np.mean(overlaps))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Settings()
    parser.add_argument("--runs", type=int, default=3, help="embtable's trainings (gensim's: at least 2)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--optimizer", default=defaults.optimizer)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    settings = Settings(epochs=args.epochs, optimizer=args.optimizer, lr=args.lr, batch=args.batch)
    corpus = stdlib_corpus()
    vocabulary = Vocabulary.build(corpus, 5)
    words = sum(map(len, corpus)) * settings.epochs
    print(f"corpus: {sum(map(len, corpus))} words, vocabulary {len(vocabulary)}, {settings}")

    ours, theirs, our_seconds, their_seconds = [], [], [], []
    for run in range(max(args.runs, 2)):
        if run < args.runs:
            vectors, seconds = embtable_vectors(corpus, vocabulary, settings, seed=run)
            ours.append(vectors)
            our_seconds.append(seconds)
        vectors, seconds = gensim_vectors(corpus, vocabulary.words, settings, seed=run)
        theirs.append(vectors)
        their_seconds.append(seconds)
        ours_now = f"embtable {our_seconds[-1]:.1f} s, " if run < args.runs else ""
        print(f"run {run}: {ours_now}gensim {seconds:.1f} s")

    ours_s, theirs_s = float(np.median(our_seconds)), float(np.median(their_seconds))
    print(f"embtable: {words / ours_s:9.0f} words/s ({ours_s:.1f} s, median of {len(our_seconds)})")
    print(f"gensim:   {words / theirs_s:9.0f} words/s ({theirs_s:.1f} s, median of {len(their_seconds)})")
    print(f"embtable / gensim words per second: {theirs_s / ours_s:.2f}")
    for name, (x, y) in {"embtable vs gensim": (ours[0], theirs[0]),
                         "gensim vs gensim (seed 1)": (theirs[0], theirs[1])}.items():
        rho, overlap = agreement(x, y)
        print(f"{name:27}: similarity Spearman rho {rho:.3f}, top-10 neighbour overlap {overlap:.3f}")


if __name__ == "__main__":
    main()

"""embtable's word2vec (the demo's) against gensim's Word2Vec: the same corpus and settings
(skip-gram, 5 negatives, window 5, dim 100, 15 epochs, 2 workers, min_count 5, sample 1e-3).

Reports training words per second (corpus words x epochs / training seconds) for both, and
how alike the two sets of vectors are: the Spearman correlation of the pairwise cosine
similarities of the 300 most frequent words, and the mean overlap of their 10 nearest
neighbours. A second gensim run with another seed calibrates those numbers: two runs of
the same algorithm differ too. Needs gensim (pip install gensim); not part of the tests.

    .venv/bin/python benchmarks/word2vec_vs_gensim.py [--epochs N]
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
    parser.add_argument("--epochs", type=int, default=Settings().epochs)
    args = parser.parse_args()
    settings = Settings(epochs=args.epochs)
    corpus = stdlib_corpus()
    vocabulary = Vocabulary.build(corpus, 5)
    words = sum(map(len, corpus)) * settings.epochs
    print(f"corpus: {sum(map(len, corpus))} words, vocabulary {len(vocabulary)}, {settings.epochs} epochs")

    ours, our_seconds = embtable_vectors(corpus, vocabulary, settings, seed=0)
    theirs, their_seconds = gensim_vectors(corpus, vocabulary.words, settings, seed=0)
    again, _ = gensim_vectors(corpus, vocabulary.words, settings, seed=1)

    print(f"embtable: {words / our_seconds:9.0f} words/s ({our_seconds:.1f} s)")
    print(f"gensim:   {words / their_seconds:9.0f} words/s ({their_seconds:.1f} s)")
    print(f"embtable / gensim words per second: {their_seconds / our_seconds:.2f}")
    for name, (x, y) in {"embtable vs gensim": (ours, theirs), "gensim vs gensim (seed 1)": (theirs, again)}.items():
        rho, overlap = agreement(x, y)
        print(f"{name:27}: similarity Spearman rho {rho:.3f}, top-10 neighbour overlap {overlap:.3f}")


if __name__ == "__main__":
    main()

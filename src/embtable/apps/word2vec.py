"""Skip-gram with negative sampling (word2vec), trained with two sparse `Embedding` tables and
an embtable optimizer: the layer doing real work.

Per epoch: frequent words are subsampled (word2vec's rule with threshold 1e-3), every
remaining word predicts the words within a random window of up to `window` around it in its
sentence, and each (word, context) pair is contrasted with `negatives` words drawn from the
unigram distribution raised to 0.75.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .. import nn, optim
from ..core import Tensor
from ..errors import InvalidArgumentError
from ..nn import functional as F


@dataclass(frozen=True)
class Vocabulary:
    """Words that occur at least `min_count` times, most frequent first, with their counts."""

    words: list[str]
    counts: np.ndarray

    @classmethod
    def build(cls, corpus: Sequence[Sequence[str]], min_count: int) -> Vocabulary:
        counted = collections.Counter(w for sentence in corpus for w in sentence)
        kept = sorted((w for w, c in counted.items() if c >= min_count), key=lambda w: (-counted[w], w))
        if not kept:
            raise InvalidArgumentError(f"no word occurs {min_count} times or more in the corpus "
                                       f"({sum(counted.values())} words in all); lower --min-count "
                                       f"or give a larger corpus")
        return cls(kept, np.array([counted[w] for w in kept], np.int64))

    def __len__(self) -> int:
        return len(self.words)

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def encode(self, corpus: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """The corpus as word ids (words outside the vocabulary dropped) and, per id, the
        number of its sentence."""
        index = self.index()
        ids, sentence_of = [], []
        for number, sentence in enumerate(corpus):
            encoded = [index[w] for w in sentence if w in index]
            ids.extend(encoded)
            sentence_of.extend([number] * len(encoded))
        return np.array(ids, np.int64), np.array(sentence_of, np.int64)


@dataclass(frozen=True)
class Settings:
    dim: int = 100
    window: int = 5
    negatives: int = 5
    epochs: int = 15
    lr: float = 0.01
    batch: int = 4096
    subsample: float = 1e-3


def keep_probabilities(counts: np.ndarray, threshold: float) -> np.ndarray:
    """word2vec's subsampling: a word of frequency f is kept with (sqrt(f / t) + 1) * t / f."""
    frequency = counts / counts.sum()
    return np.minimum(1.0, (np.sqrt(frequency / threshold) + 1) * threshold / frequency)


def noise_distribution(counts: np.ndarray) -> np.ndarray:
    """The negative-sampling distribution: unigram counts raised to 0.75, normalised."""
    weights = counts.astype(np.float64) ** 0.75
    return weights / weights.sum()


def skipgram_pairs(ids: np.ndarray, sentence_of: np.ndarray, window: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(center, context) pairs within a random window of 1..`window` words per center,
    never across sentences, shuffled."""
    reach = rng.integers(1, window + 1, size=len(ids))
    centers, contexts = [], []
    for offset in range(1, window + 1):
        for shift in (offset, -offset):
            a = np.arange(max(0, -shift), len(ids) - max(0, shift))
            b = a + shift
            ok = (reach[a] >= offset) & (sentence_of[a] == sentence_of[b])
            centers.append(ids[a[ok]])
            contexts.append(ids[b[ok]])
    centers, contexts = np.concatenate(centers), np.concatenate(contexts)
    order = rng.permutation(len(centers))
    return centers[order], contexts[order]


class SkipGram(nn.Layer):
    """Two tables: the word vectors (the result) and the context vectors (used in training)."""

    def __init__(self, vocabulary_size: int, dim: int) -> None:
        self.words = nn.Embedding(vocabulary_size, dim, sparse=True)
        self.contexts = nn.Embedding.from_pretrained(np.zeros((vocabulary_size, dim), np.float32),
                                                     freeze=False, sparse=True)

    def forward(self, centers: np.ndarray, contexts: np.ndarray, noise: np.ndarray) -> Tensor:
        """The negative-sampling loss of a batch: ``-log σ(w·c) - Σ log σ(-w·n)``, mean over pairs."""
        w = self.words(centers)
        positive = (w * self.contexts(contexts)).sum(axis=-1)
        negative = (w.reshape(len(centers), 1, -1) * self.contexts(noise)).sum(axis=-1)
        ones, zeros = np.ones(positive.shape, np.float32), np.zeros(negative.shape, np.float32)
        return (F.binary_cross_entropy_with_logits(positive, ones)
                + F.binary_cross_entropy_with_logits(negative, zeros) * noise.shape[1])


def train(vocabulary: Vocabulary, ids: np.ndarray, sentence_of: np.ndarray, settings: Settings,
          rng: np.random.Generator, progress: Callable[[int, float], None] | None = None,
          model: SkipGram | None = None) -> tuple[SkipGram, list[list[float]], bool]:
    """Train skip-gram vectors; returns the model, the loss of every batch (a list per epoch
    begun), and whether all epochs ran. `progress` is told how many corpus words each batch
    covers and its loss. A KeyboardInterrupt ends training early, keeping what was learned.

    Each epoch draws its own pairs (subsampling, windows) in a fresh random order; the
    learning rate is constant. Losses are measured on each batch before the step that trains
    on it."""
    model = model or SkipGram(len(vocabulary), settings.dim)
    optimizer = optim.Adam(model.parameters(), lr=settings.lr)
    keep = keep_probabilities(vocabulary.counts, settings.subsample)
    noise = noise_distribution(vocabulary.counts)
    losses: list[list[float]] = []
    try:
        for _ in range(settings.epochs):
            losses.append([])
            kept = rng.random(len(ids)) < keep[ids]
            centers, contexts = skipgram_pairs(ids[kept], sentence_of[kept], settings.window, rng)
            words_per_pair = len(ids) / max(len(centers), 1)
            for start in range(0, len(centers), settings.batch):
                c, o = centers[start:start + settings.batch], contexts[start:start + settings.batch]
                negatives = rng.choice(len(noise), size=(len(c), settings.negatives), p=noise)
                optimizer.zero_grad()
                loss = model(c, o, negatives)
                loss.backward()
                optimizer.step()
                losses[-1].append(loss.item())
                if progress:
                    progress(int(len(c) * words_per_pair), losses[-1][-1])
    except KeyboardInterrupt:
        return model, losses, False
    return model, losses, True


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


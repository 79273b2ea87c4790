"""Skip-gram with negative sampling (word2vec), trained with two sparse `Embedding` tables,
`embedding_dot` and an embtable optimizer: the layer doing real work, as gensim's
`Word2Vec(sg=1)` does it (its defaults, start and learning-rate schedule), in batches.

Per epoch: frequent words are subsampled (word2vec's rule with threshold 1e-3), every
remaining word predicts the words within a random window of up to `window` around it in its
sentence, and each (word, context) pair is contrasted with `negatives` words drawn from the
unigram distribution raised to 0.75.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .. import nn, optim
from ..core import RowSparseGrad, Tensor
from ..errors import InvalidArgumentError
from ..nn import functional as F
from ..rng import generator


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


#: The optimizers training may use, each with its default learning rate: SGD's per pair at
#: the start (word2vec's and gensim's), Adam's constant.
OPTIMIZERS = {"sgd": 0.025, "adam": 0.01}

#: How far the learning rate of SGD decays by the end of training (gensim's 0.0001 / 0.025).
FINAL_LR_SHARE = 0.004


@dataclass(frozen=True)
class Settings:
    """How to train; the defaults are gensim's (`Word2Vec(sg=1)`) but for the batch, which
    gensim does not have (it updates after every pair)."""

    dim: int = 100
    window: int = 5
    negatives: int = 5
    epochs: int = 5
    lr: float | None = None  # None: the optimizer's default in OPTIMIZERS
    batch: int = 4096
    subsample: float = 1e-3
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InvalidArgumentError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")

    @property
    def learning_rate(self) -> float:
        """`lr`, or the optimizer's default."""
        return OPTIMIZERS[self.optimizer] if self.lr is None else self.lr


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
    for offset in range(1, min(window, len(ids) - 1) + 1):
        left, right = ids[:-offset], ids[offset:]  # the words `offset` apart
        same = sentence_of[:-offset] == sentence_of[offset:]
        for center, context, reaches in ((left, right, reach[:-offset]), (right, left, reach[offset:])):
            ok = same & (reaches >= offset)
            centers.append(center[ok])
            contexts.append(context[ok])
    if not centers:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    centers, contexts = np.concatenate(centers), np.concatenate(contexts)
    order = rng.permutation(len(centers))
    return centers[order], contexts[order]


class SkipGram(nn.Layer):
    """Two tables: the word vectors (the result) and the context vectors (used in training).
    The word vectors start uniform in ``±0.5 / dim`` and the context vectors at zero, as
    word2vec's and gensim's do."""

    def __init__(self, vocabulary_size: int, dim: int) -> None:
        start = (generator().random((vocabulary_size, dim)) - 0.5) / dim
        self.words = nn.Embedding.from_pretrained(start.astype(np.float32), freeze=False, sparse=True)
        self.contexts = nn.Embedding.from_pretrained(np.zeros((vocabulary_size, dim), np.float32),
                                                     freeze=False, sparse=True)

    def forward(self, centers: np.ndarray, targets: np.ndarray) -> Tensor:
        """The negative-sampling loss of a batch, the mean over its pairs of
        ``-log σ(w·c) - Σ log σ(-w·n)``: `targets` ``[N, 1 + K]`` holds each center's context
        word, then its K noise words."""
        scores = F.embedding_dot(self.words, centers, self.contexts, targets)
        return F.binary_cross_entropy_with_logits(scores, _labels(*targets.shape)) * targets.shape[1]


@functools.lru_cache(maxsize=4)
def _labels(pairs: int, columns: int) -> np.ndarray:
    """1 for each pair's context word, 0 for its noise words."""
    labels = np.zeros((pairs, columns), np.float32)
    labels[:, 0] = 1
    return labels


def train(vocabulary: Vocabulary, ids: np.ndarray, sentence_of: np.ndarray, settings: Settings,
          rng: np.random.Generator, progress: Callable[[int, float], None] | None = None,
          model: SkipGram | None = None) -> tuple[SkipGram, list[list[float]], bool]:
    """Train skip-gram vectors; returns the model, the loss of every batch (a list per epoch
    begun), and whether all epochs ran. `progress` is told how many corpus words each batch
    covers and its loss. A KeyboardInterrupt ends training early, keeping what was learned.

    Each epoch draws its own pairs (subsampling, windows) in a fresh random order, each
    batch its noise words. SGD's learning rate falls linearly from `lr` to
    ``lr * FINAL_LR_SHARE`` over training and applies per pair, as word2vec's does (the loss
    is a mean over the batch, so the optimizer's rate is `lr` times the batch size), a row
    taking at most `STEPS_PER_ROW` pairs' steps a batch; Adam's is `lr`, constant. Losses
    are measured on each batch before the step that trains on it."""
    model = model or SkipGram(len(vocabulary), settings.dim)
    keep = keep_probabilities(vocabulary.counts, settings.subsample)
    noise = NoiseSampler(noise_distribution(vocabulary.counts))
    optimizer = _optimizer(model, settings)
    losses: list[list[float]] = []
    total = settings.epochs * len(ids)
    done = 0
    try:
        for _ in range(settings.epochs):
            losses.append([])
            kept = rng.random(len(ids)) < keep[ids]
            centers, contexts = skipgram_pairs(ids[kept], sentence_of[kept], settings.window, rng)
            words_per_pair = len(ids) / max(len(centers), 1)
            for start in range(0, len(centers), settings.batch):
                c = centers[start:start + settings.batch]
                targets = np.empty((len(c), 1 + settings.negatives), np.int64)
                targets[:, 0] = contexts[start:start + settings.batch]
                targets[:, 1:] = noise.draw(rng, (len(c), settings.negatives))
                optimizer.zero_grad()
                loss = model(c, targets)
                loss.backward()
                if settings.optimizer == "sgd":
                    optimizer.lr = settings.learning_rate * len(c) * (1 - (1 - FINAL_LR_SHARE) * done / total)
                    at_most_steps(model.words.weight, c)
                    at_most_steps(model.contexts.weight, targets)
                optimizer.step()
                losses[-1].append(loss.item())
                done += len(c) * words_per_pair
                if progress:
                    progress(int(len(c) * words_per_pair), losses[-1][-1])
    except KeyboardInterrupt:
        return model, losses, False
    return model, losses, True


#: The most pairs of a batch whose SGD steps a row takes in full. SGD sums a batch's steps
#: of a row, all computed from where the row stood before the batch, where gensim takes
#: them one after another; many of them summed overshoot: a 10-word corpus diverges in
#: batches of 4096 pairs (every word drawn ~2500 times a batch), and so does a 50-word one
#: of Zipf's law. The gradient of a row drawn more often in a batch is scaled by
#: ``STEPS_PER_ROW / count``. In the standard library's batches only the likeliest words
#: are drawn more often (the likeliest ~420 times), and capping them changes the
#: similarity to gensim's vectors from 0.912 to 0.909.
STEPS_PER_ROW = 64


def at_most_steps(weight: Tensor, ids: np.ndarray) -> None:
    """Scale the row-sparse gradient of `weight`, looked up at `ids` in this batch, so
    that no row moves by more than `STEPS_PER_ROW` pairs' steps (a table without a
    row-sparse gradient is left as it is)."""
    grad = weight.grad
    if not isinstance(grad, RowSparseGrad):
        return
    counts = np.bincount(ids.reshape(-1), minlength=weight.shape[0])[grad.indices.numpy()]
    hot = np.flatnonzero(counts > STEPS_PER_ROW)
    if hot.size:
        scale = (STEPS_PER_ROW / counts[hot]).astype(np.float32)[:, None]
        grad.values[hot] = grad.values[hot] * scale


def _optimizer(model: SkipGram, settings: Settings) -> optim.Optimizer:
    """SGD or Adam over both tables, at the settings' learning rate."""
    kind = optim.SGD if settings.optimizer == "sgd" else optim.Adam
    return kind(model.parameters(), lr=settings.learning_rate)


class NoiseSampler:
    """Draws word ids from a distribution, exact to 2**-32 (as word2vec's unigram table, but
    no word too rare for its slots): a draw is a random 32-bit integer, and the word whose
    share of ``[0, 2**32)`` holds it. Most draws are read from a table of 2**20 slots (4 MiB:
    it stays in the cache) where one word holds a whole slot; the few that land in a slot
    two words share (marked -1; at most one slot per word) are found by a binary search."""

    SLOT_BITS = 20

    def __init__(self, probabilities: np.ndarray) -> None:
        """`probabilities`: one per word, non-negative, summing to 1 (`noise_distribution`)."""
        self.bounds = np.round(np.cumsum(probabilities) * 2.0**32).astype(np.uint64)  # word w ends at bounds[w]
        self.bounds[-1] = 2**32
        width = 1 << (32 - self.SLOT_BITS)
        starts = np.arange(1 << self.SLOT_BITS, dtype=np.uint64) * width
        first = np.searchsorted(self.bounds, starts, side="right")
        last = np.searchsorted(self.bounds, starts + (width - 1), side="right")
        self.table = np.where(first == last, first, -1).astype(np.int32)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Word ids (int32) of `shape`, independent draws."""
        values = rng.integers(0, 2**32, size=int(np.prod(shape)), dtype=np.uint32)
        words = np.take(self.table, (values >> (32 - self.SLOT_BITS)).astype(np.intp))
        shared = np.flatnonzero(words < 0)
        words[shared] = np.searchsorted(self.bounds, values[shared].astype(np.uint64), side="right")
        return words.reshape(shape)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


"""The demo's two figures: the training loss (loss.png) and a map of the word vectors
(map.png). matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InvalidArgumentError
from .labels import place_labels
from .word2vec import unit_rows

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The area of a word's dot on the map, in points squared (matplotlib's ``s``).
MARKER_AREA = 6.0

#: The weight of the past in the loss curve's moving average: about the last
#: 1 / (1 - SMOOTHING) = 50 batches count.
SMOOTHING = 0.98

LOSS_CAPTION = (
    "Each batch's loss is taken on pairs just before training on them; pairs are shuffled anew every "
    "epoch. The small drop where an epoch starts is memorisation: every pair was trained on in earlier "
    "epochs, those early in an epoch recently and later ones longer ago (with Adam's constant rate it "
    "becomes a sawtooth; SGD's rate falls over training). Pairs never trained on do not show it.")


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend (files only: no window, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write(figure: Figure, path: str) -> None:
    """Save `figure` as a PNG at its own resolution (the label placement is in its pixels)
    and free it."""
    figure.savefig(path, dpi=figure.dpi)
    pyplot().close(figure)


def smoothed(values: Sequence[float], weight: float = SMOOTHING) -> np.ndarray:
    """The exponential moving average of `values` with `weight` on the past, bias-corrected
    (as Adam's moments are), so that it starts at the first value instead of rising from 0:
    entry t is ``sum_i w^(t-i) v_i / sum_i w^(t-i)`` over ``i <= t``."""
    if not 0 <= weight < 1:
        raise InvalidArgumentError(f"the smoothing weight must be in [0, 1), got {weight}")
    out = np.empty(len(values))
    average = 0.0
    for t, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        out[t] = average / (1 - weight ** (t + 1))
    return out


def loss_figure(epochs: Sequence[Sequence[float]]) -> Figure:
    """The loss of every batch (faint), its moving average (`smoothed`) and the epochs'
    boundaries (dotted; numbered along the top), with `LOSS_CAPTION` below: `epochs` holds
    the batch losses of each epoch in order."""
    plt = pyplot()
    losses = np.array([loss for epoch in epochs for loss in epoch], np.float64)
    starts = np.cumsum([0] + [len(epoch) for epoch in epochs])
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    axes.plot(losses, linewidth=0.5, alpha=0.3, color="C0", label="each batch")
    axes.plot(smoothed(losses), linewidth=1.5, color="C0",
              label=f"moving average (last ~{round(1 / (1 - SMOOTHING))} batches)")
    for start in starts[1:-1]:
        axes.axvline(start - 0.5, color="0.4", linestyle=":", linewidth=0.8)
    top = axes.secondary_xaxis("top")
    every = max(1, math.ceil(len(epochs) / 20))
    top.set_xticks((starts[:-1:every] + starts[1::every]) / 2 - 0.5,
                   labels=[str(e + 1) for e in range(0, len(epochs), every)])
    top.tick_params(length=0)
    top.set_xlabel("epoch (dotted lines: where each begins)")
    axes.set(xlabel="batch", ylabel="negative-sampling loss", title="embtable word2vec training")
    axes.legend(loc="upper right")
    figure.text(0.01, 0.01, LOSS_CAPTION, wrap=True, fontsize=8, va="bottom")
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    return figure


def map_words(words: Sequence[str], first_rank: int = 100, last_rank: int = 400, min_length: int = 4) -> list[int]:
    """The indices of the words the map shows: mid-frequency words. `words` is most frequent
    first; the map takes those ranked `first_rank` (from 0) up to `last_rank` that have at
    least `min_length` characters. The words above the band are stop-words (the, of, to, is)
    and the ones below it too rare to have settled; the length cuts the single letters and
    short names that remain in the band (c, n, s, os, sys). A vocabulary smaller than ten
    times `first_rank` starts the band at a tenth of its size instead, so a small corpus gets
    a map too; should fewer than two words pass the length, the band is shown whole."""
    start = min(first_rank, len(words) // 10)
    band = range(start, min(max(last_rank, start), len(words)))
    chosen = [i for i in band if len(words[i]) >= min_length]
    return chosen if len(chosen) >= 2 else list(band)


def principal_plane(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`vectors` ``[n, dim]`` centred and projected on their first two principal components:
    the points ``[n, 2]`` (a coordinate with no component to give it, for a single vector or
    a single dimension, is zero) and the share of the variance each component holds."""
    centred = vectors - vectors.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    points, shares = np.zeros((len(vectors), 2)), np.zeros(2)
    k = min(2, len(singular))
    points[:, :k] = centred @ components[:k].T
    total = (singular ** 2).sum()
    if total > 0:
        shares[:k] = singular[:k] ** 2 / total
    return points, shares


def word_map_figure(words: Sequence[str], vectors: np.ndarray) -> Figure:
    """The words of `map_words` on the first two principal components of their unit-length
    vectors (so that distances on the map follow cosine similarity, which `neighbors` uses),
    every word a dot and as many as fit labelled, the more frequent first (`label`)."""
    plt = pyplot()
    chosen = map_words(words)
    points, shares = principal_plane(unit_rows(np.asarray(vectors, np.float64)[chosen]))
    figure, axes = plt.subplots(figsize=(12, 12), dpi=100)
    axes.scatter(points[:, 0], points[:, 1], s=MARKER_AREA, color="C0")
    low, high = points.min(axis=0), points.max(axis=0)
    margin = np.maximum((high - low) * 0.08, 1e-3)
    axes.set_xlim(low[0] - margin[0], high[0] + margin[0])
    axes.set_ylim(low[1] - margin[1], high[1] + margin[1])
    axes.set(xlabel=f"first principal component ({shares[0]:.0%} of the variance)",
             ylabel=f"second principal component ({shares[1]:.0%} of the variance)",
             title=f"{len(chosen)} words of frequency ranks {chosen[0] + 1} to {chosen[-1] + 1}: their unit "
                   f"vectors on the first two principal components")
    figure.tight_layout()
    label(axes, [words[i] for i in chosen], points)
    return figure


def label(axes: Axes, texts: Sequence[str], points: np.ndarray, fontsize: float = 8) -> None:
    """Write `texts` beside their `points` (data coordinates; axes limits and layout final)
    where `place_labels` finds room, measuring each text as matplotlib will draw it."""
    renderer = axes.figure.canvas.get_renderer()
    notes = [axes.annotate(text, xy=point, xytext=(0, 0), textcoords="offset pixels", ha="left", va="bottom",
                           fontsize=fontsize) for text, point in zip(texts, points)]
    sizes = np.array([[box.width, box.height] for box in (n.get_window_extent(renderer) for n in notes)])
    pixels = axes.transData.transform(points)
    dot = math.sqrt(MARKER_AREA) * axes.figure.dpi / 72  # the dots' diameter in pixels
    corners = place_labels(pixels, sizes, tuple(axes.get_window_extent(renderer).extents), point_size=dot)
    for note, corner, pixel in zip(notes, corners, pixels):
        if np.isnan(corner).any():
            note.remove()
        else:
            note.set_position(tuple(corner - pixel))

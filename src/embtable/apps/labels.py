"""Where to put text labels beside points so that no two labels overlap: a greedy placement
for the demo's word map (pure geometry, in display units; nothing here draws)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError

#: Where a label may sit, tried in this order: right of its point, left, above, below.
#: Each entry is the label's lower-left corner relative to the point, as fractions of the
#: label's (width, height) plus steps away from the point's square by the gap.
_SIDES = (((0.0, -0.5), (1, 0)), ((-1.0, -0.5), (-1, 0)), ((-0.5, 0.0), (0, 1)), ((-0.5, -1.0), (0, -1)))


def place_labels(points: np.ndarray, sizes: np.ndarray, bounds: tuple[float, float, float, float],
                 gap: float = 2.0, point_size: float = 0.0) -> np.ndarray:
    """The lower-left corner of each label, or NaN for a label left out.

    `points` ``[n, 2]`` are the labelled points and `sizes` ``[n, 2]`` the labels' widths and
    heights, both in one unit (display pixels, say); each point is drawn as a square of side
    `point_size`; `bounds` ``(x0, y0, x1, y1)`` is the area labels must stay inside. Labels
    are placed in the order given (put the most important first): each takes the first side
    of its point (right, left, above, below, `gap` beyond the point's square) where its box
    stays in `bounds` and comes no nearer than `gap` to a label already placed or to any
    point, and is left out if no side is free. So no two kept boxes overlap, no label hides
    a point, and an early label is never pushed out by a later one. Quadratic in the number
    of labels, which is fine for a few hundred.
    """
    points, sizes = np.asarray(points, np.float64), np.asarray(sizes, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or sizes.shape != points.shape:
        raise InvalidArgumentError(f"points and sizes must both have shape [n, 2], got {points.shape} and "
                                   f"{sizes.shape}")
    if (sizes < 0).any() or point_size < 0 or gap < 0:
        raise InvalidArgumentError(f"label sizes, gap and point_size must be >= 0, got sizes down to "
                                   f"{sizes.min(initial=0)}, gap {gap}, point_size {point_size}")
    x0, y0, x1, y1 = bounds
    half = point_size / 2
    taken = np.hstack([points - half, points + half])  # boxes no label may overlap: x0, y0, x1, y1
    corners = np.full(points.shape, np.nan)
    for i, (point, size) in enumerate(zip(points, sizes)):
        for fraction, direction in _SIDES:
            low = point + np.multiply(fraction, size) + np.multiply(direction, gap + half)
            box = np.concatenate([low, low + size])
            inside = box[0] >= x0 and box[1] >= y0 and box[2] <= x1 and box[3] <= y1
            near = overlapping(box + np.array([-gap, -gap, gap, gap]), taken)
            near[i] = False  # its own point, `gap` away by construction (up to rounding)
            if inside and not near.any():
                corners[i] = low
                taken = np.vstack([taken, box])
                break
    return corners


def overlapping(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which of `boxes` ``[k, 4]`` share some area with `box`, all as ``(x0, y0, x1, y1)``
    (boxes that only touch along an edge do not)."""
    return ((box[0] < boxes[:, 2]) & (boxes[:, 0] < box[2])
            & (box[1] < boxes[:, 3]) & (boxes[:, 1] < box[3]))

"""Fused optimizer steps: each optimizer's element rule, applied in one pass over a parameter.

Every kernel takes flat (1-D, C-contiguous) views of the parameter `p`, its gradient `g` and
its state buffers, and updates them in place, in *segments*:

- ``dense=True``: every element, in blocks of `width` consecutive elements (`rows` unused);
- ``dense=False``: the rows of a row-sparse gradient, ``p``'s row ``rows[s]`` (of `width`
  elements) from ``g``'s row ``s``.

So one loop serves both kinds of gradient, and each element is read and written once per
step. A segment's elements are reached through views starting at 0, which lets LLVM
vectorise the loop (an offset index needs a wrap-around check per element). Constants
are derived in float64, then all arithmetic runs in the parameter's dtype, as PyTorch's
does. A rule that keeps fewer buffers than its kernel takes passes the rest empty.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .launch import parallel_jit
from .prefetch import AHEAD, prefetch_bytes

inline = nb.njit(cache=True, inline="always")

@inline
def _segments(dense, rows, width, size):
    """How many segments the update has."""
    return (size + width - 1) // width if dense else rows.shape[0]


@inline
def _segment(dense, rows, width, size, s):
    """Segment `s`: where it starts in the parameter, where in the gradient, how long it is."""
    if dense:
        start = s * width
        return start, start, min(width, size - start)
    return rows[s] * width, s * width, width


@inline
def _prefetch_target(dense, rows, width, s, target):
    """Start loading the row of `target` (the parameter or a state buffer) that segment
    ``s + AHEAD`` will update: rows come in random order, while a dense update streams and
    needs no hint."""
    if not dense and target.shape[0] > 0:
        row = rows[min(s + AHEAD, rows.shape[0] - 1)]
        prefetch_bytes(target, row * width * target.itemsize, width * target.itemsize)


@inline
def _target_view(dense, rows, width, size, s, target):
    """Segment `s` of `target` (the parameter, or a state buffer laid out like it) as a view
    from 0, its row already on its way into the cache."""
    _prefetch_target(dense, rows, width, s, target)
    at, _, n = _segment(dense, rows, width, size, s)
    return target[at:at + n]


@inline
def _gradient_view(dense, rows, width, size, s, g):
    """Segment `s` of the gradient as a view from 0."""
    _, source, n = _segment(dense, rows, width, size, s)
    return g[source:source + n]


@parallel_jit
def sgd(p, g, buf, dense, rows, width, lr, momentum, weight_decay):
    """``torch.optim.SGD``: ``d = g + weight_decay * p``; with momentum ``buf = momentum *
    buf + d`` (a buffer starting at zero, so its first value is d) and ``d = buf``;
    ``p -= lr * d``. `buf` is empty without momentum."""
    t = p.dtype.type
    lr, momentum, weight_decay = t(lr), t(momentum), t(weight_decay)
    size = p.shape[0]
    for s in nb.prange(_segments(dense, rows, width, size)):
        ps, bs = _target_view(dense, rows, width, size, s, p), _target_view(dense, rows, width, size, s, buf)
        gs = _gradient_view(dense, rows, width, size, s, g)
        for k in range(ps.shape[0]):
            d = gs[k] + weight_decay * ps[k]
            if momentum != 0:
                d = momentum * bs[k] + d
                bs[k] = d
            ps[k] = ps[k] - lr * d


@parallel_jit
def adam(p, g, m, v, dense, rows, width, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """``torch.optim.Adam`` / ``AdamW`` on a dense gradient; on rows, ``torch.optim.SparseAdam``
    (eps before the bias correction), with weight decay on the rows present."""
    t = p.dtype.type
    correction1, correction2 = 1.0 - beta1**step, 1.0 - beta2**step
    step_size = t(lr / correction1) if dense else t(lr * np.sqrt(correction2) / correction1)
    root_correction2 = t(np.sqrt(correction2))
    keep, wd, b2, a1, a2, e = (t(1.0 - lr * weight_decay), t(weight_decay), t(beta2), t(1.0 - beta1),
                               t(1.0 - beta2), t(eps))
    size = p.shape[0]
    for s in nb.prange(_segments(dense, rows, width, size)):
        ps, ms = _target_view(dense, rows, width, size, s, p), _target_view(dense, rows, width, size, s, m)
        vs, gs = _target_view(dense, rows, width, size, s, v), _gradient_view(dense, rows, width, size, s, g)
        for k in range(ps.shape[0]):
            pk, gk = ps[k], gs[k]
            if decoupled:
                pk = pk * keep
            elif weight_decay != 0:
                gk = gk + wd * pk
            mk = ms[k] + a1 * (gk - ms[k])
            if dense:
                vk = vs[k] * b2 + a2 * (gk * gk)
                denominator = np.sqrt(vk) / root_correction2 + e
            else:
                vk = vs[k] + a2 * (gk * gk - vs[k])
                denominator = np.sqrt(vk) + e
            ms[k], vs[k] = mk, vk
            ps[k] = pk - step_size * (mk / denominator)


@parallel_jit
def adagrad(p, g, total, dense, rows, width, lr, eps, weight_decay):
    """``torch.optim.Adagrad``: ``g += weight_decay * p``, ``total += g * g``,
    ``p -= lr * g / (sqrt(total) + eps)``."""
    t = p.dtype.type
    lr, eps, weight_decay = t(lr), t(eps), t(weight_decay)
    size = p.shape[0]
    for s in nb.prange(_segments(dense, rows, width, size)):
        ps, ts = _target_view(dense, rows, width, size, s, p), _target_view(dense, rows, width, size, s, total)
        gs = _gradient_view(dense, rows, width, size, s, g)
        for k in range(ps.shape[0]):
            gk = gs[k] + weight_decay * ps[k]
            tk = ts[k] + gk * gk
            ts[k] = tk
            ps[k] = ps[k] - lr * (gk / (np.sqrt(tk) + eps))

"""Float32 values as the shortest decimal text that reads back as the same float32, and
word-vector text lines written straight into a byte buffer.

Reading a decimal into a float32 (NumPy's parser, Python's ``float`` then ``numpy.float32``,
gensim) rounds it correctly to a double, then that double to float32. `shortest_digits`
searches, for each value, the fewest significant digits whose nearest decimal survives
exactly that path. While the decimal's exponent `k` stays within [-22, 22], ``d * 10**k``
(or ``d / 10**-k``) computed in doubles *is* the correctly rounded double (both operands
exact, one rounding: Clinger's fast path), so the check is exact; a value whose search
meets a larger exponent (roughly |x| < 1e-15 or |x| > 1e23) is left to the caller, which
checks it with Python's exact parser.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .launch import parallel_jit

_POWERS = 10.0 ** np.arange(23)  # every power of ten a double holds exactly
_MAX_DIGITS = 10  # 9 always suffice for float32; the 10th guards a misjudged exponent
_LIKELY_DIGITS = 8  # most values of a trained table need 8 or 9
_TENS = 10 ** np.arange(19, dtype=np.int64)

_ZERO, _SPACE, _NEWLINE, _MINUS, _POINT, _EXPONENT = (ord(c) for c in "0 \n-.e")
_NAN, _INF = np.frombuffer(b"nan", np.uint8), np.frombuffer(b"inf", np.uint8)
_PASSES, _FAILS, _UNKNOWN = 1, 0, -1  # what a candidate decimal does when read back


@nb.njit(cache=True, nogil=True)
def _decimal_exponent(x):
    """floor(log10(x)) for a positive double, corrected where the logarithm's rounding
    crosses a power of ten."""
    e = int(np.floor(np.log10(x)))
    if 0 <= e + 1 <= 22 and x >= _POWERS[e + 1]:
        e += 1
    elif 0 <= e <= 22 and x < _POWERS[e]:
        e -= 1
    return e



@nb.njit(cache=True, nogil=True)
def _candidate(x, x32, e10, count):
    """The `count`-significant-digit decimal nearest to `x` (a float32's value, whose
    decimal exponent is `e10`), as (digits, exponent), and whether it reads back as `x32`:
    `_PASSES`, `_FAILS`, or `_UNKNOWN` where the exponent is beyond the exact range."""
    k = e10 - count + 1
    if k < -22 or k > 22:
        return 0.0, k, _UNKNOWN
    if k >= 0:
        d = np.rint(x / _POWERS[k])
        back = d * _POWERS[k]
    else:
        d = np.rint(x * _POWERS[-k])
        back = d / _POWERS[-k]
    return d, k, _PASSES if np.float32(back) == x32 else _FAILS


@parallel_jit
def shortest_digits(values, digits, exponents, done):
    """For each finite non-zero float32 ``values[r, c]``: ``digits * 10**exponents`` is the
    decimal of fewest significant digits (the nearest such) that reads back as
    ``|values[r, c]|``. ``done`` is False where the fast path cannot decide (the caller
    fills those in), True elsewhere (zeros, infinities and NaNs need no digits).

    If a count of digits reads back, so does every larger one (its nearest decimal is no
    farther), so the search starts at `_LIKELY_DIGITS` and walks down from a success or up
    from a failure: two tries for most values of a trained table. A candidate the fast path
    cannot check ends the search, leaving the value to the caller."""
    for r in nb.prange(values.shape[0]):
        for c in range(values.shape[1]):
            x32 = abs(values[r, c])
            x = np.float64(x32)
            done[r, c] = x == 0.0 or not np.isfinite(x)
            if done[r, c]:
                continue
            e10 = _decimal_exponent(x)
            count = _LIKELY_DIGITS
            d, k, status = _candidate(x, x32, e10, count)
            while status == _PASSES and count > 1:
                fewer_d, fewer_k, fewer = _candidate(x, x32, e10, count - 1)
                if fewer == _FAILS:
                    break
                d, k, status, count = fewer_d, fewer_k, fewer, count - 1
            while status == _FAILS and count < _MAX_DIGITS:
                count += 1
                d, k, status = _candidate(x, x32, e10, count)
            if status == _PASSES:
                digits[r, c] = np.int64(d)
                exponents[r, c] = k
                done[r, c] = True


@nb.njit(cache=True, nogil=True)
def _write_bytes(out, at, text):
    for i in range(text.shape[0]):
        out[at + i] = text[i]
    return at + text.shape[0]


@nb.njit(cache=True, nogil=True)
def _write_digits(out, at, d, n, point):
    """Write the `n` digits of `d` at ``out[at]``, a point after the first `point` of them
    (none if `point` is not in [1, n)); returns the position after them."""
    end = at + n + (1 if 0 < point < n else 0)
    place = end - 1
    for j in range(n - 1, -1, -1):
        out[place] = _ZERO + d % 10
        d //= 10
        place -= 1
        if j == point and j > 0:
            out[place] = _POINT
            place -= 1
    return end


@nb.njit(cache=True, nogil=True)
def _write_value(out, at, value, d, k):
    """Write float32 `value`, whose magnitude is ``d * 10**k``, at ``out[at]``: ``nan``,
    ``inf``, ``0``, or the shorter of positional (``0.0123``, ``12.5``, ``120``) and
    scientific (``1.23e-5``) notation (positional on a tie); returns the position after it."""
    if np.isnan(value):
        return _write_bytes(out, at, _NAN)
    if math.copysign(1.0, value) < 0:
        out[at] = _MINUS
        at += 1
    if np.isinf(value):
        return _write_bytes(out, at, _INF)
    if value == 0:
        out[at] = _ZERO
        return at + 1
    while d % 10 == 0 and d != 0:
        d //= 10
        k += 1
    n = 1
    while n < 19 and d >= _TENS[n]:
        n += 1
    e = k + n - 1
    scientific = n + (1 if n > 1 else 0) + 1 + (1 if e < 0 else 0) + (1 if abs(e) < 10 else 2)
    if k >= 0:  # the digits, then k zeros
        if n + k <= scientific:
            at = _write_digits(out, at, d, n, 0)
            for _ in range(k):
                out[at] = _ZERO
                at += 1
            return at
    elif n + k > 0:  # a point inside the digits
        if n + 1 <= scientific:
            return _write_digits(out, at, d, n, n + k)
    elif 2 - k <= scientific:  # "0.", -k - n zeros, the digits
        out[at] = _ZERO
        out[at + 1] = _POINT
        at += 2
        for _ in range(-k - n):
            out[at] = _ZERO
            at += 1
        return _write_digits(out, at, d, n, 0)
    at = _write_digits(out, at, d, n, 1)
    out[at] = _EXPONENT
    at += 1
    if e < 0:
        out[at] = _MINUS
        at += 1
        e = -e
    if e >= 10:
        out[at] = _ZERO + e // 10
        at += 1
    out[at] = _ZERO + e % 10
    return at + 1


@nb.njit(cache=True, nogil=True)
def write_lines(words, word_ends, values, digits, exponents, out):
    """Write row r as ``words[word_ends[r - 1]:word_ends[r]]`` (UTF-8 bytes), a space, its
    values separated by spaces (`_write_value`), and a newline, one row after the other
    into `out` (at least ``len(words) + rows * (1 + 16 * dim)`` bytes). Returns the number
    of bytes written."""
    at = 0
    start = 0
    for r in range(values.shape[0]):
        for i in range(start, word_ends[r]):
            out[at] = words[i]
            at += 1
        start = word_ends[r]
        for c in range(values.shape[1]):
            out[at] = _SPACE
            at = _write_value(out, at + 1, values[r, c], digits[r, c], exponents[r, c])
        out[at] = _NEWLINE
        at += 1
    return at

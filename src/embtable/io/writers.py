"""Word vectors written in word2vec format: text, each float32 as the shortest decimal that
reads back as the same float32, or binary (little-endian float32).

Text goes through numba kernels (`embtable.kernels.cpu.float_text`), a block of rows at a
time: a 100k x 300 table took 3.6 s here where gensim's ``save_word2vec_format`` took 16.7
s, and its file is no larger (gensim writes NumPy's shortest form, which this matches or
shortens: ``1e-5`` for ``1e-05``, ``0`` for ``0.0``; 365.2 MB against 365.6 MB).

NaN is written ``nan`` (its sign and payload are lost: it reads back as a quiet NaN),
infinities ``inf`` and ``-inf``, negative zero ``-0``; every other value reads back bit for
bit.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, BinaryIO, Iterator

import numpy as np

_BLOCK_BYTES = 1 << 24  # about the most bytes of text made at a time
_TEXT_WIDTH = 16  # the most bytes a value takes in text, its space included ("-1.2345678e-45 ")


def write_text(file: BinaryIO, words: list[bytes], vectors: np.ndarray, bar: Any) -> None:
    """Write a text record per row of the float32 `vectors` (C-contiguous) and its UTF-8
    word; `bar.update` is told the rows written."""
    from ..kernels.cpu import float_text  # numba, imported when a text file is written

    rows_per_block = max(1, _BLOCK_BYTES // (_TEXT_WIDTH * vectors.shape[1]))
    for start in range(0, len(vectors), rows_per_block):
        block = vectors[start:start + rows_per_block]
        digits, exponents = shortest_digits(block)
        block_words = words[start:start + len(block)]
        out = np.empty(sum(map(len, block_words)) + block.size * _TEXT_WIDTH + len(block), np.uint8)
        written = float_text.write_lines(np.frombuffer(b"".join(block_words), np.uint8),
                                         np.cumsum([len(word) for word in block_words]), block, digits,
                                         exponents, out)
        file.write(out[:written].data)
        bar.update(len(block))


def write_binary(file: BinaryIO, words: list[bytes], vectors: np.ndarray, bar: Any) -> None:
    """Write a binary record (the word, a space, the row as little-endian float32) per row
    of `vectors` and its UTF-8 word; `bar.update` is told the rows written."""
    rows = vectors.astype("<f4", copy=False)
    rows_per_block = max(1, _BLOCK_BYTES // rows.itemsize // rows.shape[1])
    for start in range(0, len(rows), rows_per_block):
        block = rows[start:start + rows_per_block]
        file.write(b"".join(word + b" " + row.tobytes() for word, row in zip(words[start:start + len(block)], block)))
        bar.update(len(block))


def shortest_digits(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integers `digits` and `exponents` (shaped like the float32 `values`) such that
    ``digits * 10**exponents`` is the decimal of fewest significant digits that reads back
    as ``|value|`` (for finite non-zero values; others get zeros)."""
    from ..kernels.cpu import float_text

    digits = np.zeros(values.shape, np.int64)
    exponents = np.zeros(values.shape, np.int64)
    done = np.empty(values.shape, bool)
    float_text.shortest_digits(values, digits, exponents, done)
    for place in zip(*np.nonzero(~done)):
        digits[place], exponents[place] = _exact_shortest(values[place])
    return digits, exponents


def _exact_shortest(value: np.float32) -> tuple[int, int]:
    """`shortest_digits` for one value beyond the kernel's exact range (tiny or huge):
    Python's formatting and parsing are exact, and the readers parse as ``float`` then round
    to float32. Nine significant digits always read back."""
    target = abs(value)
    with np.errstate(over="ignore"):  # a candidate above float32's largest reads as inf: not it
        text = next(text for text in (f"{float(target):.{precision}e}" for precision in range(9))
                    if np.float32(float(text)) == target)
    mantissa, exponent = text.split("e")
    digits = mantissa.replace(".", "")
    return int(digits), int(exponent) - (len(digits) - 1)


@contextlib.contextmanager
def replacing(path: str) -> Iterator[BinaryIO]:
    """A new file that replaces `path` once the block ends without an error (written beside
    it, then renamed over it); on an error, `path` is left as it was."""
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.saving"  # one per process and thread
    file = open(temporary, "xb")  # a name in use raises here, before any file of this call exists
    try:
        with file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise

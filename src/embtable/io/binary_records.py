"""Binary word2vec records: the word's UTF-8 bytes, a space, `dim` little-endian float32 (a
newline before a word is skipped, as the original C tool writes one after each vector).

The file is read a chunk at a time, and rows are allocated only for records whose bytes
have arrived, so a header announcing more vectors than the file holds costs nothing.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import SerializationError
from .formats import Header
from .vocabulary import Vocabulary

_BLOCK_BYTES = 1 << 24  # the most bytes of rows allocated at once


def read_binary(chunks: Iterable[bytes], path: str, header: Header, limit: int | None,
                vocabulary: Vocabulary) -> np.ndarray:
    """The vectors of the binary records after the header line in `chunks` (the whole
    file's bytes), the words going to `vocabulary` (repeats dropped, with their vectors);
    `limit` keeps only the first records. `SerializationError` naming the record (and its
    line, counting the header as line 1) for one that is cut short or whose word is not
    UTF-8."""
    wanted = min(header.count, limit) if limit else header.count
    width = 4 * header.dim
    stream = _Stream(iter(chunks))
    stream.skip_past(b"\n")
    blocks: list[np.ndarray] = []
    block = np.empty((0, header.dim), "<f4")
    filled = 0
    for record in range(1, wanted + 1):
        stream.skip_all(b"\n")
        word_end = stream.find(b" ")
        if word_end < 0 or not stream.has(word_end + 1 + width):
            raise SerializationError(f"{path}: record {record} (line {record + 1}) is cut short: the header "
                                     f"announces {header.count} vectors of {header.dim} floats")
        word = stream.take(word_end + 1)[:-1]
        if not word:
            raise SerializationError(f"{path}: record {record} (line {record + 1}) has no word before its vector")
        try:
            kept = vocabulary.add(word.decode("utf-8"), record)
        except UnicodeDecodeError as error:
            raise SerializationError(f"{path}: record {record} (line {record + 1}): the word is not UTF-8 "
                                     f"({error.reason})") from None
        vector = stream.take(width)
        if not kept:
            continue
        if filled == len(block):
            blocks.append(block)
            block = np.empty((_rows_to_allocate(stream.available(), width, wanted - record + 1), header.dim), "<f4")
            filled = 0
        block[filled] = np.frombuffer(vector, "<f4")
        filled += 1
    blocks.append(block[:filled])
    return np.concatenate(blocks).astype(np.float32, copy=False)


def _rows_to_allocate(available: int, width: int, left: int) -> int:
    """Rows for the next block: no more than the records left, than the bytes already read
    can hold (each takes more than `width`), or than `_BLOCK_BYTES` take; at least one."""
    return max(1, min(left, available // (width + 1) + 1, _BLOCK_BYTES // width))


class _Stream:
    """Bytes of `chunks`, consumed from the front; chunks are read only when asked for."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._bytes = b""
        self._at = 0

    def available(self) -> int:
        """Bytes read and not yet consumed."""
        return len(self._bytes) - self._at

    def has(self, count: int) -> bool:
        """Whether `count` more bytes are there (reading chunks until they are, or the end)."""
        if self.available() < count:
            self._read_more(lambda have, chunk: have >= count)
        return self.available() >= count

    def find(self, byte: bytes) -> int:
        """The offset of the first `byte` from the front, reading on; -1 if none before the end."""
        found = self._bytes.find(byte, self._at)
        if found < 0:
            self._read_more(lambda have, chunk: byte in chunk)
            found = self._bytes.find(byte, self._at)
        return found - self._at if found >= 0 else -1

    def _read_more(self, enough: Callable[[int, bytes], bool]) -> None:
        """Read chunks until ``enough(bytes available, last chunk)`` or the end, joining them
        to the bytes not consumed once (so that a long record costs no repeated copies)."""
        parts = [self._bytes[self._at:]]
        have = len(parts[0])
        for chunk in self._chunks:
            parts.append(chunk)
            have += len(chunk)
            if enough(have, chunk):
                break
        self._bytes, self._at = b"".join(parts), 0

    def take(self, count: int) -> bytes:
        """The next `count` bytes (which `has` or `find` made sure are there)."""
        taken = self._bytes[self._at:self._at + count]
        self._at += count
        return taken

    def skip_all(self, byte: bytes) -> None:
        """Consume every leading `byte`."""
        while self.has(1) and self._bytes[self._at:self._at + 1] == byte:
            self._at += 1

    def skip_past(self, byte: bytes) -> None:
        """Consume everything up to and including the first `byte` (all, if there is none)."""
        end = self.find(byte)
        self.take(end + 1 if end >= 0 else self.available())

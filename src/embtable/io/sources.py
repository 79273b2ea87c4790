"""The bytes of a word-vector file, plain or compressed (gzip, bz2, xz: recognised by their
first bytes, whatever the file's name), read a chunk at a time with a progress bar over
the file's bytes.

Damaged compressed data raises `SerializationError` naming the file and the compression;
an error of the disk itself stays an `OSError`.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import re
import zlib
from typing import Any, BinaryIO, Callable, Iterator

from ..errors import SerializationError
from ..tables.progress import progress_bar

CHUNK = 1 << 24  # the most bytes read (after decompression) at a time
# A read allocates all the bytes it asks for: the first asks for `_FIRST_READ`, each next one
# for twice as many (up to `CHUNK`), so that a small file costs little memory.
_FIRST_READ = 1 << 16
HEAD = 1 << 20  # bytes `VectorSource.head` reads to look at a file's first lines
PROGRESS_FROM = 1 << 26  # files this large show a progress bar while they load

# The first bytes of a compressed stream. gzip: its magic and the deflate method. bz2:
# "BZh", the block size, then a block's magic (pi's digits) or, in an empty stream, the
# end-of-stream magic (sqrt(pi)'s): a text file starting "BZh9" is not taken for one.
_MAGIC = {"gzip": re.compile(rb"\x1f\x8b\x08"), "bz2": re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)"),
          "xz": re.compile(rb"\xfd7zXZ\x00")}
_OPENERS: dict[str, Callable[[BinaryIO], BinaryIO]] = {
    "gzip": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}
_DAMAGED = (OSError, EOFError, lzma.LZMAError, zlib.error)


class VectorSource:
    """An open word-vector file. `head` peeks at its first bytes; `chunks` then yields all
    its (decompressed) bytes from the start, updating the progress bar. A context manager."""

    def __init__(self, path: str, progress: bool) -> None:
        self.path = path
        self._exit = contextlib.ExitStack()
        with self._exit:
            self._raw: BinaryIO = self._exit.enter_context(open(path, "rb"))
            self.compression, self._stream = self._opened()
            self._size = os.fstat(self._raw.fileno()).st_size if self._raw.seekable() else 0
            self._bar = self._exit.enter_context(progress_bar(
                self._size, progress and self._size >= PROGRESS_FROM, unit="B", unit_scale=True,
                desc="loading vectors", leave=False))
            self._exit = self._exit.pop_all()  # opened: kept open until `close`
        self._read: list[bytes] = []  # chunks `head` read, which `chunks` yields first
        self._ended = False
        self._read_size = _FIRST_READ

    def _opened(self) -> tuple[str | None, BinaryIO]:
        """The name of the file's compression (None if plain) and the stream of its bytes."""
        head = self._raw.peek(16)
        for name, magic in _MAGIC.items():
            if magic.match(head):
                return name, self._exit.enter_context(_OPENERS[name](self._raw))
        return None, self._raw

    def __enter__(self) -> VectorSource:
        return self

    def __exit__(self, *error: Any) -> None:
        self.close()

    def close(self) -> None:
        self._exit.close()

    def head(self) -> bytes:
        """The file's first `HEAD` bytes or more (all of a smaller file): what its format is
        told from, the same whatever the size of the chunks it is read in."""
        size = sum(map(len, self._read))
        while size < HEAD and not self._ended:
            self._read.append(self._next())
            size += len(self._read[-1])
        return b"".join(self._read)

    def chunks(self) -> Iterator[bytes]:
        """Every byte of the file from its start, in chunks of at most about `CHUNK` bytes."""
        yield from self._read
        self._read = []
        while not self._ended:
            chunk = self._next()
            if chunk:
                yield chunk

    def _next(self) -> bytes:
        at = self._position()
        try:
            chunk = self._stream.read(min(self._read_size, CHUNK))
            self._read_size *= 2
        except _DAMAGED as error:
            if self.compression is None or getattr(error, "errno", None) is not None:
                raise
            raise SerializationError(f"{self.path}: the {self.compression} data is damaged (after {at} of its "
                                     f"{self._size} bytes): {error}") from None
        self._ended = not chunk
        self._bar.update(self._position() - at)
        return chunk

    def _position(self) -> int:
        """How many of the file's own (compressed) bytes were read so far."""
        return self._raw.tell() if self._size else 0

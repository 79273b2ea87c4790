"""`RedoLog`: the rows of a file-backed table changed since its checkpoint, appended to one
file in the order they were written, with an index of where each row's latest value lies.

The log is a sequence of entries, each the values of some rows for some named arrays (the
weight, an optimizer's state records): a header (magic, the size of the names, the number
of rows, a CRC-32 of the names and rows), the names and each one's bytes per row as JSON,
the rows (int64), then each array's block of values, ``rows x width`` bytes. Appending is
sequential, so a changed row costs its own bytes on disk, not the page it would dirty in
place. The manifest records how many bytes of the log a commit made durable (`sync`);
whatever lies beyond was never committed and is ignored, or cut off by a writable open."""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np

from ..checkpoint import parse_json
from ..errors import SerializationError
from .row_index import RowIndex
from .row_io import byte_rows, read_rows

_HEADER = struct.Struct("<4sIQI")  # magic, bytes of names, rows, crc32 of names + rows
_MAGIC = b"ETR1"


class RedoLog:
    """The log file at `path` of a table of `num_rows` rows, of which the first `committed`
    bytes are trusted."""

    def __init__(self, path: str, writable: bool, committed: int, num_rows: int) -> None:
        self.path = path
        self._num_rows = num_rows
        if writable and not os.path.exists(path):
            open(path, "wb").close()
        self._file = open(path, "r+b" if writable else "rb") if os.path.exists(path) else None
        self._indexes: dict[str, RowIndex] = {}
        self._widths: dict[str, int] = {}
        if committed and (self._file is None or os.fstat(self._file.fileno()).st_size < committed):
            raise SerializationError(f"{path!r} is missing or shorter than the {committed} bytes the table's "
                                     f"last commit wrote to it")
        self._scan(committed)
        self.size = committed
        if writable:
            self._file.truncate(committed)  # what lies beyond was never committed

    @property
    def names(self) -> list[str]:
        """The arrays the log holds rows of."""
        return list(self._indexes)

    @property
    def widths(self) -> dict[str, int]:
        """The bytes per row of each array the log holds rows of."""
        return dict(self._widths)

    @property
    def index_bytes(self) -> int:
        return sum(index.nbytes for index in self._indexes.values())

    def fd(self) -> int:
        """The log's file descriptor (-1 for a read-only table that has no log yet)."""
        return -1 if self._file is None else self._file.fileno()

    def locate(self, name: str, rows: np.ndarray) -> np.ndarray:
        """The byte offset in the log of each of `rows`' latest value of `name`, -1 where the
        log has none."""
        index = self._indexes.get(name)
        return np.full(rows.shape[0], -1, np.int64) if index is None else index.find(rows)

    def items(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Every row the log holds a value of `name` for, ascending, and that value's offset."""
        return self._indexes[name].items()

    def append(self, rows: np.ndarray, blocks: dict[str, np.ndarray]) -> None:
        """Append one entry: ``blocks[name][i]`` is the new value of row ``rows[i]`` (int64,
        distinct) of `name`. Not durable until `sync`."""
        widths = [[name, int(block.nbytes // max(rows.shape[0], 1))] for name, block in blocks.items()]
        names = json.dumps(widths)
        row_bytes = np.ascontiguousarray(rows, "<i8").tobytes()
        head = names.encode() + row_bytes
        parts = [_HEADER.pack(_MAGIC, len(names), rows.shape[0], zlib.crc32(head)), head]
        parts += [byte_rows(np.ascontiguousarray(block)) for block in blocks.values()]
        self._file.seek(self.size)
        self._file.write(b"".join(parts[:2]))
        for block in parts[2:]:
            self._file.write(block)
        self._file.flush()
        self._index_entry(self.size, len(names), rows, widths)
        self.size += sum(len(part) if isinstance(part, bytes) else part.nbytes for part in parts)

    def sync(self) -> int:
        """Make every entry appended so far durable; the log's size, the commit point."""
        self._file.flush()
        os.fdatasync(self._file.fileno())
        return self.size

    def overlay(self, name: str, target: np.ndarray, threads: int) -> None:
        """Write the latest logged value of each row of `name` into ``target[row]``."""
        if name in self._indexes:
            rows, offsets = self.items(name)
            read_rows(self.fd(), offsets, byte_rows(target), rows, threads)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _index_entry(self, start: int, names_size: int, rows: np.ndarray, names: list[list]) -> None:
        at = start + _HEADER.size + names_size + 8 * rows.shape[0]
        for name, width in names:
            if self._widths.setdefault(name, width) != width:
                raise SerializationError(f"{self.path!r}: rows of {name!r} of {width} bytes after rows of "
                                         f"{self._widths[name]} bytes")
            self._indexes.setdefault(name, RowIndex()).put(rows, at + width * np.arange(rows.shape[0], dtype=np.int64))
            at += width * rows.shape[0]

    def _scan(self, committed: int) -> None:
        """Index the entries of the first `committed` bytes, later values replacing earlier."""
        at = 0
        while at < committed:
            self._file.seek(at)
            head = self._file.read(_HEADER.size)
            damaged = SerializationError(f"{self.path!r}: the table's redo log is damaged at byte {at}")
            if len(head) < _HEADER.size:
                raise damaged
            magic, names_size, count, crc = _HEADER.unpack(head)
            if magic != _MAGIC or at + _HEADER.size + names_size + 8 * count > committed:
                raise damaged
            body = self._file.read(names_size + 8 * count)
            if len(body) < names_size + 8 * count or zlib.crc32(body) != crc:
                raise damaged
            try:
                names = parse_json(body[:names_size])
                if not all(isinstance(name, str) and type(width) is int for name, width in names):
                    raise ValueError("its arrays must be [name, bytes per row] pairs of a string and an integer")
                widths = [width for _, width in names]
            except (ValueError, TypeError) as error:
                raise SerializationError(f"{self.path!r}: the table's redo log is damaged at byte {at} "
                                         f"({error})") from None
            rows = np.frombuffer(body, "<i8", count, names_size).astype(np.int64)
            end = at + _HEADER.size + len(body) + count * sum(widths)
            if end > committed or min(widths, default=1) < 1 or (count and not (
                    0 <= rows.min() and rows.max() < self._num_rows and np.unique(rows).shape[0] == count)):
                raise damaged
            self._index_entry(at, names_size, rows, names)
            at = end

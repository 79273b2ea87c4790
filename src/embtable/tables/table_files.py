"""`TableFiles`: the files of a file-backed table, and how changes to them survive a crash.

A table at ``path`` is the safetensors checkpoint ``path`` (its ``weight`` tensor, written
by `Layer.save` or `create`) plus, once opened for writing, a folder ``path + ".state"``:

- ``manifest.json``: what the last completed commit made durable — its generation number,
  each optimizer's step count, and the optimizer state files it covers;
- ``<Optimizer>``: one raw file per optimizer holding its state as one record per row (each
  buffer's values for that row, side by side: a row's whole state is written together),
  zero until written (created sparse);
- ``journal``: an undo journal of the rows overwritten since that commit.

Rows are changed in the files in place (`write_rows`), but only after the values they
replace were appended to the journal and the journal was flushed to disk. `commit` flushes
the files, then atomically replaces the manifest with one of the next generation (the
commit point), then empties the journal. Opening a table whose journal holds entries of
the manifest's generation (the process died after changing rows and before committing)
first writes their old values back, last entry first, so the files are exactly those of
the last commit; an entry cut short by the crash is ignored (its rows were never
overwritten: the journal is flushed before any row is). The cost of a commit, or of a
recovery, is proportional to the rows changed since the last commit, never to the table.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import mmap
import os
import shutil
import struct
import sys
import zlib
from typing import Any, Callable

import numpy as np

from .. import checkpoint
from ..dtype import DType
from ..errors import InvalidArgumentError, SerializationError
from .row_copy import copy_rows, taken, zero_rows

_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)
_PREFETCH_FROM = 256  # rows read at once from which their pages are asked for ahead
WRITE_CHUNK_ROWS = 1 << 16  # rows journaled and written back together
_ENTRY = struct.Struct("<4sQQI")  # magic, generation, payload bytes, crc32 of the payload
_MAGIC = b"ETJ1"
_FORMAT = 1
WEIGHT = "weight"


def state_folder(path: str) -> str:
    """The folder beside the checkpoint `path` that holds its optimizer state and journal."""
    return path + ".state"


class TableFiles:
    """The open files of one table: the weight's rows mapped for reading, the optimizer
    state files, and (when `writable`) the journal and the exclusive lock on `path`.
    Reads keep about `resident_bytes` of file pages mapped at most."""

    def __init__(self, path: str, writable: bool, resident_bytes: int = 256 << 20) -> None:
        self.path = path
        self.writable = writable
        self._resident_bytes = resident_bytes  # file pages kept mapped by reads, at most about
        self._resident = 0
        stored, self.metadata = checkpoint.layout(path)
        if WEIGHT not in stored or len(stored[WEIGHT].shape) != 2:
            raise SerializationError(f"{path!r} is not an embtable table: it has no 2-D tensor 'weight' "
                                     f"(tensors: {sorted(stored)})")
        self._weight = stored[WEIGHT]
        # Files larger than half the memory are mostly not in the page cache: their reads
        # are asked for ahead (for a file in the cache that costs more than it saves).
        self._cold = 2 * self._weight.nbytes > os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        self._file = open(path, "r+b" if writable else "rb")
        try:
            if writable:
                _lock(self._file, path)
            self._folder = state_folder(path)
            self._manifest = self._read_manifest()
            self._recover_if_needed()
            self._maps: dict[str, tuple[mmap.mmap | None, np.ndarray]] = {}
            self._state_files: dict[str, Any] = {}
            self._state_entries: dict[str, list[list[Any]]] = {}
            self._written_pages: dict[str, np.ndarray] = {}  # per state file: pages that may hold data
            self.rows = self._map(WEIGHT, self._file, self._weight, private=False)
            self.writable_view = self._map("view", self._file, self._weight, private=True)
            for name, fields in self._manifest["state"].items():
                self._open_state(name, fields)
            self._journal = open(os.path.join(self._folder, "journal"), "ab") if writable else None
        except BaseException:
            self._file.close()
            raise

    # --- what is stored ---------------------------------------------------------------------

    @property
    def dtype(self) -> DType:
        return self._weight.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self._weight.shape

    @property
    def steps(self) -> dict[str, int]:
        """Each optimizer's step count at the last commit, by its name."""
        return dict(self._manifest["steps"])

    def weight_rows(self, rows: np.ndarray) -> np.ndarray:
        """The weight's `rows` (int64, in range), read from the file."""
        self._will_read(WEIGHT, rows, self._weight.offset)
        return taken(self.rows, rows)

    def read_weight(self, rows: np.ndarray, target: np.ndarray, places: np.ndarray) -> None:
        """``target[places] = weight[rows]``: rows of the weight read into an array."""
        self._will_read(WEIGHT, rows, self._weight.offset)
        copy_rows(self.rows, rows, target, places)

    def read_state(self, name: str, rows: np.ndarray, targets: dict[str, np.ndarray], places: np.ndarray) -> None:
        """``targets[buffer][places] = state[rows][buffer]`` for each buffer of the state file
        `name`, read only from pages ever written: the rest are zeros, set for free."""
        records = self._maps[name][1]
        stored = self._stored(name, rows)
        self._will_read(name, rows[stored], 0)
        for buffer, target in targets.items():
            copy_rows(records[buffer], rows[stored], target, places[stored])
            zero_rows(target, places[~stored])

    def _will_read(self, name: str, rows: np.ndarray, offset: int) -> None:
        """Before reading `rows` (ascending) of the mapping `name`: ask for their pages all at
        once when the file is cold (the disk then reads them in parallel, where faults would
        wait one by one), and unmap the file pages read since the last time once they pass `resident_bytes`
        (mapped pages count in the process's memory; the page cache keeps them anyway)."""
        mapping, array = self._maps[name]
        width = array.strides[0]
        mapped = rows.shape[0] * -(-width // mmap.PAGESIZE) * mmap.PAGESIZE  # scattered rows: a page each
        if self._resident + mapped > self._resident_bytes:
            for other, (pages, _) in self._maps.items():
                if pages is not None and other != "view":  # the view is private: its pages would be lost
                    pages.madvise(mmap.MADV_DONTNEED)
            self._resident = 0
        self._resident += mapped
        if rows.shape[0] < _PREFETCH_FROM or not self._cold:
            return
        starts = (offset + rows * width) // mmap.PAGESIZE * mmap.PAGESIZE
        ends = offset + (rows + 1) * width
        for start, end in zip(starts.tolist(), ends.tolist()):
            mapping.madvise(mmap.MADV_WILLNEED, start, end - start)

    def has_state(self, name: str) -> bool:
        """Whether the optimizer `name` has a state file here."""
        return name in self._state_files

    def create_state(self, name: str, fields: list[tuple[str, DType, tuple[int, ...]]]) -> None:
        """A new state file for the optimizer `name`, one record of `fields` (buffer name,
        dtype, shape of a row's values) per table row, all zeros (sparse on disk: no byte is
        written); it becomes part of the table at the next commit."""
        entry = [[buffer, dtype.name, list(shape)] for buffer, dtype, shape in fields]
        with open(os.path.join(self._folder, name), "wb") as file:
            file.truncate(self.shape[0] * _record_dtype(entry).itemsize)
        self._open_state(name, entry)

    def state_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """The records of `rows` in the state file `name` (a structured array, a field per
        buffer), read only from pages ever written: the rest are zeros, read for free."""
        records = self._maps[name][1]
        out = np.zeros(rows.shape[0], records.dtype)
        stored = self._stored(name, rows)
        self._will_read(name, rows[stored], 0)
        out[stored] = taken(records, rows[stored])
        return out

    def _stored(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` of the state file `name` lie on pages ever written."""
        width = self._maps[name][1].dtype.itemsize
        pages = self._written_pages[name]
        return pages[rows * width // mmap.PAGESIZE] | pages[((rows + 1) * width - 1) // mmap.PAGESIZE]

    # --- changing rows --------------------------------------------------------------------

    def write_rows(self, rows: np.ndarray, blocks: dict[str, np.ndarray]) -> None:
        """Overwrite `rows` (int64, ascending, distinct) of the weight and of state files
        with `blocks` (name: ``[len(rows), ...]`` values), journaling the values they replace
        first: `WRITE_CHUNK_ROWS` at a time (so the old values read stay a batch's worth)."""
        for start in range(0, rows.shape[0], WRITE_CHUNK_ROWS):
            chunk = slice(start, start + WRITE_CHUNK_ROWS)
            self._write_chunk(rows[chunk], {name: block[chunk] for name, block in blocks.items()})

    def _write_chunk(self, rows: np.ndarray, blocks: dict[str, np.ndarray]) -> None:
        old = {name: self.weight_rows(rows) if name == WEIGHT else self.state_rows(name, rows)
               for name in blocks if name == WEIGHT or name in self._manifest["state"]}
        self._journal_rows(rows, old)
        for name, block in blocks.items():
            file, offset = self._target(name)
            _write_runs(file.fileno(), offset, rows, np.ascontiguousarray(block))
            if name in self._written_pages:
                width = block.dtype.itemsize
                pages = self._written_pages[name]
                pages[rows * width // mmap.PAGESIZE] = True
                pages[((rows + 1) * width - 1) // mmap.PAGESIZE] = True

    def commit(self, steps: dict[str, int]) -> None:
        """Make every row written so far and the optimizer `steps` durable together."""
        for file in [self._file, *self._state_files.values()]:
            file.flush()
            os.fsync(file.fileno())
        self._write_manifest({"format": _FORMAT, "generation": self._manifest["generation"] + 1,
                              "steps": dict(steps), "state": dict(self._state_entries)})
        self._empty_journal()

    def _empty_journal(self) -> None:
        """Drop the journal's entries, which the commit just made obsolete (a process that
        dies first leaves them: they are of an earlier generation, skipped and dropped by
        the next open)."""
        self._journal.truncate(0)
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def close(self) -> None:
        """Unmap and close everything (releasing the lock); uncommitted changes are undone
        by the next open."""
        for name in list(self._maps):
            del self._maps[name]
        for file in [self._file, *self._state_files.values()] + ([self._journal] if self._journal else []):
            file.close()

    # --- the journal ----------------------------------------------------------------------

    def _journal_rows(self, rows: np.ndarray, old: dict[str, np.ndarray]) -> None:
        names = json.dumps([[name, int(block.nbytes // max(rows.shape[0], 1))] for name, block in old.items()])
        payload = b"".join([struct.pack("<I", len(names)), names.encode(), struct.pack("<Q", rows.shape[0]),
                            rows.astype("<i8").tobytes(), *(np.ascontiguousarray(b).tobytes() for b in old.values())])
        self._journal.write(_ENTRY.pack(_MAGIC, self._manifest["generation"], len(payload), zlib.crc32(payload)))
        self._journal.write(payload)
        self._journal.flush()
        os.fdatasync(self._journal.fileno())

    def _recover_if_needed(self) -> None:
        """Undo the rows changed after the last commit, if a journal of its generation says
        there are any (taking the lock briefly when this handle is read-only)."""
        journal = os.path.join(self._folder, "journal")
        entries = _entries(journal, self._manifest["generation"]) if os.path.exists(journal) else []
        stale = self._uncommitted_state_files()
        if not entries and not stale:
            if self.writable and os.path.exists(journal) and os.path.getsize(journal):
                os.truncate(journal, 0)  # entries of a commit that completed: the process died before emptying it
            return
        if not self.writable:
            try:
                with open(self.path, "r+b") as file:
                    if not _try_lock(file):
                        return  # a writer has it open: its journal is in use, not a crash's
                    self._undo(entries, file, stale)
            except PermissionError:
                raise SerializationError(f"{self.path!r} has changes of a process that died before committing; "
                                         f"opening it needs write access to undo them") from None
            return
        self._undo(entries, self._file, stale)

    def _undo(self, entries: list[tuple[np.ndarray, dict[str, bytes]]], file: Any, stale: list[str]) -> None:
        targets = {WEIGHT: (file, self._weight.offset)}
        opened = []
        for name in self._manifest["state"]:
            opened.append(open(os.path.join(self._folder, name), "r+b"))
            targets[name] = (opened[-1], 0)
        try:
            for rows, blocks in reversed(entries):
                for name, block in blocks.items():
                    target, offset = targets[name]
                    _write_runs(target.fileno(), offset, rows, block)
            for target, _ in targets.values():
                target.flush()
                os.fsync(target.fileno())
        finally:
            for handle in opened:
                handle.close()
        for name in stale:
            os.unlink(os.path.join(self._folder, name))
        with open(os.path.join(self._folder, "journal"), "wb") as journal:
            os.fsync(journal.fileno())

    def _uncommitted_state_files(self) -> list[str]:
        if not os.path.isdir(self._folder):
            return []
        known = set(self._manifest["state"]) | {"journal", "manifest.json"}
        return sorted(name for name in os.listdir(self._folder) if name not in known)

    # --- the manifest ---------------------------------------------------------------------

    def _read_manifest(self) -> dict[str, Any]:
        name = os.path.join(self._folder, "manifest.json")
        if not os.path.exists(name):  # a checkpoint never opened for writing
            manifest = {"format": _FORMAT, "generation": 0, "steps": {}, "state": {}}
            if self.writable:
                os.makedirs(self._folder, exist_ok=True)
                self._write_manifest(manifest)
            return manifest
        try:
            with open(name, "rb") as file:
                manifest = json.loads(file.read())
            if manifest["format"] != _FORMAT or not isinstance(manifest["generation"], int):
                raise ValueError(f"format {manifest['format']!r}")
            for fields in manifest["state"].values():
                _record_dtype(fields)
            dict(manifest["steps"])
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise SerializationError(f"{name!r} is not an embtable table manifest ({error})") from None
        return manifest

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        name = os.path.join(self._folder, "manifest.json")
        temporary = name + ".tmp"
        with open(temporary, "wb") as file:
            file.write(json.dumps(manifest).encode())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, name)
        _sync_folder(self._folder)
        self._manifest = manifest

    # --- mappings -------------------------------------------------------------------------

    def _open_state(self, name: str, fields: list[list[Any]]) -> None:
        file = open(os.path.join(self._folder, name), "r+b" if self.writable else "rb")
        self._state_files[name] = file
        self._state_entries[name] = fields
        dtype = _record_dtype(fields)
        self._mapped(name, file, dtype, (self.shape[0],), 0, private=False)
        self._written_pages[name] = _data_pages(file.fileno(), self.shape[0] * dtype.itemsize)

    def _map(self, name: str, file: Any, stored: checkpoint.Stored, private: bool) -> np.ndarray:
        return self._mapped(name, file, stored.dtype.numpy, stored.shape, stored.offset, private)

    def _mapped(self, name: str, file: Any, dtype: np.dtype, shape: tuple[int, ...], offset: int,
                private: bool) -> np.ndarray:
        """The array of `dtype` and `shape` at byte `offset` of `file`, mapped read-only, or
        `private`: writable, copy on write (nothing written reaches the file), and reserving
        no memory (a table larger than memory could not be mapped so otherwise); advised
        random access (a lookup reads scattered rows: read-ahead would pull in the whole
        file)."""
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0:
            array = np.zeros(shape, dtype)
            self._maps[name] = (None, array)
            return array
        length = offset + count * dtype.itemsize
        if private:
            mapping = mmap.mmap(file.fileno(), length, flags=mmap.MAP_PRIVATE | _MAP_NORESERVE,
                                prot=mmap.PROT_READ | mmap.PROT_WRITE)
        else:
            mapping = mmap.mmap(file.fileno(), length, access=mmap.ACCESS_READ)
        mapping.madvise(mmap.MADV_RANDOM)
        stored = dtype.newbyteorder("<") if dtype.fields is None else dtype
        array = np.frombuffer(mapping, stored, count=count, offset=offset).reshape(shape).view(dtype)
        self._maps[name] = (mapping, array)
        return array

    def _target(self, name: str) -> tuple[Any, int]:
        if name == WEIGHT:
            return self._file, self._weight.offset
        return self._state_files[name], 0


def create_file(path: str, shape: tuple[int, int], dtype: DType, metadata: dict[str, str],
                rows: Callable[[int, int], np.ndarray], block_rows: int, progress: bool = True) -> None:
    """Write a new table checkpoint at `path`: a safetensors file whose ``weight`` (`shape`,
    `dtype`) is `rows(start, stop)` for consecutive blocks of `block_rows`, its data starting
    on a page; flushed to disk, then moved over any earlier table of that name (whose state
    folder is removed first)."""
    temporary = path + ".creating"
    with open(temporary, "wb") as file:
        stored = checkpoint.write_header(file, {WEIGHT: (dtype, shape)}, metadata, align=mmap.PAGESIZE)
        file.truncate(stored[WEIGHT].offset + stored[WEIGHT].nbytes)
        with _progress(shape[0], progress) as bar:
            for start in range(0, shape[0], block_rows):
                block = rows(start, min(start + block_rows, shape[0]))
                file.write(_bytes_of(np.asarray(block, dtype.numpy.newbyteorder("<"))))
                bar.update(block.shape[0])
        file.flush()
        os.fsync(file.fileno())
    shutil.rmtree(state_folder(path), ignore_errors=True)
    os.replace(temporary, path)
    _sync_folder(os.path.dirname(os.path.abspath(path)))


def _progress(total: int, shown: bool) -> Any:
    """A progress bar over `total` rows (tqdm: imported here, not with embtable), shown
    when `shown` and stderr is a terminal."""
    if not shown:
        return contextlib.nullcontext(_NoBar())
    from tqdm import tqdm

    return tqdm(total=total, unit=" rows", unit_scale=True, desc="creating table", disable=None)


class _NoBar:
    def update(self, count: int) -> None:
        pass


def _sync_folder(folder: str) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _lock(file: Any, path: str) -> None:
    if not _try_lock(file):
        raise InvalidArgumentError(f"{path!r} is already open for writing (one writable handle at a time); "
                                   f"open it with writable=False, or close the other handle")


def _try_lock(file: Any) -> bool:
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_runs(fd: int, offset: int, rows: np.ndarray, block: Any) -> None:
    """Write the rows of `block` (bytes or an array, ``len(rows)`` equal rows) to the rows
    `rows` (ascending) of the array at byte `offset` of `fd`: one write per run of
    consecutive rows, in file order."""
    count = rows.shape[0]
    if count == 0:
        return
    data = memoryview(block) if isinstance(block, bytes) else _bytes_of(block)
    width = len(data) // count
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [count]])
    for start, end in zip(starts.tolist(), ends.tolist()):
        os.pwrite(fd, data[start * width:end * width], offset + int(rows[start]) * width)


def _record_dtype(fields: list[list[Any]]) -> np.dtype:
    """The NumPy record of a state file's `fields` (``[buffer, dtype name, shape]``, as the
    manifest lists them): little-endian values, packed."""
    return np.dtype([(buffer, DType(dtype).numpy.newbyteorder("<"), tuple(shape)) for buffer, dtype, shape in fields])


def _data_pages(fd: int, size: int) -> np.ndarray:
    """Which pages of the first `size` bytes of `fd` hold data (not holes of a sparse file),
    from the file system's extents (every page, where it cannot say)."""
    pages = np.zeros(-(-size // mmap.PAGESIZE), bool)
    offset = 0
    try:
        while offset < size:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
            pages[start // mmap.PAGESIZE:-(-end // mmap.PAGESIZE)] = True
            offset = end
    except OSError as error:
        if error.errno != errno.ENXIO:  # ENXIO: no data after offset
            pages[:] = True
    return pages


def _bytes_of(array: np.ndarray) -> memoryview:
    """The bytes of `array`, row-major (any dtype, bfloat16 too)."""
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _entries(journal: str, generation: int) -> list[tuple[np.ndarray, dict[str, bytes]]]:
    """The complete entries of `generation` in the journal file, in the order written
    (entries of earlier generations are skipped); an entry cut short or damaged ends the
    list."""
    entries = []
    with open(journal, "rb") as file:
        while True:
            head = file.read(_ENTRY.size)
            if len(head) < _ENTRY.size:
                break
            magic, entry_generation, size, crc = _ENTRY.unpack(head)
            payload = file.read(size)
            if magic != _MAGIC or len(payload) < size or zlib.crc32(payload) != crc:
                break
            if entry_generation != generation:  # before a commit that completed
                continue
            (names_size,) = struct.unpack_from("<I", payload)
            names = json.loads(payload[4:4 + names_size])
            at = 4 + names_size
            (count,) = struct.unpack_from("<Q", payload, at)
            at += 8
            rows = np.frombuffer(payload, "<i8", count, at).astype(np.int64)
            at += 8 * count
            blocks = {}
            for name, width in names:
                blocks[name] = payload[at:at + count * width]
                at += count * width
            entries.append((rows, blocks))
    return entries

"""`TableFiles`: the files of a file-backed table, and how changes to them survive a crash.

A table at ``path`` is the safetensors checkpoint ``path`` (its ``weight`` tensor, written
by `Layer.save` or `create`) plus, once opened for writing, a folder ``path + ".state"``:

- ``manifest.json``: what the last completed commit made durable — its generation number,
  each optimizer's step count, the optimizer state files, the redo log's name and how many
  of its bytes the commit covers;
- ``<Optimizer>``: one raw file per optimizer holding its state as one record per row (each
  buffer's values for that row, side by side), zero until written (created sparse);
- ``log-<generation>``: the redo log (`RedoLog`) of rows changed since the checkpoint and
  state files were last brought up to date.

Changed rows are only ever appended to the log, never written over the checkpoint or the
state files, so those always hold the state of some past commit, and a row's current value
is its latest logged one if it has any. `commit` flushes the log and then atomically
replaces the manifest with one naming the new end of the log (the commit point). A process
that dies leaves at most log bytes past that point: the next open ignores them (a
writable open cuts them off), so it finds exactly the last commit. When the log has grown
(its index passes `index_bytes`, or the log the table's size), a commit then folds it into
the checkpoint and state files (`_fold`): each row's latest value written in row order, so
rows sharing a page cost it once, the files flushed, and a manifest naming a new, empty log
swapped in; a process dying midway leaves the old log in charge, whose values are the ones
being written, so folding again is harmless. A commit costs the rows changed since the last
one, written once, sequentially; nothing costs time proportional to the table.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import shutil
import sys
from typing import Any, Callable, Iterator

import numpy as np

from .. import checkpoint
from ..dtype import DType
from ..errors import InvalidArgumentError, SerializationError
from .durable import plain_name, replace_file, sync_folder, try_lock
from .progress import progress_bar
from .redo_log import RedoLog
from .row_copy import copy_rows
from .row_io import byte_rows, read_rows, write_rows

_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)
WRITE_CHUNK_ROWS = 1 << 16  # rows logged, or folded, together
_COLD_READ_THREADS = 16  # reads of a file mostly on disk: this many in flight
_FORMAT = 2
MAX_STEPS = 2**53  # more steps than any run takes; below it a count is exact wherever it goes (int64, float64)
WEIGHT = "weight"
MANIFEST = "manifest.json"


def state_folder(path: str) -> str:
    """The folder beside the checkpoint `path` that holds its optimizer state and redo log."""
    return path + ".state"


class TableFiles:
    """The open files of one table: the checkpoint and the optimizer state files, read with
    ``pread``; the redo log; a private copy-on-write mapping of the weight (`view`, what the
    layer's weight tensor shows); and, when `writable`, the exclusive lock on `path`. The
    log's index is folded away at a commit once it passes `index_bytes`."""

    def __init__(self, path: str, writable: bool, index_bytes: int = 128 << 20, at_commit: int | None = None
                 ) -> None:
        self.path = path
        self.writable = writable
        self._index_bytes = index_bytes
        stored, self.metadata = checkpoint.layout(path)
        if WEIGHT not in stored or len(stored[WEIGHT].shape) != 2 or 0 in stored[WEIGHT].shape:
            raise SerializationError(f"{path!r} is not an embtable table: it has no 2-D tensor 'weight' of at least "
                                     f"one row and column (tensors: { {k: v.shape for k, v in stored.items()} })")
        self._weight = stored[WEIGHT]
        self._row_bytes = self._weight.nbytes // max(self._weight.shape[0], 1)
        # A file larger than half the memory is mostly on disk: many reads in flight then.
        cold = 2 * self._weight.nbytes > os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        self._threads = _COLD_READ_THREADS if cold else (os.cpu_count() or 1)
        self._folder = state_folder(path)
        self._file = _random_access(open(path, "r+b" if writable else "rb"))
        self._state_files: dict[str, Any] = {}
        self._log: RedoLog | None = None
        try:
            if writable:
                _lock(self._file, path)
            self._manifest = self._read_manifest()
            if at_commit is not None:
                self._manifest = self._manifest_of(at_commit)
            if writable:
                self._remove_uncommitted()
            self._state_entries: dict[str, list[list[Any]]] = {}
            self._records: dict[str, np.dtype] = {}
            self._written_pages: dict[str, np.ndarray] = {}  # per state file: pages that may hold data
            for name, fields in self._manifest["state"].items():
                self._open_state(name, fields)
            self._log = RedoLog(os.path.join(self._folder, self._manifest["log"]), writable,
                                self._manifest["logged"], self.shape[0])
            self._check_log()
            self._mapping, self.view = _private_map(self._file, self._weight)
        except BaseException:
            self.close()
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

    def read_weight(self, rows: np.ndarray, target: np.ndarray, places: np.ndarray) -> None:
        """``target[places] = weight[rows]`` (int64 rows, in range, ascending; `target`
        C-contiguous): each row's latest logged value, or the checkpoint's."""
        logged = self._log.locate(WEIGHT, rows)
        in_log = logged >= 0
        target_bytes = byte_rows(target)
        read_rows(self._log.fd(), logged[in_log], target_bytes, places[in_log], self._threads)
        base = self._weight.offset + rows[~in_log] * self._row_bytes
        read_rows(self._file.fileno(), base, target_bytes, places[~in_log], self._threads)

    def read_state(self, name: str, rows: np.ndarray, targets: dict[str, np.ndarray], places: np.ndarray) -> None:
        """``targets[buffer][places] = state[rows][buffer]`` for each buffer of the optimizer
        `name`'s records: the latest logged ones, else the state file's, where it has pages
        written (the rest are zeros, set for free)."""
        records = np.zeros(rows.shape[0], self._records[name])
        logged = self._log.locate(name, rows)
        in_log = logged >= 0
        record_bytes = byte_rows(records)
        order = np.arange(rows.shape[0], dtype=np.int64)
        read_rows(self._log.fd(), logged[in_log], record_bytes, order[in_log], self._threads)
        if name in self._state_files:
            stored = ~in_log & self._stored(name, rows)
            width = records.dtype.itemsize
            read_rows(self._state_files[name].fileno(), rows[stored] * width, record_bytes, order[stored],
                      self._threads)
        for buffer, target in targets.items():
            copy_rows(records[buffer], order, target, places)

    def has_state(self, name: str) -> bool:
        """Whether the optimizer `name` has state here (committed, or created since)."""
        return name in self._records

    def create_state(self, name: str, fields: list[tuple[str, DType, tuple[int, ...]]]) -> None:
        """State for the optimizer `name`: one record of `fields` (buffer name, dtype, shape
        of a row's values) per table row, all zeros until rows are logged; its state file
        (sparse: no byte is written) becomes part of the table at the next commit."""
        entry = [[buffer, dtype.name, list(shape)] for buffer, dtype, shape in fields]
        with open(os.path.join(self._folder, name), "wb") as file:
            file.truncate(self.shape[0] * _record_dtype(entry).itemsize)
        self._open_state(name, entry)

    def check_state(self, name: str, record: np.dtype) -> None:
        """`SerializationError` unless the optimizer `name`'s state here is a `record` per
        row (the files were written by another version of it, or damaged, otherwise)."""
        if self._records[name] != record:
            raise SerializationError(f"{self._folder!r} holds {name}'s state as records {self._records[name]}; "
                                     f"{name} keeps records {record}")

    def _stored(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` of the state file `name` lie on pages ever written."""
        width = self._records[name].itemsize
        pages = self._written_pages[name]
        return pages[rows * width // mmap.PAGESIZE] | pages[((rows + 1) * width - 1) // mmap.PAGESIZE]

    # --- changing rows --------------------------------------------------------------------

    def write_rows(self, rows: np.ndarray, blocks: dict[str, np.ndarray]) -> None:
        """New values of `rows` (int64, distinct) of the weight and of optimizers' records:
        `blocks` (name: ``[len(rows), ...]`` values), appended to the log `WRITE_CHUNK_ROWS`
        at a time; durable at the next commit."""
        for start in range(0, rows.shape[0], WRITE_CHUNK_ROWS):
            chunk = slice(start, start + WRITE_CHUNK_ROWS)
            self._log.append(rows[chunk], {name: block[chunk] for name, block in blocks.items()})

    def commit(self, steps: dict[str, int], tag: int | None = None, keep: int | None = None) -> None:
        """Make every row written so far and the optimizer `steps` durable together; then
        fold the log into the files when it has grown. With a `tag` (the number of a commit
        of several tables together), the manifest is marked with it and keeps the commit
        `keep` openable (`at_commit`: the last one the tables completed together, None
        before the first), so nothing is folded: `fold` does that once the tagged commit is
        the one to keep. A commit tried again after one cut short keeps the same `keep`,
        not the cut one's."""
        kept = self._held(keep) if tag is not None else None
        if tag is not None and kept is None:
            raise SerializationError(f"{self.path!r} holds commits {self._commits()}, not commit {keep} to keep")
        logged = self._log.sync()
        for file in self._state_files.values():  # a state file new since the last commit
            os.fsync(file.fileno())
        last = {key: value for key, value in self._manifest.items() if key not in ("previous", "commit")}
        manifest = {**last, "generation": last["generation"] + 1, "steps": dict(steps),
                    "state": dict(self._state_entries), "logged": logged}
        if kept is not None:
            manifest.update(commit=tag, previous={**{key: value for key, value in kept.items() if key != "previous"},
                                                  "commit": keep})
        self._write_manifest(manifest)
        if tag is None:
            self.fold()

    def fold(self) -> None:
        """Fold the log into the files if it has grown (its index past `index_bytes`, or the
        log past the weight's size); the commit before the last is no longer openable then."""
        if self._log.index_bytes > self._index_bytes or self._log.size > self._weight.nbytes:
            self._fold()

    def overlay(self, target: np.ndarray) -> None:
        """Write the committed rows of the log into `target`, the checkpoint's weight as read
        from the file (C-contiguous), making it the table's weight at the last commit."""
        self._log.overlay(WEIGHT, target, self._threads)

    def refresh_view(self) -> None:
        """Make `view` show the checkpoint with every logged row over it (the rows changed
        since and not logged are the caller's to add)."""
        if self._mapping is not None:
            self._mapping.madvise(mmap.MADV_DONTNEED)  # private pages dropped: the file shows again
        self._log.overlay(WEIGHT, self.view, self._threads)

    def close(self) -> None:
        """Unmap and close everything (releasing the lock); changes not committed are lost."""
        self.view = None
        if getattr(self, "_mapping", None) is not None:
            self._mapping.close()
        self._mapping = None
        if self._log is not None:
            self._log.close()
        for file in [self._file, *self._state_files.values()]:
            file.close()

    # --- folding the log into the files ---------------------------------------------------

    def _fold(self) -> None:
        """Write each logged row's latest value over the checkpoint or its state file, in row
        order, flush them, then start a new empty log (the manifest names it). The commit
        before the last is forgotten first: the files will no longer hold it."""
        if "previous" in self._manifest:
            self._write_manifest({key: value for key, value in self._manifest.items() if key != "previous"})
        for name in self._log.names:
            fd, start, width = self._target(name)
            rows, offsets = self._log.items(name)
            for low in range(0, rows.shape[0], WRITE_CHUNK_ROWS):
                chunk_rows, chunk_offsets = rows[low:low + WRITE_CHUNK_ROWS], offsets[low:low + WRITE_CHUNK_ROWS]
                block = np.empty((chunk_rows.shape[0], width), np.uint8)
                order = np.arange(chunk_rows.shape[0], dtype=np.int64)
                read_rows(self._log.fd(), chunk_offsets, block, order, self._threads)
                write_rows(fd, start + chunk_rows * width, block, order)
            if name in self._written_pages:
                pages = self._written_pages[name]
                pages[rows * width // mmap.PAGESIZE] = True
                pages[((rows + 1) * width - 1) // mmap.PAGESIZE] = True
        for file in [self._file, *self._state_files.values()]:
            os.fsync(file.fileno())
        old = self._log
        generation = self._manifest["generation"] + 1
        name = f"log-{generation}"
        self._log = RedoLog(os.path.join(self._folder, name), True, 0, self.shape[0])
        os.fsync(self._log.fd())
        self._write_manifest({**self._manifest, "generation": generation, "log": name, "logged": 0})
        old.close()
        os.unlink(old.path)

    def _target(self, name: str) -> tuple[int, int, int]:
        """The file descriptor, first byte and bytes per row of the array `name`."""
        if name == WEIGHT:
            return self._file.fileno(), self._weight.offset, self._row_bytes
        return self._state_files[name].fileno(), 0, self._records[name].itemsize

    # --- the manifest ---------------------------------------------------------------------

    def _read_manifest(self) -> dict[str, Any]:
        name = os.path.join(self._folder, MANIFEST)
        if not os.path.exists(name):  # a checkpoint never opened for writing
            manifest = {"format": _FORMAT, "generation": 0, "steps": {}, "state": {}, "log": "log-0", "logged": 0}
            if self.writable:
                os.makedirs(self._folder, exist_ok=True)
                self._write_manifest(manifest)
            return manifest
        try:
            with open(name, "rb") as file:
                manifest = checkpoint.parse_json(file.read())
            _check_manifest(manifest)
            if "previous" in manifest:
                _check_manifest(manifest["previous"])
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise SerializationError(f"{name!r} is not an embtable table manifest ({error})") from None
        return manifest

    def _manifest_of(self, tag: int) -> dict[str, Any]:
        """The manifest of the commit tagged `tag` (the last, or the one before it: made the
        manifest again by a writable open); `SerializationError` if the files hold neither."""
        manifest = self._held(tag)
        if manifest is None:
            raise SerializationError(f"{self.path!r} holds commits {self._commits()}, not commit {tag}")
        if self.writable and manifest is not self._manifest:
            self._write_manifest(manifest)
        return manifest

    def _held(self, tag: int | None) -> dict[str, Any] | None:
        """The manifest of the commit tagged `tag` (None: untagged) that the files hold: the
        last one or the one before it; None if neither is."""
        for manifest in (self._manifest, self._manifest.get("previous")):
            if manifest is not None and manifest.get("commit") == tag:
                return manifest
        return None

    def _commits(self) -> list[int | None]:
        """The tags of the commits the files hold, the last first."""
        return [manifest.get("commit") for manifest in (self._manifest, self._manifest.get("previous"))
                if manifest is not None]

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        replace_file(os.path.join(self._folder, MANIFEST), json.dumps(manifest).encode())
        self._manifest = manifest

    def _remove_uncommitted(self) -> None:
        """Delete what the manifest does not name: state files and logs of a process that
        died before committing them, or after a fold replaced them."""
        known = {MANIFEST, self._manifest["log"], *self._manifest["state"]}
        for name in os.listdir(self._folder):
            if name not in known:
                os.unlink(os.path.join(self._folder, name))

    def _check_log(self) -> None:
        """`SerializationError` unless the log's arrays are the weight and known state."""
        expected = {WEIGHT: self._row_bytes, **{name: record.itemsize for name, record in self._records.items()}}
        for name, width in self._log.widths.items():
            if expected.get(name) != width:
                raise SerializationError(f"{self._log.path!r} logs rows of {name!r} of {width} bytes; the table's "
                                         f"arrays have rows of {expected}")

    # --- state files ------------------------------------------------------------------------

    def _open_state(self, name: str, fields: list[list[Any]]) -> None:
        try:
            file = _random_access(open(os.path.join(self._folder, name), "r+b" if self.writable else "rb"))
        except FileNotFoundError:
            raise SerializationError(f"{self._folder!r} has no state file {name!r}, which its manifest names") from None
        self._state_files[name] = file
        self._state_entries[name] = fields
        self._records[name] = _record_dtype(fields)
        size = self.shape[0] * self._records[name].itemsize
        if os.fstat(file.fileno()).st_size < size:
            raise SerializationError(f"{file.name!r} holds less than {self.shape[0]} records of {name}'s state")
        self._written_pages[name] = _data_pages(file.fileno(), size)


def _check_manifest(manifest: dict[str, Any]) -> None:
    """`ValueError` (or the `KeyError` / `TypeError` of a missing or odd field) unless
    `manifest` is one a commit writes."""
    if manifest["format"] != _FORMAT:
        raise ValueError(f"format {manifest['format']!r}, expected {_FORMAT}")
    if not all(isinstance(manifest[key], int) and manifest[key] >= 0 for key in ("generation", "logged")):
        raise ValueError("generation and logged must be non-negative integers")
    if not plain_name(manifest["log"]) or manifest["log"] == MANIFEST:
        raise ValueError(f"log {manifest['log']!r}")
    for optimizer, fields in manifest["state"].items():
        if optimizer in (MANIFEST, manifest["log"]) or not plain_name(optimizer):
            raise ValueError(f"state file {optimizer!r}")
        _record_dtype(fields)
    checked_steps(manifest["steps"])
    if manifest.get("commit") is not None and not isinstance(manifest["commit"], int):
        raise ValueError(f"commit {manifest['commit']!r}")


def checked_steps(steps: Any) -> dict[str, int]:
    """`steps`, read from a manifest (each optimizer's step count by its name), checked:
    `ValueError` unless every count is an integer in ``[0, MAX_STEPS]``."""
    if not all(isinstance(count, int) and 0 <= count <= MAX_STEPS for count in steps.values()):
        raise ValueError(f"steps {steps!r}: step counts must be integers in [0, {MAX_STEPS}]")
    return steps


def _random_access(file: Any) -> Any:
    """`file`, its reads advised random (one row's pages read, no read-ahead around them)."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
    return file


def _private_map(file: Any, stored: checkpoint.Stored) -> tuple[mmap.mmap | None, np.ndarray]:
    """The array `stored` describes in `file`, mapped private (writable, copy on write:
    nothing written reaches the file) and reserving no memory (a table larger than memory
    could not be mapped so otherwise), advised random access."""
    dtype = stored.dtype.numpy
    count = int(np.prod(stored.shape, dtype=np.int64))
    if count == 0:
        return None, np.zeros(stored.shape, dtype)
    mapping = mmap.mmap(file.fileno(), stored.offset + count * dtype.itemsize, flags=mmap.MAP_PRIVATE | _MAP_NORESERVE,
                        prot=mmap.PROT_READ | mmap.PROT_WRITE)
    mapping.madvise(mmap.MADV_RANDOM)
    array = np.frombuffer(mapping, dtype.newbyteorder("<"), count=count, offset=stored.offset)
    return mapping, array.reshape(stored.shape).view(dtype)


def create_file(path: str, shape: tuple[int, int], dtype: DType, metadata: dict[str, str],
                rows: Callable[[int, int], np.ndarray], block_rows: int, progress: bool = True) -> None:
    """Write a new table checkpoint at `path`: a safetensors file whose ``weight`` (`shape`,
    `dtype`) is `rows(start, stop)` for consecutive blocks of `block_rows`, its data starting
    on a page; flushed to disk, then moved over any earlier table of that name (whose state
    folder is removed first), unless that one is open for writing (`InvalidArgumentError`,
    before anything is written)."""
    with _replacing(path):
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
        sync_folder(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[None]:
    """Hold the write lock of the table at `path`, if there is one, while it is replaced."""
    try:
        earlier = open(path, "rb")
    except FileNotFoundError:
        yield
        return
    with earlier:
        if not try_lock(earlier):
            raise InvalidArgumentError(f"{path!r} is open for writing: close that table before creating another "
                                       f"in its place")
        yield


def _progress(total: int, shown: bool) -> Any:
    """A progress bar over `total` rows, shown when `shown` and stderr is a terminal, unless
    ``TQDM_DISABLE`` silences it (`tables/progress.py`)."""
    return progress_bar(total, shown, unit=" rows", unit_scale=True, desc="creating table", disable=None)


def _lock(file: Any, path: str) -> None:
    if not try_lock(file):
        raise InvalidArgumentError(f"{path!r} is already open for writing (one writable handle at a time); "
                                   f"open it with writable=False, or close the other handle")



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

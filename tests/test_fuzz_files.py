"""A fuzzer of embtable's file readers (issue #17).

Valid files are made — layer checkpoints (`Layer.save` of an `Embedding` and of an
`EmbeddingBag`), quantized layers' checkpoints, a file-backed table's files (its
checkpoint, manifest, Adam's state file and redo log, with committed and uncommitted
entries), a sharded table's checkpoint folder and a file-backed sharded table's folder
(Sequential models do not save to one file, and optimizers' state reaches files only
through file-backed tables) — then hypothesis damages one file of each: bit flips,
truncations, inserted, deleted or overwritten bytes; edits of the JSON inside (the
safetensors header, the config inside its metadata, manifests, a log entry's names):
values made huge, negative, of the wrong type or deeply nested, entries removed, added or
duplicated; the safetensors header length; a redo log entry's count, names and rows with
its CRC made good again; a file of a folder removed. Then every reader of the format
runs over it. Headers claiming huge tables through two fields changed together, which
the fuzzer rarely makes, are examples of their own.

Each read must raise `SerializationError` or give a well-formed layer, whose lookups work.
Where both readers of a checkpoint apply (`load`, and `open` for a file-backed table) they
must agree. A change confined to a checkpoint's data bytes must load those bytes exactly
(safetensors has no checksum: a flipped value is a different value), except that a
quantized row's scales and offsets must stay finite (scales >= 0); the redo log's CRC
covers each entry's names and rows, not its values. A read that runs past `CASE_SECONDS`
fails, and so does one that allocates (tracemalloc: NumPy's arrays and Python's objects)
or makes resident (the peak RSS, where Linux lets it be reset) far more than the files'
size: a header claiming 10**12 rows must not allocate them.

CI runs `EXAMPLES` cases per format; ``EMBTABLE_FUZZ_EXAMPLES=5000`` runs more, and
pytest's ``--hypothesis-show-statistics`` then counts each format's outcomes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import struct
import tempfile
import tracemalloc
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import embtable as et
from embtable import checkpoint
from embtable.errors import SerializationError
from embtable.nn import Embedding, EmbeddingBag, QuantizedEmbedding, QuantizedEmbeddingBag
from embtable.nn.layer import checkpoint_metadata
from embtable.optim import Adam
from embtable.tables.placement import Placement
from embtable.tables.sharded_checkpoint import finish_writing
from embtable.tables.sharded_files import FORMAT as SHARDED_FILES
from embtable.tables.sharded_files import shard_file, write_commit
from embtable.tables.table_files import WEIGHT, TableFiles, create_file

EXAMPLES = int(os.environ.get("EMBTABLE_FUZZ_EXAMPLES", "25"))
CASE_SECONDS = 30
TRACED_SLACK = 48 << 20  # what a read may allocate beyond a few times the files' size (kernels compiled on first use)
RESIDENT_SLACK = 256 << 20
SIZE_FACTOR = 8
ROWS, DIM = 13, 6
CASES = "/dev/shm" if os.path.isdir("/dev/shm") else None  # tmpfs: a case's fsyncs (commits) cost nothing


# --- the valid files ------------------------------------------------------------------------

def _values(dtype: str, rows: int = ROWS, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((rows, dim)).astype(et.DType[dtype].numpy)


def make_embedding(folder: Path) -> Path:
    Embedding.from_pretrained(_values("F32"), freeze=True, padding_idx=3, scale_grad_by_freq=True).save(
        folder / "e.safetensors")
    return folder / "e.safetensors"


def make_bag(folder: Path) -> Path:
    EmbeddingBag.from_pretrained(_values("BF16"), freeze=False, mode="max", include_last_offset=True, padding_idx=1,
                                 max_norm=2.0, max_norm_mode="clip").save(folder / "b.safetensors")
    return folder / "b.safetensors"


def make_quantized(folder: Path) -> Path:
    """4-bit codes in groups of 2 columns: a row's codes end inside a padded float32 word."""
    layer = Embedding.from_pretrained(_values("F32"), padding_idx=0)
    layer.to_quantized(bits=4, group_size=2).save(folder / "q.safetensors")
    return folder / "q.safetensors"


def make_quantized_bag(folder: Path) -> Path:
    layer = EmbeddingBag.from_pretrained(_values("F64"), mode="sum", padding_idx=2)
    layer.to_quantized(bits=8).save(folder / "qb.safetensors")
    return folder / "qb.safetensors"


TABLE_ROWS, TABLE_DIM = 64, 8


def make_table(folder: Path) -> Path:
    """A file-backed table trained with Adam: a commit that folded its log into the
    checkpoint and the state file, a commit left in the log, and rows evicted after it
    (log bytes past the committed length, which a process that died would leave)."""
    path = folder / "t.safetensors"
    et.manual_seed(3)
    table = Embedding.create(path, TABLE_ROWS, TABLE_DIM, padding_idx=0, cache_bytes=1 << 20)
    _train(table, np.arange(40))  # the log outgrows the checkpoint: folded
    table.commit()
    _train(table, np.array([5, 9, 50]))
    table.commit()
    del table
    gc.collect()
    table = Embedding.open(path, writable=True, cache_bytes=1)  # a one-row cache: rows evicted to the log
    _train(table, np.array([1, 2, 60, 61]))
    table(np.array([3]))  # evicts the changed rows
    del table  # not committed
    gc.collect()
    return path


def _train(table: Embedding, ids: np.ndarray) -> None:
    """One Adam step (resuming the state in the table's files) on the rows `ids`."""
    table.zero_grad()
    optimizer = Adam(table.parameters(), lr=0.1)
    (table(ids) * table(ids)).sum().backward()
    optimizer.step()


def make_sharded(folder: Path) -> Path:
    """A sharded table's checkpoint of 3 shards, written as `ShardedTable.save` writes it
    (each shard's rows in place order, then the manifest), without starting Ray."""
    layer = Embedding.from_pretrained(_values("F32", 20, 4), freeze=False, padding_idx=4)
    path = folder / "sharded"
    path.mkdir()
    placement = Placement(20, 3)
    metadata = checkpoint_metadata("Embedding", layer.config(), [])
    names = [f"shard-{k:05d}-fuzz.safetensors" for k in range(3)]
    for k, name in enumerate(names):
        checkpoint.write(path / name, {"weight": layer.weight.numpy()[placement.rows_of(k)]}, metadata)
    finish_writing(str(path), names, placement, et.DType.F32, metadata)
    return path


def make_sharded_files(folder: Path) -> Path:
    """A file-backed sharded table of 2 shards as `ShardedFileTable` leaves it, written
    with its own pieces, without starting Ray: each shard a table file whose commits 1 and
    2 are tagged (2 logs rows over 1 and keeps it openable), then ``commit.json`` naming
    commit 2."""
    layer = Embedding.from_pretrained(_values("F32", 20, 4), freeze=False, padding_idx=4)
    path = folder / "sharded-files"
    path.mkdir()
    placement = Placement(20, 2)
    metadata = checkpoint_metadata("Embedding", layer.config(), [])
    for k in range(2):
        rows = layer.weight.numpy()[placement.rows_of(k)]
        create_file(shard_file(str(path), k), rows.shape, et.DType.F32, metadata, lambda start, stop: rows[start:stop],
                    block_rows=len(rows), progress=False)
        files = TableFiles(shard_file(str(path), k), writable=True)
        files.commit({}, tag=1, keep=None)
        files.write_rows(np.array([0, 3]), {WEIGHT: -rows[[0, 3]]})
        files.commit({"Adam": 1}, tag=2, keep=1)
        files.close()
    write_commit(str(path), {"format": SHARDED_FILES, "commit": 2, "steps": {"Adam": 1}, "metadata": metadata,
                             "num_rows": 20, "dim": 4, "dtype": "F32", "shards": 2,
                             "multiplier": placement.multiplier})
    return path


# --- reading them ---------------------------------------------------------------------------

def read_layer(cls: type, path: Path) -> dict[str, np.ndarray]:
    """`cls.load(path)`, checked well-formed: a 2-D float weight whose lookups of every row
    give its rows (when no `max_norm` rescales them). Its state dict as loaded."""
    layer = cls.load(path)
    state = {name: tensor.numpy() for name, tensor in layer.state_dict().items()}
    weight = state["weight"]
    assert weight.ndim == 2 and layer.weight.dtype.is_float
    assert weight.shape == (layer.num_embeddings, layer.embedding_dim)
    ids = np.arange(layer.num_embeddings)
    out = layer(ids) if cls is Embedding else layer(ids.reshape(-1, 1))
    assert out.shape == weight.shape
    if cls is Embedding and layer.max_norm is None:
        np.testing.assert_array_equal(out.numpy(), weight)
    return state


def read_opened(cls: type, path: Path) -> np.ndarray:
    """The table at `path` opened read-only in place: its weight, and its lookups of every
    row (when no `max_norm` would rescale them) the same rows."""
    layer = cls.open(path)
    weight = layer.weight.numpy()
    if layer.max_norm is None:
        ids = np.arange(layer.num_embeddings)
        out = layer(ids) if cls is Embedding else layer(ids.reshape(-1, 1))
        if cls is Embedding:
            np.testing.assert_array_equal(out.numpy(), weight)
    return weight


def read_quantized(cls: type, path: Path) -> dict[str, np.ndarray]:
    """`cls.load(path)`, checked well-formed: `dequantize()` of its shape, and lookups of
    every row equal to it."""
    layer = cls.load(path)
    table = layer.dequantize().numpy()
    assert table.shape == (layer.num_embeddings, layer.embedding_dim)
    ids = np.arange(layer.num_embeddings)
    if cls is QuantizedEmbedding:
        np.testing.assert_array_equal(layer(ids).numpy(), table)
    else:
        assert layer(ids.reshape(-1, 1)).shape == table.shape
    return {name: tensor.numpy() for name, tensor in layer.state_dict().items()}


class Outcome:
    """What one reader made of a case: its result, or None when it raised
    `SerializationError` (any other exception fails the case)."""

    def __init__(self, read: Callable[[], Any], budget: int) -> None:
        with guarded(budget):
            try:
                self.result = read()
                self.label = "loaded"
            except SerializationError as error:
                assert str(error), "a SerializationError says what is wrong"
                self.result, self.label = None, "refused"


def check_checkpoint(cls: type, path: Path, original: bytes, budget: int) -> str:
    """Read a damaged layer checkpoint with `load` (and `open`, which must agree with it);
    when only data bytes changed, what loads holds exactly the file's bytes."""
    reader = read_quantized if issubclass(cls, (QuantizedEmbedding, QuantizedEmbeddingBag)) else read_layer
    loaded = Outcome(lambda: reader(cls, path), budget)
    if reader is read_layer:
        opened = Outcome(lambda: read_opened(cls, path), budget)
        assert opened.label == loaded.label, f"load {loaded.label} the file, open {opened.label} it"
        if loaded.result is not None:
            np.testing.assert_array_equal(opened.result, loaded.result["weight"])
    damaged = path.read_bytes()
    if _data_only(original, damaged):
        if loaded.result is None:
            assert reader is read_quantized, "a change of data bytes alone must load"
        else:
            stored, _ = checkpoint.layout(path)
            for name, array in loaded.result.items():
                at = stored[name]
                assert array.tobytes() == damaged[at.offset:at.offset + at.nbytes], f"{name} is not the file's"
    return loaded.label


def check_table(path: Path, budget: int) -> str:
    """Read a damaged file-backed table every way: `load` (checkpoint and committed log),
    `open` read-only (which must agree), and `open` writable with Adam resuming its state
    for a step and a commit, reopened after; a writable open that refuses leaves the
    table reading as before."""
    loaded = Outcome(lambda: read_layer(Embedding, path)["weight"], budget)
    opened = Outcome(lambda: read_opened(Embedding, path), budget)
    assert opened.label == loaded.label, f"load {loaded.label} the table, open {opened.label} it"
    if loaded.result is not None:
        np.testing.assert_array_equal(opened.result, loaded.result)
    trained = Outcome(lambda: _trained(path), budget)
    if trained.result is None:
        again = Outcome(lambda: read_opened(Embedding, path), budget)
        assert again.label == opened.label
        if opened.result is not None:
            np.testing.assert_array_equal(again.result, opened.result)
    return f"{loaded.label}, writable {trained.label}"


def _trained(path: Path) -> np.ndarray:
    table = Embedding.open(path, writable=True, cache_bytes=1 << 16)
    ids = np.array([0, 5, 61]) % table.num_embeddings
    _train(table, ids)
    table.commit()
    return read_opened(Embedding, path)


def check_sharded(path: Path, budget: int) -> str:
    """Read a damaged sharded table's folder (saved, or file-backed) with `load`."""
    return Outcome(lambda: read_layer(Embedding, path), budget).label


def _data_only(original: bytes, damaged: bytes) -> bool:
    """Whether `damaged` differs from the safetensors file `original` in data bytes only."""
    start = 8 + int.from_bytes(original[:8], "little")
    return len(damaged) == len(original) and damaged[:start] == original[:start]


class Hang(Exception):
    """A read that ran past `CASE_SECONDS`."""


@contextlib.contextmanager
def guarded(budget: int):
    """Fail the read inside when it takes longer than `CASE_SECONDS`, or allocates or makes
    resident far more than `budget` (the files' bytes)."""
    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"a read ran past {CASE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    resident = _reset_peak_resident()
    tracemalloc.start()
    try:
        yield
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert traced <= TRACED_SLACK + SIZE_FACTOR * budget, f"a read of {budget} bytes of files allocated {traced}"
    if resident is not None:
        grown = _peak_resident() - resident
        assert grown <= RESIDENT_SLACK + SIZE_FACTOR * budget, f"a read of {budget} bytes made {grown} more resident"


def _reset_peak_resident() -> int | None:
    """Reset this process's peak RSS to its current RSS (Linux); that RSS, or None where
    it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
    except OSError:
        return None
    return _peak_resident()


def _peak_resident() -> int:
    with open("/proc/self/status") as file:
        return next(int(line.split()[1]) << 10 for line in file if line.startswith("VmHWM:"))


# --- damage -------------------------------------------------------------------------------------

class Pairs(list):
    """A JSON object as its list of (key, value) pairs, so that duplicate keys survive."""


class Raw(str):
    """JSON text written as it is (deep nesting, NaN, numbers beyond any type)."""


def parse(text: bytes | str) -> Any:
    """JSON text as lists, `Pairs` and plain values."""
    return json.loads(text, object_pairs_hook=Pairs)


def dump(node: Any) -> str:
    """What `parse` gives (edited) as JSON text again, `Raw` parts as they are."""
    if isinstance(node, Raw):
        return str(node)
    if isinstance(node, Pairs):
        return "{" + ",".join(f"{json.dumps(key)}:{dump(value)}" for key, value in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(dump(item) for item in node) + "]"
    return json.dumps(node)


KEYS = ["dtype", "shape", "data_offsets", "__metadata__", "weight", "rows", "embtable.layer", "embtable.config",
        "embtable.frozen", "num_embeddings", "embedding_dim", "bits", "group_size", "padding_idx", "max_norm",
        "mode", "device", "format", "generation", "steps", "state", "log", "logged", "previous", "commit",
        "num_rows", "multiplier", "bounds", "files", "metadata", "Adam", "exp_avg"]

EVIL = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 7, 8, 64, 4096, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63),
                     10**12, -10**12, 10**30, 0.5, -0.0, 1e308, True, False, None]),
    st.sampled_from(["", "F32", "F64", "BF16", "F16", "U8", "I64", "BOOL", "F8_E4M3", "weight", "log-0", "log-1", ".",
                     "..", "/", "/tmp", "Adam", "Embedding", "QuantizedEmbedding", "manifest.json",
                     "shard-00000-fuzz.safetensors", "x" * 5000]),
    st.sampled_from([[], [0], [-1], [10**12], [10**12, 10**12], [2**32, 2**32], [2**62, 4], [0, 0], [0, 10**12],
                     [1, 2, 3], [[]], ["F32"], Pairs(), Pairs([("a", 1)]), Pairs([("weight", [1, 2])])]),
    st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e999"), Raw("9" * 5000)]),
    st.sampled_from([Raw("[" * 5000 + "]" * 5000), Raw("{\"a\":" * 3000 + "1" + "}" * 3000)]),
    st.integers(), st.floats(), st.text(max_size=8), st.lists(st.integers(-2, 10**13), max_size=3))


def containers(node: Any, path: tuple = ()) -> list[tuple]:
    """The path of every JSON container in `node`, itself first: a step is an entry's
    position, or "json" into a string that holds a JSON object or list."""
    found = [path]
    items = [value for _, value in node] if isinstance(node, Pairs) else node
    for position, value in enumerate(items):
        if isinstance(value, list):
            found += containers(value, path + (position,))
        elif isinstance(value, str) and value.startswith(("[", "{")):
            with contextlib.suppress(ValueError):
                found += containers(parse(value), path + (position, "json"))
    return found


def edited(node: Any, path: tuple, change: Callable[[list], None]) -> Any:
    """A copy of `node` whose container at `path` went through `change` (in place)."""
    if not path:
        copy = type(node)(node)
        change(copy)
        return copy
    if path[0] == "json":
        return dump(edited(parse(node), path[1:], change))
    copy = type(node)(node)
    if isinstance(copy, Pairs):
        key, value = copy[path[0]]
        copy[path[0]] = (key, edited(value, path[1:], change))
    else:
        copy[path[0]] = edited(copy[path[0]], path[1:], change)
    return copy


def json_edit(data: Any, document: Any) -> tuple[str, Any]:
    """One edit of a parsed JSON `document`, anywhere in it: a value replaced, an entry
    removed, duplicated or added. Its label and the edited document."""
    path = data.draw(st.sampled_from(containers(document)), label="container")
    size = len(_at(document, path))
    how = data.draw(st.sampled_from(["replace", "replace", "remove", "duplicate", "add"] if size else ["add"]),
                    label="edit")
    position = data.draw(st.integers(0, max(size - 1, 0)), label="position")
    value = data.draw(EVIL, label="value")
    key = data.draw(st.sampled_from(KEYS) | st.text(max_size=4), label="key")

    def change(container: list) -> None:
        is_object = isinstance(container, Pairs)
        if how == "replace":
            container[position] = (container[position][0], value) if is_object else value
        elif how == "remove":
            del container[position]
        elif how == "duplicate":
            entry = container[position]
            container.insert(position + 1, (entry[0], value) if is_object and data.draw(st.booleans()) else entry)
        else:
            container.insert(position, (key, value) if is_object else value)

    return f"json {how}", edited(document, path, change)


def _at(node: Any, path: tuple) -> list:
    """The container at `path` (as `containers` gives paths) in `node`."""
    for step in path:
        node = parse(node) if step == "json" else (node[step][1] if isinstance(node, Pairs) else node[step])
    return node


NEAR = 400  # bytes from either end


def raw_edit(data: Any, blob: bytes) -> tuple[str, bytes]:
    """Bytes flipped, cut, inserted, deleted or overwritten, often near the start (where
    headers are) or the end (where a page-aligned table's data is)."""
    size = len(blob)
    where = (st.integers(0, min(size, NEAR)) | st.integers(max(size - NEAR, 0), size)
             | st.integers(0, size))
    how = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"] if size else ["insert"]),
                    label="raw")
    at = data.draw(where, label="at")
    if how == "flip":
        at = min(at, size - 1)
        bit = data.draw(st.integers(0, 7), label="bit")
        return how, blob[:at] + bytes([blob[at] ^ (1 << bit)]) + blob[at + 1:]
    if how == "truncate":
        return how, blob[:at]
    if how == "insert":
        return how, blob[:at] + data.draw(st.binary(min_size=1, max_size=16), label="inserted") + blob[at:]
    length = data.draw(st.integers(1, 16), label="length")
    if how == "delete":
        return how, blob[:at] + blob[at + length:]
    new = data.draw(st.binary(min_size=length, max_size=length), label="written")
    return how, (blob[:at] + new + blob[at + length:])[:max(size, at)]


def safetensors_edit(data: Any, blob: bytes) -> tuple[str, bytes]:
    """The header length made another number, or the JSON header edited (the metadata's
    JSON strings too) and written back with its new length."""
    length = int.from_bytes(blob[:8], "little")
    header, rest = blob[8:8 + length], blob[8 + length:]
    if data.draw(st.integers(0, 4), label="length or header") == 0:
        claimed = data.draw(st.sampled_from([0, 1, 2, length - 1, length + 1, len(blob), len(blob) - 8, 2**32,
                                             2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1), label="length")
        return "header length", claimed.to_bytes(8, "little") + blob[8:]
    label, document = json_edit(data, parse(header))
    text = dump(document).encode()
    return f"header {label}", len(text).to_bytes(8, "little") + text + rest


def json_file_edit(data: Any, blob: bytes) -> tuple[str, bytes]:
    label, document = json_edit(data, parse(blob))
    return label, dump(document).encode()


LOG_HEADER = struct.Struct("<4sIQI")


def log_entries(blob: bytes) -> list[tuple[int, int, int]]:
    """Where each entry of a valid redo log starts, the size of its names and its row count."""
    entries, at = [], 0
    while at + LOG_HEADER.size <= len(blob):
        _, names_size, count, _ = LOG_HEADER.unpack_from(blob, at)
        widths = sum(width for _, width in json.loads(blob[at + LOG_HEADER.size:at + LOG_HEADER.size + names_size]))
        entries.append((at, names_size, count))
        at += LOG_HEADER.size + names_size + count * (8 + widths)
    return entries


def log_edit(data: Any, blob: bytes) -> tuple[str, bytes]:
    """One redo log entry's magic, row count, names (their size, or the JSON) or a row
    number changed, its CRC made good again (as a bug writing wrong entries would leave
    them) or left as it was."""
    entries = log_entries(blob)
    if not entries:
        return raw_edit(data, blob)
    at, names_size, count = data.draw(st.sampled_from(entries), label="entry")
    magic, _, _, crc = LOG_HEADER.unpack_from(blob, at)
    start = at + LOG_HEADER.size
    names, rows = blob[start:start + names_size], blob[start + names_size:start + names_size + 8 * count]
    tail = blob[start + names_size + 8 * count:]
    what = data.draw(st.sampled_from(["magic", "count", "names size", "names", "names", "row"]), label="log field")
    if what == "magic":
        magic = b"ETR2"
    elif what == "count":
        count = data.draw(st.sampled_from([0, count - 1, count + 1, 2**32, 2**62, 2**64 - 1])
                          | st.integers(0, 2**64 - 1), label="count")
    elif what == "names size":
        names_size = data.draw(st.integers(0, 2**32 - 1), label="names size")
    elif what == "names":
        what, document = json_edit(data, parse(names))
        names = dump(document).encode()
        names_size = len(names)
    elif count:
        position = data.draw(st.integers(0, count - 1), label="row position")
        row = data.draw(st.sampled_from([-1, TABLE_ROWS - 1, TABLE_ROWS, 2**62, -(2**63)])
                        | st.integers(-(2**63), 2**63 - 1), label="row")
        rows = rows[:8 * position] + struct.pack("<q", row) + rows[8 * position + 8:]
    body = names + rows + tail
    if data.draw(st.integers(0, 4), label="crc kept") > 0:
        crc = zlib.crc32(body[:names_size + 8 * count])  # what the reader checks
    return f"log {what}", blob[:at] + LOG_HEADER.pack(magic, names_size, count, crc) + body


def damage(data: Any, blob: bytes, name: str, removable: bool) -> tuple[str, bytes | None]:
    """One damage of the file `name` holding `blob`: raw, one that knows its format, or
    (when `removable`: a file the reader finds through another) the file gone (None)."""
    kinds = [raw_edit]
    if name.endswith(".safetensors"):
        kinds += [safetensors_edit] * 2  # the edits that know the format reach further
    elif name.endswith(".json"):
        kinds += [json_file_edit] * 2
    elif name.startswith("log-"):
        kinds += [log_edit] * 2
    if removable:
        kinds.append(lambda data, blob: ("removed", None))
    return data.draw(st.sampled_from(kinds), label="kind")(data, blob)


# --- the fuzzer -------------------------------------------------------------------------------

FORMATS: dict[str, tuple[Callable[[Path], Path], Callable[[Path, bytes, int], str]]] = {
    "embedding": (make_embedding, lambda path, original, budget: check_checkpoint(Embedding, path, original, budget)),
    "bag": (make_bag, lambda path, original, budget: check_checkpoint(EmbeddingBag, path, original, budget)),
    "quantized": (make_quantized,
                  lambda path, original, budget: check_checkpoint(QuantizedEmbedding, path, original, budget)),
    "quantized-bag": (make_quantized_bag,
                      lambda path, original, budget: check_checkpoint(QuantizedEmbeddingBag, path, original, budget)),
    "table": (make_table, lambda path, original, budget: check_table(path, budget)),
    "sharded": (make_sharded, lambda path, original, budget: check_sharded(path, budget)),
    "sharded-files": (make_sharded_files, lambda path, original, budget: check_sharded(path, budget)),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each format's valid files, in a folder of their own: the folder and what is read."""
    found = {}
    for name, (make, _) in FORMATS.items():
        folder = tmp_path_factory.mktemp(name)
        found[name] = (folder, make(folder))
    return found


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


@contextlib.contextmanager
def copy_of(made: dict[str, tuple[Path, Path]], name: str):
    """A copy of the format `name`'s valid files in a new folder (on tmpfs where there is
    one), removed after: the folder, and the path the format's readers are given."""
    folder, read = made[name]
    with tempfile.TemporaryDirectory(dir=CASES) as temporary:
        copy = Path(temporary) / "copy"
        shutil.copytree(folder, copy)
        yield copy, copy / read.relative_to(folder)


def check(name: str, folder: Path, read: Path, original: bytes) -> str:
    """Run the format `name`'s check over the (damaged) files in `folder`: its outcome."""
    return FORMATS[name][1](read, original, sum(os.path.getsize(folder / file) for file in _files(folder)))


@pytest.mark.parametrize("name", FORMATS)
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data())
def test_a_damaged_file_is_refused_or_read_whole(made, name, data):
    with copy_of(made, name) as (folder, read):
        target = data.draw(st.sampled_from(_files(folder)), label="file")
        damaged = folder / target
        original = damaged.read_bytes()
        how, blob = damage(data, original, damaged.name, removable=damaged != read)
        if blob is None:
            damaged.unlink()
        else:
            damaged.write_bytes(blob)
        outcome = check(name, folder, read, original)
        event(f"{target.split('/')[-1].split('-')[0]}: {how}: {outcome}")


@pytest.mark.parametrize("name", FORMATS)
def test_the_valid_files_read_whole(made, name):
    """The fuzzer's starting points load (so a refusal above is the damage's doing)."""
    with copy_of(made, name) as (folder, read):
        assert check(name, folder, read, read.read_bytes() if read.is_file() else b"").startswith("loaded")


# --- headers claiming huge tables: fields changed together, which the fuzzer rarely does ------

HUGE = 10**12


def _header_edited(path: Path, change: Callable[[dict, dict], None]) -> None:
    """Rewrite the safetensors header of `path` as `change` leaves it (the parsed header
    and the layer config inside its metadata)."""
    blob = path.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + length])
    config = json.loads(header["__metadata__"]["embtable.config"])
    change(header, config)
    header["__metadata__"]["embtable.config"] = json.dumps(config)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + length:])


def _claim(tensor: str, shape: list[int], rows: int, dim: int) -> Callable[[dict, dict], None]:
    """A header edit: `tensor` of `shape` on no bytes, the config's size `rows` x `dim`."""
    def change(header: dict, config: dict) -> None:
        header[tensor].update(shape=shape, data_offsets=[0, 0])
        config.update(num_embeddings=rows, embedding_dim=dim)
    return change


def _quantized_rows(header: dict, config: dict) -> None:
    """A header edit: the config's row count 10**12, the rows tensor as it is."""
    config["num_embeddings"] = HUGE


def _sharded_rows(folder: Path) -> None:
    """Shards of 10**8 rows of width 0 (no bytes), the manifest's placement of them."""
    manifest = json.loads((folder / "manifest.json").read_text())
    placement = Placement(10**8, len(manifest["files"]))
    manifest.update(num_rows=placement.num_rows, multiplier=placement.multiplier, bounds=placement.bounds.tolist())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for k, name in enumerate(manifest["files"]):
        _header_edited(folder / name, _claim("weight", [placement.size_of(k), 0], placement.num_rows, 0))


CLAIMS = {
    "a shape whose product wraps int64 to 0": ("embedding", "e.safetensors",
                                               _claim("weight", [2**33, 2**33], 2**33, 2**33)),
    "10**12 rows of width 0": ("embedding", "e.safetensors", _claim("weight", [HUGE, 0], HUGE, 0)),
    "a file-backed table of 10**12 rows of width 0": ("table", "t.safetensors", _claim("weight", [HUGE, 0], HUGE, 0)),
    "a quantized config of 10**12 rows": ("quantized", "q.safetensors", _quantized_rows),
    "sharded rows of width 0": ("sharded", "sharded", _sharded_rows),
}


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_header_claiming_a_huge_table_is_refused_allocating_nothing(made, claim):
    name, target, edit = CLAIMS[claim]
    with copy_of(made, name) as (folder, read):
        original = read.read_bytes() if read.is_file() else b""
        if (folder / target).is_dir():
            edit(folder / target)
        else:
            _header_edited(folder / target, edit)
        assert check(name, folder, read, original).startswith("refused")

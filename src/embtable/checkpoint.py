"""safetensors files: named arrays plus string metadata.

Writing goes through the `safetensors` package, so files are what the ecosystem loads.
Reading is done here, because safetensors' NumPy loader refuses bfloat16; the format is a
little-endian u64 header length, a JSON header, then the raw bytes of each tensor. Every
field is checked, so a damaged file raises `SerializationError` instead of loading garbage.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from .dtype import DType
from .errors import SerializationError

_MAX_HEADER = 100 * 1024 * 1024


def write(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write `arrays` and `metadata` to `path`, atomically: a failed write leaves no file
    and an existing file untouched."""
    path = os.fspath(path)
    contiguous = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    os.close(handle)
    try:
        save_file(contiguous, temporary, metadata=metadata)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would be a surprise
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass(frozen=True)
class Stored:
    """Where one tensor's bytes are in a safetensors file: from byte `offset` (of the file),
    little-endian `dtype` values of `shape`, row-major."""

    dtype: DType
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: a huge shape does not wrap to 0


def layout(path: str | os.PathLike) -> tuple[dict[str, Stored], dict[str, str]]:
    """Where each tensor of the safetensors file at `path` is, and its metadata, every field
    checked (`SerializationError`, also for a folder: a sharded checkpoint without its
    manifest)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise SerializationError(f"{path!r} is a folder, not a safetensors file (nor a sharded table's checkpoint: it "
                                 f"has no manifest)")
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        header, data_start = _read_header(file, size, path)
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SerializationError(f"{path!r}: __metadata__ must map names to strings")
    return {name: _stored(name, entry, data_start, size, path) for name, entry in header.items()}, metadata


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays (read-only, memory-mapped) and metadata in the safetensors file at
    `path`."""
    stored, metadata = layout(path)
    return {name: _mapped(path, entry) for name, entry in stored.items()}, metadata


def write_header(file: Any, tensors: dict[str, tuple[DType, tuple[int, ...]]], metadata: dict[str, str],
                 align: int = 8) -> dict[str, Stored]:
    """Write the header of a safetensors file for `tensors` (name: dtype and shape, stored
    in this order) at the start of the open binary `file`, padded so that the data starts
    at a multiple of `align` bytes (a power of two >= 8); where each tensor's bytes go.
    The caller writes the data."""
    entries: dict[str, Any] = {"__metadata__": metadata}
    begin = 0
    for name, (dtype, shape) in tensors.items():
        end = begin + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        entries[name] = {"dtype": dtype.name, "shape": list(shape), "data_offsets": [begin, end]}
        begin = end
    text = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    length = -(-(8 + len(text)) // align) * align - 8
    file.write(length.to_bytes(8, "little") + text.ljust(length, b" "))
    return {name: Stored(dtype, tuple(shape), 8 + length + entries[name]["data_offsets"][0])
            for name, (dtype, shape) in tensors.items()}


def parse_json(text: str | bytes) -> Any:
    """`text` as JSON, as the readers of embtable's files take it: `ValueError` for text
    that is not JSON, for nesting too deep for Python's parser (which would raise
    `RecursionError`) and for an object holding a key twice (which value was meant?)."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"a JSON object has the key {key!r} twice")
        found[key] = value
    return found


def _read_header(file: Any, size: int, path: str) -> tuple[dict[str, Any], int]:
    """The JSON header and the file offset where tensor data starts."""
    head = file.read(8)
    length = int.from_bytes(head, "little") if len(head) == 8 else -1
    if not 0 < length <= min(_MAX_HEADER, size - 8):
        raise SerializationError(f"{path!r} is not a safetensors file: its header length {length} "
                                 f"does not fit a file of {size} bytes")
    try:
        header = parse_json(file.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise SerializationError(f"{path!r} is not a safetensors file: bad JSON header ({error})") from None
    if not isinstance(header, dict):
        raise SerializationError(f"{path!r} is not a safetensors file: the header is not a JSON object")
    return header, 8 + length


def _stored(name: str, entry: Any, data_start: int, size: int, path: str) -> Stored:
    try:
        dtype = DType(entry["dtype"])
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if not all(type(d) is int and d >= 0 for d in shape + (begin, end)):  # not bools, not floats
            raise ValueError("shape and offsets must be ints >= 0")
    except (KeyError, TypeError, ValueError) as error:
        raise SerializationError(f"{path!r}: tensor {name!r} has a bad header entry {entry!r} ({error})") from None
    stored = Stored(dtype, shape, data_start + begin)
    if end - begin != stored.nbytes or data_start + end > size:
        raise SerializationError(f"{path!r}: tensor {name!r} of shape {shape} and dtype {dtype.name} "
                                 f"does not fit its byte range [{begin}, {end}) (file has "
                                 f"{size - data_start} data bytes)")
    return stored


def _mapped(path: str | os.PathLike, stored: Stored) -> np.ndarray:
    if stored.nbytes == 0:
        return np.empty(stored.shape, stored.dtype.numpy)
    # Mapped, not read: a caller that copies the values (a load) holds them in memory once.
    array = np.memmap(path, dtype=stored.dtype.numpy.newbyteorder("<"), mode="r", offset=stored.offset,
                      shape=stored.shape)
    return array.astype(stored.dtype.numpy, copy=False)

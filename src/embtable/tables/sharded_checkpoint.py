"""The checkpoint of a sharded table: a folder holding one safetensors file per shard (its
rows in place order, written by the shard's own process) and ``manifest.json``, naming
them. A save writes new files beside the old ones and replaces the manifest last (a
rename), so a save cut short leaves the previous checkpoint whole. Any shard count reads it — each new shard
reads the ranges of places it holds from the files that hold them — and so does a single
process (`SavedShards.weight`)."""

from __future__ import annotations

import json
import os
import uuid
import numpy as np

from .. import checkpoint
from ..dtype import DType
from ..errors import SerializationError
from ..validate import integer
from .durable import plain_name, replace_file
from .placement import Placement

MANIFEST = "manifest.json"
FORMAT = "embtable.sharded/1"


def shard_files(shards: int) -> list[str]:
    """Names for the files of a new checkpoint of `shards` shards, unlike any earlier one's."""
    save = uuid.uuid4().hex[:12]
    return [f"shard-{shard:05d}-{save}.safetensors" for shard in range(shards)]


def is_sharded_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder holding a sharded table's checkpoint."""
    return os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def finish_writing(folder: str, files: list[str], placement: Placement, dtype: DType,
                   metadata: dict[str, str]) -> None:
    """Write the manifest naming `files` (after every one is written): the layer's
    checkpoint `metadata`, the table's shape and dtype, and how its rows were placed; then
    remove the files of earlier checkpoints."""
    manifest = {"format": FORMAT, "metadata": metadata, "num_rows": placement.num_rows, "dtype": dtype.name,
                "multiplier": placement.multiplier, "bounds": placement.bounds.tolist(), "files": files}
    replace_file(os.path.join(folder, MANIFEST), json.dumps(manifest).encode())
    for name in os.listdir(folder):
        if name.startswith("shard-") and name.endswith(".safetensors") and name not in files:
            os.unlink(os.path.join(folder, name))


class SavedShards:
    """A sharded checkpoint being read: its metadata, shape and dtype, checked whole."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.path.abspath(os.fspath(folder))  # the shards' processes read it: not relative to here
        try:
            with open(os.path.join(self.folder, MANIFEST)) as file:
                manifest = checkpoint.parse_json(file.read())
            if manifest["format"] != FORMAT:
                raise ValueError(f"format {manifest['format']!r}, expected {FORMAT!r}")
            self.metadata: dict[str, str] = dict(manifest["metadata"])
            if not all(isinstance(value, str) for value in self.metadata.values()):
                raise ValueError("its metadata must map names to strings")
            self.dtype = DType[manifest["dtype"]]
            self._placement = Placement(integer("num_rows", manifest["num_rows"], 1), len(manifest["files"]))
            if (self._placement.multiplier != manifest["multiplier"]
                    or self._placement.bounds.tolist() != manifest["bounds"]):
                raise ValueError("its rows were placed otherwise than this version places them")
            if not all(plain_name(name) for name in manifest["files"]):
                raise ValueError(f"files {manifest['files']!r} must be names of files in the folder")
            self._files = [os.path.join(self.folder, name) for name in manifest["files"]]
        except (OSError, KeyError, TypeError, ValueError) as error:
            raise SerializationError(f"{self.folder!r} is not a sharded table checkpoint: {error}") from None
        self.dim = self._check_files()

    @property
    def shape(self) -> tuple[int, int]:
        return self._placement.num_rows, self.dim

    def pieces(self, low: int, high: int) -> list[tuple[str, int, int, int]]:
        """Where places ``low:high`` of the permuted row space are: ``(file, first row in
        it, count, first of the places)`` per saved file that holds some, in order."""
        bounds = self._placement.bounds
        found = []
        for shard, path in enumerate(self._files):
            start, stop = max(low, int(bounds[shard])), min(high, int(bounds[shard + 1]))
            if start < stop:
                found.append((path, start - int(bounds[shard]), stop - start, start - low))
        return found

    def weight(self) -> np.ndarray:
        """The whole table, in row order, read into this process."""
        table = np.empty(self.shape, self.dtype.numpy)
        for shard, path in enumerate(self._files):
            table[self._placement.rows_of(shard)] = saved_rows(path, 0, self._placement.size_of(shard))
        return table

    def _check_files(self) -> int:
        """Every file's ``weight`` of its shard's row count, one width (at least 1: the files'
        size then bounds the row count) and the dtype: the width."""
        widths = set()
        for shard, path in enumerate(self._files):
            try:
                stored, _ = checkpoint.layout(path)
            except FileNotFoundError:
                raise SerializationError(f"{self.folder!r} has no file {os.path.basename(path)!r}, which its "
                                         f"manifest names") from None
            weight = stored.get("weight")
            if (weight is None or len(weight.shape) != 2 or weight.shape[0] != self._placement.size_of(shard)
                    or weight.shape[1] < 1 or weight.dtype != self.dtype):
                raise SerializationError(f"{path!r} does not hold shard {shard} of the checkpoint "
                                         f"{self.folder!r}: {self._placement.size_of(shard)} rows of {self.dtype.name}")
            widths.add(weight.shape[1])
        if len(widths) != 1:
            raise SerializationError(f"the shards of {self.folder!r} have rows of different widths {sorted(widths)}")
        return widths.pop()


def saved_rows(path: str, start: int, count: int) -> np.ndarray:
    """Rows ``start:start + count`` of the ``weight`` of the checkpoint file `path`."""
    arrays, _ = checkpoint.read(path)
    return np.array(arrays["weight"][start:start + count])


"""The checkpoint of a sharded table: a folder holding one safetensors file per shard (its
rows in place order, written by the shard's own process) and ``manifest.json``, written
last, so a folder without one is no checkpoint. Any shard count reads it — each new shard
reads the ranges of places it holds from the files that hold them — and so does a single
process (`SavedShards.weight`)."""

from __future__ import annotations

import json
import os
import numpy as np

from .. import checkpoint
from ..dtype import DType
from ..errors import SerializationError
from .placement import Placement

MANIFEST = "manifest.json"
FORMAT = "embtable.sharded/1"


def shard_file(shard: int) -> str:
    """The name of shard `shard`'s file in the folder."""
    return f"shard-{shard:05d}.safetensors"


def is_sharded_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder holding a sharded table's checkpoint."""
    return os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def start_writing(folder: str, shards: int) -> None:
    """Make `folder` ready for a new checkpoint of `shards` files: created if missing, its
    manifest removed first (a save cut short leaves no checkpoint, never a mixed one), and
    the files of an earlier one with more shards removed."""
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(os.path.join(folder, MANIFEST)):
        os.unlink(os.path.join(folder, MANIFEST))
    kept = {shard_file(k) for k in range(shards)}
    for name in os.listdir(folder):
        if name.startswith("shard-") and name.endswith(".safetensors") and name not in kept:
            os.unlink(os.path.join(folder, name))


def finish_writing(folder: str, placement: Placement, dtype: DType, metadata: dict[str, str]) -> None:
    """Write the manifest (after every shard's file): the layer's checkpoint `metadata`, the
    table's shape and dtype, and how its rows were placed."""
    manifest = {"format": FORMAT, "metadata": metadata, "num_rows": placement.num_rows, "dtype": dtype.name,
                "multiplier": placement.multiplier, "bounds": placement.bounds.tolist(),
                "files": [shard_file(k) for k in range(placement.shards)]}
    temporary = os.path.join(folder, MANIFEST + ".tmp")
    with open(temporary, "w") as file:
        json.dump(manifest, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, os.path.join(folder, MANIFEST))


class SavedShards:
    """A sharded checkpoint being read: its metadata, shape and dtype, checked whole."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.fspath(folder)
        try:
            with open(os.path.join(self.folder, MANIFEST)) as file:
                manifest = json.load(file)
            if manifest["format"] != FORMAT:
                raise ValueError(f"format {manifest['format']!r}, expected {FORMAT!r}")
            self.metadata: dict[str, str] = dict(manifest["metadata"])
            self.dtype = DType[manifest["dtype"]]
            self._placement = Placement(int(manifest["num_rows"]), len(manifest["files"]))
            if (self._placement.multiplier != manifest["multiplier"]
                    or self._placement.bounds.tolist() != manifest["bounds"]):
                raise ValueError("its rows were placed otherwise than this version places them")
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
            table[self._placement.rows_of(shard)] = read_rows(path, 0, self._placement.size_of(shard))
        return table

    def _check_files(self) -> int:
        """Every file's ``weight`` of its shard's row count, one width and the dtype: the
        width."""
        widths = set()
        for shard, path in enumerate(self._files):
            stored, _ = checkpoint.layout(path)
            weight = stored.get("weight")
            if (weight is None or len(weight.shape) != 2 or weight.shape[0] != self._placement.size_of(shard)
                    or weight.dtype != self.dtype):
                raise SerializationError(f"{path!r} does not hold shard {shard} of the checkpoint "
                                         f"{self.folder!r}: {self._placement.size_of(shard)} rows of {self.dtype.name}")
            widths.add(weight.shape[1])
        if len(widths) != 1:
            raise SerializationError(f"the shards of {self.folder!r} have rows of different widths {sorted(widths)}")
        return widths.pop()


def read_rows(path: str, start: int, count: int) -> np.ndarray:
    """Rows ``start:start + count`` of the ``weight`` of the checkpoint file `path`."""
    arrays, _ = checkpoint.read(path)
    return np.array(arrays["weight"][start:start + count])


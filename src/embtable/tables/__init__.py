"""Table storages: what a table's rows live in (`TableStorage`), one module per kind."""

from ..core import Tensor, keeper_of
from .base import RowRule, TableStorage
from .dense import DenseTable
from .mapped import DEFAULT_CACHE_BYTES, MappedTable
from .sharded import ShardedTable
from .table_files import TableFiles, create_file, state_folder


def storage_of(tensor: Tensor) -> TableStorage:
    """The storage that holds `tensor`'s values, through which optimizers, moves and loads
    change them: the `MappedTable` or `ShardedTable` keeping a file-backed or sharded
    table's weight, else the tensor's own array (`DenseTable`)."""
    keeper = keeper_of(tensor)
    return keeper if isinstance(keeper, (MappedTable, ShardedTable)) else DenseTable(tensor)


__all__ = ["DEFAULT_CACHE_BYTES", "DenseTable", "MappedTable", "RowRule", "ShardedTable", "TableFiles",
           "TableStorage", "create_file", "state_folder", "storage_of"]

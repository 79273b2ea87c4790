"""Table storages: what a table's rows live in (`TableStorage`), one module per kind."""

from ..core import Tensor
from .base import RowRule, TableStorage
from .dense import DenseTable


def storage_of(tensor: Tensor) -> TableStorage:
    """The storage that holds `tensor`'s values, through which optimizers, moves and loads
    change them. Every tensor's values are in memory today (`DenseTable`); a kind of table
    that keeps its rows elsewhere will link its weight to its storage, found here."""
    return DenseTable(tensor)


__all__ = ["DenseTable", "RowRule", "TableStorage", "storage_of"]

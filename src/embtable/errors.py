"""The errors embtable raises on purpose.

Each class derives from `Error` and from the built-in exception that fits, so that both
``except et.Error`` and ordinary clauses such as ``except IndexError`` catch it. An operation
that raises one of these has changed nothing.
"""


class Error(Exception):
    """Base class of every error embtable raises on purpose."""


class IndexOutOfRangeError(Error, IndexError):
    """An index outside ``[0, num_embeddings)``."""


class DTypeError(Error, TypeError):
    """A tensor or argument of the wrong dtype (float indices, integer weights, ...)."""


class ShapeError(Error, ValueError):
    """Shapes that do not fit."""


class InvalidArgumentError(Error, ValueError):
    """A bad argument value (``padding_idx`` out of range, ``max_norm <= 0``, ...)."""


class DeviceError(Error, RuntimeError):
    """An unavailable device, or tensors on different devices."""


class SerializationError(Error, ValueError):
    """A file that cannot be read as what it claims to be."""


class ModifiedTensorError(Error, RuntimeError):
    """A backward needs a tensor that was modified in place after the forward used it."""


class ShardLostError(Error, RuntimeError):
    """A shard of a sharded table that cannot be brought back: what it would be restored
    from was lost with its machine."""

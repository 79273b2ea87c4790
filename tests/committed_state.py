"""Reading an optimizer's committed state back from a file-backed table's files."""

import numpy as np

import embtable as et


def committed_state(path, optimizer, buffers, rows, dtype=np.float32):
    """The state of `optimizer` (its class name) committed with the table at `path`: each
    buffer's values of all `rows` (`buffers`: name -> shape of a row's values), or None
    when no commit holds state of that optimizer."""
    files = et.tables.TableFiles(str(path), writable=False)
    try:
        if not files.has_state(optimizer):
            return None
        state = {name: np.empty((rows, *shape), dtype) for name, shape in buffers.items()}
        everything = np.arange(rows, dtype=np.int64)
        files.read_state(optimizer, everything, state, everything)
        return state
    finally:
        files.close()

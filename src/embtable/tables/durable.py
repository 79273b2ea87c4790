"""Writing small files so that a crash leaves either the old one or the new one whole, the
locks that keep a table's files to one writer, and the names a folder's manifest may give
its files."""

from __future__ import annotations

import fcntl
import os
from typing import Any

NAME_MAX = 255  # bytes in a file name, on Linux's file systems and most others


def replace_file(path: str, data: bytes) -> None:
    """Make `path` hold `data`, durably and atomically: written beside it, flushed to disk,
    renamed over it, and the rename itself flushed."""
    temporary = path + ".tmp"
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    sync_folder(os.path.dirname(os.path.abspath(path)))


def sync_folder(folder: str) -> None:
    """Flush `folder`'s entries (names created, renamed or removed in it) to disk."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def try_lock(file: Any) -> bool:
    """Take the exclusive lock of the open `file` (held until it is closed, or its process
    ends); whether it was free."""
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def plain_name(name: Any) -> bool:
    """Whether `name` (read from a manifest) names a file inside the manifest's folder: a
    string that is neither a path nor "", "." or "..", and that the file system takes as a
    name (no NUL, at most `NAME_MAX` bytes)."""
    if not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name:
        return False
    try:
        encoded = os.fsencode(name)
    except UnicodeError:  # a lone surrogate, which JSON can spell
        return False
    return b"\0" not in encoded and len(encoded) <= NAME_MAX

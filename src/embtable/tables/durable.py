"""Writing small files so that a crash leaves either the old one or the new one whole."""

from __future__ import annotations

import os


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

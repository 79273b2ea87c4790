"""Which word-vector format a file is, from its first bytes: a ``count dim`` header line or
none (GloVe), and after a header, text records or binary ones."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any

from ..errors import SerializationError

FORMATS = ("auto", "word2vec", "word2vec-binary", "glove", "fasttext")
TEXT_WITH_HEADER = ("word2vec", "fasttext")

_MAX_HEADER_DIGITS = 18  # a count or dim longer than this is not a real one (and fits an int64)
# A C0 control character other than tab, newline and carriage return: not in a text line.
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x0c\x0e-\x1f]")
# A number as the vector fields are read: decimal, or nan / inf / infinity (any case).
NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)", re.IGNORECASE)


@dataclass(frozen=True)
class Header:
    """A word2vec / fastText ``.vec`` first line: how many vectors follow, and their length."""

    count: int
    dim: int


def header_of(line: bytes, path: str) -> Header | None:
    """The header `line` (the file's first) holds, or None if it is not two whole numbers
    (then the file has no header). `SerializationError` for a header no file can have."""
    fields = line.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    if any(len(f) > _MAX_HEADER_DIGITS for f in fields):
        raise SerializationError(f"{path}: line 1: the header {show(line)} announces more vectors or a longer "
                                 f"vector than any file holds")
    count, dim = int(fields[0]), int(fields[1])
    if dim == 0:
        raise SerializationError(f"{path}: line 1: the header {show(line)} announces vectors of length 0")
    return Header(count, dim)


def text_record(data: bytes) -> bool:
    """Whether `data` (a file's bytes after its header line) starts with a text record: a
    line of UTF-8 text without control characters, of at least two fields, the last a
    number. A binary record (a word, a space, raw float32) almost never passes: its floats
    would have to read as text ending in a number before their first newline byte."""
    line = data.split(b"\n", 1)[0]
    if _CONTROL.search(line):
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(line, final=b"\n" in data)
    except UnicodeDecodeError:
        return False
    fields = fields_of(text)
    return len(fields) >= 2 and NUMBER.fullmatch(fields[-1]) is not None


def binary_record(data: bytes, dim: int) -> bool:
    """Whether `data` (a file's bytes after its header line) starts with what only a binary
    record holds: after the first word and its space, among the `dim` float32 that follow, a
    byte no text holds (a control character or a byte that is not UTF-8)."""
    data = data.lstrip(b"\n")
    space = data.find(b" ")
    if space <= 0:
        return False
    floats = data[space + 1:space + 1 + 4 * dim]
    if _CONTROL.search(floats):
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(floats, final=False)  # a character cut at the end is fine
    except UnicodeDecodeError:
        return True
    return False


def fields_of(line: str) -> list[str]:
    """A text record's fields: separated by ASCII spaces or tabs, as gensim and the word2vec C
    tool read them (a word may hold any other character); a final carriage return dropped."""
    return [f for f in line.rstrip("\r").replace("\t", " ").split(" ") if f]


def show(line: Any) -> str:
    """A line, or its start, quoted for an error message."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.rstrip("\r\n")
    return repr(text if len(text) <= 60 else text[:57] + "...")

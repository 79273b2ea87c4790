"""Pretrained word vectors: word2vec text and binary files, GloVe and fastText ``.vec`` text.

`load_word_vectors` reads them into ``(words, Embedding)``; `save_word_vectors` writes the
word2vec formats, which gensim's ``KeyedVectors.load_word2vec_format`` reads. A malformed file
raises `SerializationError` naming the 1-based line (the header is line 1).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, BinaryIO, Sequence

import numpy as np

from ..device import DeviceLike
from ..dtype import DTypeLike
from ..errors import InvalidArgumentError, SerializationError
from ..nn import Embedding
from ..validate import integer

FORMATS = ("auto", "word2vec", "word2vec-binary", "glove", "fasttext")
_CHUNK = 1 << 24  # bytes of text parsed at a time
_PROGRESS_FROM = 1 << 26  # files this large show a progress bar while they load


def load_word_vectors(path: str | os.PathLike, *, format: str = "auto", limit: int | None = None,
                      dtype: DTypeLike = None, device: DeviceLike = None,
                      freeze: bool = True) -> tuple[list[str], Embedding]:
    """The words and vectors of a word-vector file, as a list and an `Embedding` (row i is
    the vector of word i).

    `format`: ``"word2vec"`` (text with a ``count dim`` header line), ``"word2vec-binary"``,
    ``"glove"`` (text without a header), ``"fasttext"`` (``.vec``: text with a header), or
    ``"auto"`` to tell them apart from the first lines. `limit` keeps only the first rows.
    `dtype` defaults to F32 (the files' precision); `freeze` as in `Embedding.from_pretrained`.
    """
    if format not in FORMATS:
        raise InvalidArgumentError(f"format must be one of {FORMATS}, got {format!r}")
    limit = None if limit is None else integer("limit", limit, 1)
    path = os.fspath(path)
    with open(path, "rb") as file:
        first = file.readline()
        header = _header(first)
        if format == "auto":
            format = _detect(file, header)
        if format == "glove":
            if header is not None:
                raise SerializationError(f"{path}: line 1 is a word2vec header, not a GloVe vector")
            file.seek(0)
            words, vectors = _read_text(file, path, None, limit, first_line=1)
        elif header is None:
            raise SerializationError(f"{path}: line 1 should be a 'count dim' header, got {_show(first)}")
        elif format == "word2vec-binary":
            words, vectors = _read_binary(file, path, header, limit)
        else:
            words, vectors = _read_text(file, path, header, limit, first_line=2)
    if not words:
        raise SerializationError(f"{path}: holds no vectors")
    return words, Embedding.from_pretrained(vectors, freeze=freeze, dtype=dtype, device=device)


def save_word_vectors(path: str | os.PathLike, words: Sequence[str], embedding: Embedding, *,
                      binary: bool = False) -> None:
    """Write `words` and the rows of `embedding` in word2vec format (text, or binary float32)."""
    vectors = embedding.weight.numpy().astype(np.float32)
    words = list(words)
    if len(words) != len(vectors):
        raise InvalidArgumentError(f"{len(words)} words for an embedding table of {len(vectors)} rows")
    for i, word in enumerate(words):
        if not isinstance(word, str) or not word or len(word.split()) != 1 or word.strip() != word:
            raise InvalidArgumentError(f"word {i} ({word!r}) must be a non-empty string without whitespace")
    with open(path, "wb") as file:
        file.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        for word, row in zip(words, vectors):
            if binary:
                file.write(word.encode("utf-8") + b" " + row.astype("<f4").tobytes())
            else:
                file.write((word + " " + " ".join(map(repr, row.tolist())) + "\n").encode("utf-8"))


def _header(line: bytes) -> tuple[int, int] | None:
    fields = line.split()
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


def _detect(file: BinaryIO, header: tuple[int, int] | None) -> str:
    """Text or binary, from the record after the header: text if it decodes as a word and
    numbers (a wrong count is then a text error, found by the text reader)."""
    if header is None:
        return "glove"
    start = file.tell()
    line = file.readline()
    file.seek(start)
    try:
        fields = _fields(line.decode("utf-8"))
        [float(f) for f in fields[1:]]
    except (UnicodeDecodeError, ValueError):
        return "word2vec-binary"
    return "word2vec" if len(fields) >= 2 else "word2vec-binary"


def _fields(line: str) -> list[str]:
    """A text record's fields: separated by ASCII spaces or tabs, as gensim and the word2vec C
    tool read them (a word may hold any other character)."""
    return [f for f in line.rstrip("\r").replace("\t", " ").split(" ") if f]


def _read_text(file: BinaryIO, path: str, header: tuple[int, int] | None, limit: int | None,
               first_line: int) -> tuple[list[str], np.ndarray]:
    """Parse text records in large chunks: each line split in Python (every field count
    checked), all of a chunk's numbers by NumPy's C parser at once; blank lines skipped."""
    count = header[0] if header else None
    wanted = min(x for x in (count, limit) if x is not None) if count is not None or limit else None
    dim = header[1] if header else None
    words: list[str] = []
    blocks: list[np.ndarray] = []
    line_number = first_line
    leftover = b""
    from tqdm import tqdm  # imported when a file is read, not with embtable

    size = os.fstat(file.fileno()).st_size
    bar = tqdm(total=size, initial=file.tell(), unit="B", unit_scale=True, desc="loading vectors",
               disable=size < _PROGRESS_FROM, leave=False)
    while wanted is None or len(words) < wanted:
        chunk = file.read(_CHUNK)
        bar.update(len(chunk))
        data = leftover + chunk
        if not data:
            break
        if chunk:
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                leftover = data
                continue
            data, leftover = data[:cut], data[cut:]
        else:
            leftover = b""
        lines = _decoded(data, path, line_number).split("\n")
        if lines[-1] == "":
            lines.pop()
        numbers: list[str] = []
        where: list[int] = []
        for offset, line in enumerate(lines):
            fields = line.split(" ")  # the common case, checked; anything unusual takes _fields
            if len(fields) != (dim or 0) + 1 or "" in fields or "\t" in line or "\r" in line:
                fields = _fields(line)
            if not fields:
                continue
            if dim is None:
                dim = len(fields) - 1
                if dim < 1:
                    raise SerializationError(f"{path}: line {line_number + offset}: expected a word and "
                                             f"its vector, got {_show(line)}")
            if len(fields) != dim + 1:
                raise SerializationError(f"{path}: line {line_number + offset}: expected a word and {dim} "
                                         f"numbers, got {len(fields)} fields: {_show(line)}")
            words.append(fields[0])
            numbers.extend(fields[1:])
            where.append(line_number + offset)
            if wanted is not None and len(words) == wanted:
                break
        values = _parse_floats(" ".join(numbers))
        if values is None or values.size != len(where) * dim:
            _raise_bad_number(numbers, where, dim, path)
        blocks.append(values.reshape(len(where), dim))
        line_number += len(lines)
        if not chunk:
            break
    bar.close()
    if count is not None and len(words) < min(count, limit or count):
        raise SerializationError(f"{path}: line {line_number}: the header announces {count} vectors, "
                                 f"the file ends after {len(words)}")
    return words, np.concatenate(blocks) if blocks else np.empty((0, dim or 1), np.float32)


def _parse_floats(text: str) -> np.ndarray | None:
    """The whitespace-separated numbers of `text` (NumPy's C parser), or None if one is not."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.fromstring(text, dtype=np.float32, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _decoded(data: bytes, path: str, line_number: int) -> str:
    """`data` as UTF-8 text; otherwise `SerializationError` naming the first bad line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for offset, line in enumerate(data.split(b"\n")):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SerializationError(f"{path}: line {line_number + offset}: not UTF-8 ({error.reason})") from None
    raise AssertionError("unreachable: some line failed to decode")


def _raise_bad_number(numbers: list[str], where: list[int], dim: int, path: str) -> None:
    for position, text in enumerate(numbers):
        try:
            float(text)
        except ValueError:
            raise SerializationError(f"{path}: line {where[position // dim]}: {text!r} is not a number") from None
    raise SerializationError(f"{path}: line {where[0]}: numbers that do not parse")


def _read_binary(file: BinaryIO, path: str, header: tuple[int, int], limit: int | None) -> tuple[list[str], np.ndarray]:
    """word2vec binary records: the word's UTF-8 bytes, a space, `dim` little-endian float32
    (an optional newline before each word, as the original C tool writes)."""
    count, dim = header
    count = min(count, limit) if limit else count
    data = file.read()
    vectors = np.empty((count, dim), np.float32)
    words: list[str] = []
    position, width = 0, 4 * dim
    for i in range(count):
        while data[position:position + 1] == b"\n":
            position += 1
        space = data.find(b" ", position)
        if space < 0 or space + 1 + width > len(data):
            raise SerializationError(f"{path}: record {i + 1} (line {i + 2}) is cut short: the header "
                                     f"announces {header[0]} vectors of {dim} floats")
        try:
            words.append(data[position:space].decode("utf-8"))
        except UnicodeDecodeError as error:
            raise SerializationError(f"{path}: record {i + 1} (line {i + 2}): the word is not UTF-8 "
                                     f"({error.reason})") from None
        vectors[i] = np.frombuffer(data, "<f4", dim, space + 1)
        position = space + 1 + width
    return words, vectors


def _show(line: Any) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.rstrip("\n")
    return repr(text if len(text) <= 60 else text[:57] + "...")

"""Pretrained word vectors: word2vec text and binary files, GloVe and fastText ``.vec`` text,
plain or compressed (gzip, bz2, xz).

`load_word_vectors` reads them into ``(words, Embedding)``; `save_word_vectors` writes the
word2vec formats, which gensim's ``KeyedVectors.load_word2vec_format`` reads. A malformed file
raises `SerializationError` naming the 1-based line (the header is line 1), or for a binary
file the record; a repeated word keeps its first vector and is reported in one
`DuplicateWordWarning`.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..core import Tensor
from ..device import DeviceLike
from ..dtype import DTypeLike
from ..errors import InvalidArgumentError, SerializationError
from ..nn import Embedding
from ..tables.progress import progress_bar
from ..validate import integer
from .binary_records import read_binary
from .formats import FORMATS, TEXT_WITH_HEADER, Header, binary_record, header_of, show, text_record
from .sources import PROGRESS_FROM, VectorSource
from .text_records import read_text
from .vocabulary import Vocabulary
from .writers import replacing, write_binary, write_text


def load_word_vectors(path: str | os.PathLike, *, format: str = "auto", limit: int | None = None,
                      dtype: DTypeLike = None, device: DeviceLike = None, freeze: bool = True,
                      progress: bool = True) -> tuple[list[str], Embedding]:
    """The words and vectors of a word-vector file, as a list and an `Embedding` (row i is
    the vector of word i).

    `format`: ``"word2vec"`` (text with a ``count dim`` header line), ``"word2vec-binary"``,
    ``"glove"`` (text without a header), ``"fasttext"`` (``.vec``: text with a header), or
    ``"auto"`` to tell them apart from the first lines; a format the file is not raises
    `SerializationError` naming the one to pass. Compressed files (gzip, bz2, xz) are
    recognised by their first bytes and read as they are. A word may hold spaces (GloVe
    840B): a line's last `dim` fields are its vector (see `embtable.io.text_records`).
    `limit` keeps only the first records (a repeated word's included). `dtype` defaults
    to F32 (the files' precision); `freeze` as in `Embedding.from_pretrained`. A file of 64
    MiB or more shows a progress bar, unless `progress` is False or ``TQDM_DISABLE`` is set.
    """
    if format not in FORMATS:
        raise InvalidArgumentError(f"format must be one of {FORMATS}, got {format!r}")
    limit = None if limit is None else integer("limit", limit, 1)
    path = os.fspath(path)
    with VectorSource(path, progress) as source:
        head = source.head()
        first_line, _, rest = head.partition(b"\n")
        header = header_of(first_line, path)
        if header is not None and header.count == 0:
            raise SerializationError(f"{path}: holds no vectors (line 1: {show(first_line)})")
        binary = _binary(format, header, first_line, rest, path)
        vocabulary = Vocabulary("record" if binary else "line")
        if binary:
            vectors = read_binary(source.chunks(), path, header, limit, vocabulary)
        else:
            vectors = read_text(source.chunks(), path, header, limit, vocabulary)
    if not vocabulary.words:
        raise SerializationError(f"{path}: holds no vectors")
    vocabulary.warn_of_repeats(path)
    return vocabulary.words, Embedding.from_pretrained(vectors, freeze=freeze, dtype=dtype, device=device)


def _binary(format: str, header: Header | None, first_line: bytes, rest: bytes, path: str) -> bool:
    """Whether the file is binary word2vec, from its `header` (None if it has none) and the
    `rest` of its first bytes; `SerializationError` if it is not the `format` asked for,
    naming the one to pass. Text when its second line reads as a text record, else binary
    when its first record holds bytes no text does (else text, whose reader then names
    what is wrong with the line)."""
    if header is None:
        if format in ("auto", "glove"):
            return False
        raise SerializationError(f"{path}: line 1 should be a 'count dim' header, got {show(first_line)}: a file "
                                 f"without a header loads with format='glove'")
    text = text_record(rest)
    binary = not text and binary_record(rest, header.dim)
    if format == "glove":
        raise SerializationError(f"{path}: line 1 is a 'count dim' header, which GloVe files do not have: load "
                                 f"this file with format={'word2vec-binary' if binary else 'word2vec'!r}")
    if format in TEXT_WITH_HEADER and binary:
        raise SerializationError(f"{path}: line 2 holds binary data, not text: this is a binary word2vec file; "
                                 f"load it with format='word2vec-binary'")
    if format == "word2vec-binary" and text:
        line = rest.partition(b"\n")[0]
        raise SerializationError(f"{path}: line 2 is a text record ({show(line)}): this is a text word2vec file; "
                                 f"load it with format='word2vec'")
    return format == "word2vec-binary" or format == "auto" and binary


def save_word_vectors(path: str | os.PathLike, words: Sequence[str], embedding: Embedding, *,
                      binary: bool = False, progress: bool = True) -> None:
    """Write `words` and the rows of `embedding` in word2vec format: text (each value the
    shortest decimal that reads back as the same float32: see `embtable.io.writers`), or
    binary float32. The file replaces `path` only once it is whole. A table of 64 MiB or
    more shows a progress bar, unless `progress` is False or ``TQDM_DISABLE`` is set."""
    weight = getattr(embedding, "weight", None)
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise InvalidArgumentError(f"expected a table layer (an Embedding) to save, got {type(embedding).__name__}")
    vectors = np.ascontiguousarray(weight.numpy(), dtype=np.float32)
    encoded = _encoded_words(words, len(vectors))
    with replacing(os.fspath(path)) as file, \
            progress_bar(len(vectors), progress and vectors.nbytes >= PROGRESS_FROM, unit=" rows",
                         unit_scale=True, desc="saving vectors", leave=False) as bar:
        file.write(f"{len(vectors)} {vectors.shape[1]}\n".encode())
        (write_binary if binary else write_text)(file, encoded, vectors, bar)


def _encoded_words(words: Sequence[str], rows: int) -> list[bytes]:
    """`words` in UTF-8, checked: one per row, each a distinct non-empty string without
    whitespace (`InvalidArgumentError` naming the first that is not)."""
    words = list(words)
    if len(words) != rows:
        raise InvalidArgumentError(f"{len(words)} words for an embedding table of {rows} rows")
    first: dict[str, int] = {}
    for i, word in enumerate(words):
        if not isinstance(word, str) or not word or len(word.split()) != 1 or word.strip() != word:
            raise InvalidArgumentError(f"word {i} ({word!r}) must be a non-empty string without whitespace")
        if first.setdefault(word, i) != i:
            raise InvalidArgumentError(f"word {i} ({word!r}) repeats word {first[word]}: each word needs one row")
    try:
        return [word.encode("utf-8") for word in words]
    except UnicodeEncodeError as error:
        raise InvalidArgumentError(f"a word is not valid Unicode ({error.object!r}: {error.reason})") from None

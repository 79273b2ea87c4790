"""Text word-vector records (word2vec text, GloVe, fastText ``.vec``): one per line, a word
and then its numbers, separated by spaces or tabs.

A word may itself hold spaces (GloVe 840B has ``. . .`` and ``at name@domain.com``): a line
is always its last `dim` fields as the vector, and everything before them, joined by single
spaces, as the word; only the word's first part may then be a number (so that a line with
one number too many is an error, not a word that swallowed a number). Without a header,
`dim` is the most common count of trailing numbers among the first `SAMPLE_LINES` lines
that are not blank, so a first line whose word has spaces does not mislead it.
"""

from __future__ import annotations

import collections
import itertools
import warnings
from typing import Iterable, Iterator

import numpy as np

from ..errors import SerializationError
from .formats import NUMBER, Header, fields_of, show
from .vocabulary import Vocabulary

SAMPLE_LINES = 100  # lines that decide a headerless file's vector length


def read_text(chunks: Iterable[bytes], path: str, header: Header | None, limit: int | None,
              vocabulary: Vocabulary) -> np.ndarray:
    """The vectors of the text records in `chunks` (the whole file's bytes, its header line
    skipped if it has one), the words going to `vocabulary` (repeats dropped, with their
    vectors); `limit` keeps only the first records. Blank lines are skipped. Each line is
    split in Python (every field count checked), a block's numbers parsed at once by
    NumPy's C parser."""
    bounds = [x for x in (header and header.count, limit) if x is not None]
    wanted = min(bounds) if bounds else None
    blocks = _lines(chunks, path)
    if header:
        blocks, dim = _after_first_line(blocks), header.dim
    else:
        dim, blocks = _sampled_dim(blocks, path)
        if dim is None:
            return np.empty((0, 1), np.float32)
    vectors: list[np.ndarray] = []
    records = 0
    line_number = 1
    for first_number, lines in blocks:
        remaining = None if wanted is None else wanted - records
        block, read, line_number = _parse(lines, first_number, dim, remaining, vocabulary, path)
        vectors.append(block)
        records += read
        if records == wanted:
            break
    if header and records < wanted:
        raise SerializationError(f"{path}: line {line_number + 1}: the header announces {header.count} vectors, "
                                 f"the file ends after {records}")
    return np.concatenate(vectors) if vectors else np.empty((0, dim), np.float32)


def _after_first_line(blocks: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
    """`blocks` of lines without the file's first line (its header)."""
    for first_number, lines in blocks:
        yield (2, lines[1:]) if first_number == 1 else (first_number, lines)


def _lines(chunks: Iterable[bytes], path: str) -> Iterator[tuple[int, list[str]]]:
    """The lines of the file, a list of whole lines per chunk read (with the 1-based number
    of its first), decoded from UTF-8 (`SerializationError` naming a line that is not)."""
    number = 1
    pending: list[bytes] = []  # the start of a line that the chunks so far did not end
    for chunk in chunks:
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:
            pending.append(chunk)
            continue
        data = b"".join(pending + [chunk[:cut - 1]])
        pending = [chunk[cut:]]
        yield from _decoded(data, number, path)
        number += data.count(b"\n") + 1
    last = b"".join(pending)
    if last:
        yield from _decoded(last, number, path)


def _decoded(data: bytes, number: int, path: str) -> Iterator[tuple[int, list[str]]]:
    """The lines of `data` (whole lines, the first numbered `number`) decoded from UTF-8;
    if one is not UTF-8, the lines before it, then `SerializationError` naming it."""
    try:
        yield number, data.decode("utf-8").split("\n")
    except UnicodeDecodeError as error:
        good = data.rfind(b"\n", 0, error.start) + 1  # the bad line's start
        if good:
            yield number, data[:good - 1].decode("utf-8").split("\n")
        try:
            data[good:].partition(b"\n")[0].decode("utf-8")
        except UnicodeDecodeError as line_error:  # why the line itself is not, whatever follows it
            error = line_error
        bad = number + data.count(b"\n", 0, good)
        raise SerializationError(f"{path}: line {bad}: not UTF-8 ({error.reason})") from None


def _sampled_dim(blocks: Iterator[tuple[int, list[str]]],
                 path: str) -> tuple[int | None, Iterator[tuple[int, list[str]]]]:
    """The vector length of a file without a header, and its `blocks` of lines from the
    first again: the most common count of trailing numbers (the first field always counted
    as the word) among its first `SAMPLE_LINES` non-blank lines, ties going to the earliest
    line's (None if the file has only blank lines). A line that is not UTF-8 ends the
    sample; its error is raised after the lines before it (errors come in file order)."""
    read: list[tuple[int, list[str]]] = []
    counts: collections.Counter[int] = collections.Counter()
    sampled: list[tuple[int, str]] = []
    rest: Iterator[tuple[int, list[str]]] = blocks
    try:
        for first_number, lines in blocks:
            read.append((first_number, lines))
            for offset, line in enumerate(lines):
                if len(sampled) == SAMPLE_LINES:
                    break
                fields = fields_of(line)
                if fields:
                    sampled.append((first_number + offset, line))
                    trailing = 0
                    while trailing < len(fields) - 1 and NUMBER.fullmatch(fields[-1 - trailing]):
                        trailing += 1
                    if trailing:
                        counts[trailing] += 1
            if len(sampled) == SAMPLE_LINES:
                break
    except SerializationError as error:
        if not sampled:
            raise
        rest = _failing(error)
    if sampled and not counts:
        number, line = sampled[0]
        raise SerializationError(f"{path}: line {number}: expected a word and its vector, got {show(line)}")
    return (counts.most_common(1)[0][0] if counts else None), itertools.chain(read, rest)


def _failing(error: SerializationError) -> Iterator[tuple[int, list[str]]]:
    """An iterator that raises `error` when asked for its first item."""
    yield from ()
    raise error


def _parse(lines: list[str], first_number: int, dim: int, wanted: int | None, vocabulary: Vocabulary,
           path: str) -> tuple[np.ndarray, int, int]:
    """The vectors of `lines` (numbered from `first_number`) of the repeated words dropped,
    how many records were read (at most `wanted`), and the number of the last line read."""
    numbers: list[str] = []
    where: list[int] = []
    repeats: list[int] = []  # records (of `lines`) whose word was read before
    line_number = first_number - 1
    for offset, line in enumerate(lines):
        line_number = first_number + offset
        fields = line.split(" ")  # the common case, checked; anything unusual takes fields_of
        if len(fields) != dim + 1 or "" in fields or "\t" in line or "\r" in line:
            fields = fields_of(line)
            if not fields:
                continue
            if len(fields) != dim + 1:
                try:
                    fields = _spaced_word(fields, dim, line, line_number, path)
                except SerializationError:
                    _parsed_numbers(numbers, where, dim, path)  # a bad number on an earlier line comes first
                    raise
        if not vocabulary.add(fields[0], line_number):
            repeats.append(len(where))
        numbers.extend(fields[1:])
        where.append(line_number)
        if len(where) == wanted:
            break
    values = _parsed_numbers(numbers, where, dim, path)
    return np.delete(values, repeats, axis=0) if repeats else values, len(where), line_number


def _spaced_word(fields: list[str], dim: int, line: str, line_number: int, path: str) -> list[str]:
    """`fields` as a word holding spaces and its `dim` numbers; `SerializationError` if the
    line has too few fields, or too many for its word to be one (a number in it)."""
    parts = fields[:len(fields) - dim]
    if len(fields) < dim + 1 or any(NUMBER.fullmatch(part) for part in parts[1:]):
        raise SerializationError(f"{path}: line {line_number}: expected a word and {dim} numbers, got "
                                 f"{len(fields)} fields: {show(line)}")
    return [" ".join(parts)] + fields[len(parts):]


def _parsed_numbers(numbers: list[str], where: list[int], dim: int, path: str) -> np.ndarray:
    """`numbers` (`dim` per record, read at the lines `where`) as float32 rows;
    `SerializationError` naming the line of the first that is not a number."""
    if not numbers:
        return np.empty((0, dim), np.float32)
    values = _parse_floats(" ".join(numbers))
    if values is None or values.size != len(where) * dim:
        for position, number in enumerate(numbers):
            parsed = _parse_floats(number)
            if parsed is None or parsed.size != 1:
                raise SerializationError(f"{path}: line {where[position // dim]}: {number!r} is not a number")
        raise SerializationError(f"{path}: line {where[0]}: numbers that do not parse")
    return values.reshape(len(where), dim)


def _parse_floats(text: str) -> np.ndarray | None:
    """The whitespace-separated numbers of `text` (NumPy's C parser), or None if one is not
    (a NUL byte, where the C parser would stop, counts as not a number)."""
    if "\x00" in text:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.fromstring(text, dtype=np.float32, sep=" ")
        except (ValueError, DeprecationWarning):
            return None

"""The words of a word-vector file as it is read: each kept at its first occurrence, later
occurrences dropped and reported in one warning."""

from __future__ import annotations

import warnings

_SHOWN = 5  # duplicates named one by one in the warning


class DuplicateWordWarning(UserWarning):
    """A word-vector file holds a word more than once (the first vector is kept)."""


class Vocabulary:
    """The distinct words read so far, in file order, with where each was read."""

    def __init__(self, unit: str) -> None:
        self.words: list[str] = []
        self._first: dict[str, int] = {}
        self._repeats: list[tuple[str, int, int]] = []  # (word, where, where first)
        self._unit = unit  # what a place in the file is called: "line" or "record"

    def add(self, word: str, where: int) -> bool:
        """Add `word`, read at `where`; False (and the word not added) if it is a repeat."""
        first = self._first.setdefault(word, where)
        if first != where:
            self._repeats.append((word, where, first))
            return False
        self.words.append(word)
        return True

    def warn_of_repeats(self, path: str) -> None:
        """Warn (`DuplicateWordWarning`) of the repeated words, if any, naming where the first
        few were read."""
        if not self._repeats:
            return
        named = ", ".join(f"{word!r} at {self._unit} {where} (first at {self._unit} {first})"
                          for word, where, first in self._repeats[:_SHOWN])
        more = f", and {len(self._repeats) - _SHOWN} more" if len(self._repeats) > _SHOWN else ""
        warnings.warn(f"{path}: {len(self._repeats)} repeated word(s), each kept at its first vector and the "
                      f"later ones dropped: {named}{more}", DuplicateWordWarning, stacklevel=3)

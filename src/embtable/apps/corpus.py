"""Text for the demo: the English in the Python standard library's docstrings and comments
(every Python installation has it), or any UTF-8 file. A corpus is a list of sentences, each
a list of lower-case words; context windows never cross a sentence."""

from __future__ import annotations

import ast
import io
import os
import re
import sysconfig
import tokenize
from typing import Iterator

from ..errors import InvalidArgumentError

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"[.!?:;]\s+|\n\s*\n")
_SKIPPED_FOLDERS = {"test", "tests", "idle_test", "encodings", "site-packages", "__pycache__"}


def words(text: str) -> list[str]:
    """The lower-case words of `text` (letters, with inner apostrophes)."""
    return _WORD.findall(text.lower())


def sentences(text: str) -> Iterator[list[str]]:
    """The non-empty sentences of `text`, as word lists."""
    for piece in _SENTENCE_END.split(text):
        found = words(piece)
        if found:
            yield found


def stdlib_corpus() -> list[list[str]]:
    """Sentences from the docstrings and comments of the standard library's modules (test
    folders and `encodings/`, whose tables are noise, left out)."""
    root = sysconfig.get_paths()["stdlib"]
    corpus: list[list[str]] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in _SKIPPED_FOLDERS and not d.startswith("test"))
        for name in sorted(files):
            if name.endswith(".py") and not name.startswith("test_"):
                corpus.extend(_module_sentences(os.path.join(folder, name)))
    return corpus


# A string literal (skipped whole, so a "#" inside one is no comment) or a comment (group 1):
# scanned left to right at C speed, where the tokenize module took most of the demo's
# start-up. It finds what the tokenizer finds in every module of the standard library of
# Python 3.10 to 3.13; it differs on quotes nested inside f-strings (Python 3.12 on) and on
# files whose lines end in a lone CR.
_STRING_OR_COMMENT = re.compile(r"[rRbBuUfF]{0,2}(?:'''(?:\\[\s\S]|[^\\])*?'''" r'|"""(?:\\[\s\S]|[^\\])*?"""'
                                r"|'(?:\\[\s\S]|[^'\\\n])*'" r'|"(?:\\[\s\S]|[^"\\\n])*")' r"|#([^\n]*)")
_SCOPE_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


def _module_sentences(path: str) -> Iterator[list[str]]:
    try:
        with open(path, "rb") as file:
            source = file.read()
        tree = ast.parse(source)
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)  # a coding cookie, else UTF-8
        text = source.decode(encoding, errors="replace")
    except (SyntaxError, ValueError, OSError, LookupError):
        return
    for docstring in _docstrings(tree):
        yield from sentences(docstring)
    comments = [m.group(1) for m in _STRING_OR_COMMENT.finditer(text) if m.group(1) is not None]
    yield from sentences("\n\n".join(comments))


def _docstrings(node: ast.AST) -> Iterator[str]:
    """The docstrings of a module and of the classes and functions in it, walking statements
    only (expressions hold no definitions)."""
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        docstring = ast.get_docstring(node)
        if docstring:
            yield docstring
    for field in _SCOPE_BODIES:
        for child in getattr(node, field, ()):
            yield from _docstrings(child)


def file_corpus(path: str) -> list[list[str]]:
    """Sentences from a UTF-8 text file; `InvalidArgumentError` if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgumentError(f"cannot read the corpus {path!r}: {error}") from None
    return list(sentences(text))

"""`embtable neighbors`: the nearest words of some words, by cosine similarity
(`Embedding.most_similar`), in the vectors a demo run wrote or in any word-vector file."""

from __future__ import annotations

import os

import embtable as et

from ..errors import InvalidArgumentError
from ..nn.nearest import returnable_rows
from ..validate import integer


def show(words: list[str], source: str, k: int = 10) -> None:
    """Print the `k` nearest words of each of `words` in `source`: a folder a demo run wrote
    (``vectors.safetensors`` and ``vocab.txt``) or a word-vector file of any format
    `embtable.io.load_word_vectors` recognises (word2vec text or binary, GloVe, fastText).

    A word absent as written is looked up ignoring case (its first match in the file's
    order, the most frequent in the usual files), and the line says which word was used. A
    word absent either way is skipped with a note. `k` larger than the vocabulary allows
    shows every other word. Raises `InvalidArgumentError` (exit status 2 on the command
    line) when `source` holds no vectors, or none of `words` is in the vocabulary."""
    k = integer("-k", k, 1)
    vocabulary, table = _load(source)
    rows_of, folded_rows = {}, {}
    for row, known in enumerate(vocabulary):  # the first of a repeated word, as a lookup finds it
        rows_of.setdefault(known, row)
        folded_rows.setdefault(known.casefold(), row)
    found = {word: row for word in words
             if (row := rows_of.get(word, folded_rows.get(word.casefold()))) is not None}
    for word in words:
        if word not in found:
            print(f"embtable: {word!r} is not in the vocabulary of {len(vocabulary)} words; skipped")
    if not found:
        raise InvalidArgumentError(f"none of the words {words} is in the vocabulary of {len(vocabulary)} words")
    k = min(k, returnable_rows(table.num_embeddings, table.padding_idx, by_index=True))
    if k == 0:
        raise InvalidArgumentError("the vocabulary holds one word: it has no neighbours")
    rows, scores = table.most_similar(list(found.values()), k)
    for (word, row), near, similarity in zip(found.items(), rows.tolist(), scores.tolist()):
        used = vocabulary[row]
        label = word if used == word else f"{word} (as {used})"
        print(f"{label}: " + ", ".join(f"{vocabulary[i]} ({s:.2f})" for i, s in zip(near, similarity)))


def _load(source: str) -> tuple[list[str], et.nn.Embedding]:
    """The words and vectors of a word-vector file, or of the folder a demo run wrote."""
    if os.path.isfile(source):
        return et.io.load_word_vectors(source)
    try:
        table = et.nn.Embedding.load(os.path.join(source, "vectors.safetensors"))
        with open(os.path.join(source, "vocab.txt"), encoding="utf-8") as file:
            vocabulary = [line.split(" ", 1)[0].rstrip("\n") for line in file]
    except OSError as error:
        raise InvalidArgumentError(f"no demo vectors in {source!r} ({error.strerror}); run `embtable demo` first "
                                   f"or pass --vectors FILE (a word-vector file)") from None
    if len(vocabulary) != table.num_embeddings:
        raise InvalidArgumentError(f"{source!r} holds {table.num_embeddings} vectors but {len(vocabulary)} words "
                                   f"in vocab.txt")
    return vocabulary, table

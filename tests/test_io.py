"""Word-vector files against gensim (the oracle) in both directions, the other formats,
compressed files, words with spaces, repeated words, malformed files, the shortest text
that reads back, progress bars, and DLPack both ways."""

import bz2
import contextlib
import gzip
import io
import lzma
import os
import tempfile

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import embtable as et
from embtable.core import data_of

WORDS = ["the", "naïve", "日本語", "C++", "e=mc²", "émoji🙂", "don't"]


@pytest.fixture
def gensim_vectors():
    kv = KeyedVectors(5)
    kv.add_vectors(WORDS, np.random.default_rng(0).standard_normal((len(WORDS), 5)).astype(np.float32))
    return kv


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("format", ["auto", "explicit"])
def test_files_written_by_gensim_load_exactly(tmp_path, gensim_vectors, binary, format):
    path = tmp_path / ("v.bin" if binary else "v.txt")
    gensim_vectors.save_word2vec_format(path, binary=binary)
    chosen = "auto" if format == "auto" else "word2vec-binary" if binary else "word2vec"
    words, emb = et.io.load_word_vectors(path, format=chosen)
    assert words == WORDS
    assert emb.weight.dtype is et.DType.F32 and not emb.weight.requires_grad
    assert emb.weight.numpy().tobytes() == gensim_vectors.vectors.tobytes()


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_reads_what_we_write(tmp_path, binary):
    emb = et.nn.Embedding(len(WORDS), 4)
    path = tmp_path / "ours"
    et.io.save_word_vectors(path, WORDS, emb, binary=binary)
    kv = KeyedVectors.load_word2vec_format(path, binary=binary)
    assert kv.index_to_key == WORDS
    assert kv.vectors.tobytes() == emb.weight.numpy().tobytes()
    words, again = et.io.load_word_vectors(path)
    assert words == WORDS and again.weight.numpy().tobytes() == emb.weight.numpy().tobytes()


def test_glove_and_fasttext_text(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("cat 0.1 0.2 0.3\ndog -1 2e-3 4\nélan 0 0 1\n", encoding="utf-8")
    words, emb = et.io.load_word_vectors(glove)
    assert words == ["cat", "dog", "élan"]
    np.testing.assert_array_equal(emb.weight.numpy(), np.float32([[0.1, 0.2, 0.3], [-1, 2e-3, 4], [0, 0, 1]]))
    assert et.io.load_word_vectors(glove, format="glove")[0] == words
    vec = tmp_path / "wiki.vec"
    vec.write_text("2 3\ncat 0.1 0.2 0.3 \ndog -1 2e-3 4 \n", encoding="utf-8")  # fastText's trailing spaces
    words, emb = et.io.load_word_vectors(vec, format="fasttext")
    assert words == ["cat", "dog"] and emb.weight.shape == (2, 3)


def test_limit_dtype_device_freeze(tmp_path, gensim_vectors):
    path = tmp_path / "v.txt"
    gensim_vectors.save_word2vec_format(path)
    words, emb = et.io.load_word_vectors(path, limit=3, dtype=et.DType.F64, device="cpu", freeze=False)
    assert words == WORDS[:3] and emb.weight.dtype is et.DType.F64 and emb.weight.requires_grad
    np.testing.assert_array_equal(emb.weight.numpy(), gensim_vectors.vectors[:3])
    binary = tmp_path / "v.bin"
    gensim_vectors.save_word2vec_format(binary, binary=True)
    assert et.io.load_word_vectors(binary, limit=2)[0] == WORDS[:2]


@pytest.mark.parametrize("content, line", [
    ("3 2\na 1 2\nb 1 x\nc 1 2\n", 3),
    ("3 2\na 1 2\nb 1 2\nc 1 2 3\n", 4),
    ("3 2\na 1 2\nb 1 2\n", 4),
    ("2 2\na 1 2\n\xff 1 2\n".encode("latin-1").decode("latin-1"), 3),
    ("cat 1 2\ndog 1\n", 2),
])
def test_malformed_text_names_its_line(tmp_path, content, line):
    path = tmp_path / "bad.txt"
    path.write_bytes(content.encode("latin-1") if "\xff" in content else content.encode("utf-8"))
    with pytest.raises(et.SerializationError, match=rf"line {line}\b"):
        et.io.load_word_vectors(path)


def test_malformed_binary_and_other_errors(tmp_path, gensim_vectors):
    path = tmp_path / "v.bin"
    gensim_vectors.save_word2vec_format(path, binary=True)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(et.SerializationError, match=r"line 8"):
        et.io.load_word_vectors(cut)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(et.SerializationError):
        et.io.load_word_vectors(empty)
    with pytest.raises(et.InvalidArgumentError):
        et.io.load_word_vectors(path, format="xml")
    emb = et.nn.Embedding(2, 2)
    with pytest.raises(et.InvalidArgumentError, match="whitespace"):
        et.io.save_word_vectors(tmp_path / "x", ["a b", "c"], emb)
    with pytest.raises(et.InvalidArgumentError, match="2 rows"):
        et.io.save_word_vectors(tmp_path / "x", ["a"], emb)


def test_dlpack_both_ways_share_memory():
    t = et.Tensor([1.0, 2.0, 3.0])
    from_ours = np.from_dlpack(t)
    as_torch = torch.from_dlpack(t)
    data_of(t)[0] = 9.0  # the same memory
    assert from_ours[0] == 9.0 and as_torch[0].item() == 9.0
    source = torch.arange(4, dtype=torch.float64)
    shared = et.from_dlpack(source)
    source[1] = 7.0
    assert shared.tolist() == [0.0, 7.0, 2.0, 3.0] and shared.dtype is et.DType.F64
    array = np.ones(3, np.float32)
    view = et.from_dlpack(array)
    array[2] = 5.0
    assert view.tolist() == [1.0, 1.0, 5.0]
    copied = et.Tensor(array)
    array[0] = 4.0
    assert copied.tolist() == [1.0, 1.0, 5.0]


@pytest.mark.parametrize("content, line", [
    ("3 2\na 1 2\nb 1 2 3\nc 4\n", 3),   # a long and a short line would cancel out in a total
    ("a 1 2\nb 1 2 3\nc 4\n", 2),
])
def test_every_line_is_counted(tmp_path, content, line):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(et.SerializationError, match=rf"line {line}: expected a word and 2 numbers"):
        et.io.load_word_vectors(path)


def test_text_variants_that_gensim_and_the_c_tool_accept(tmp_path):
    long_word = "w" * 300
    path = tmp_path / "long.txt"
    path.write_text(f"3 2\n{long_word} 1 2\nx 3 4\ny 5 6\n", encoding="utf-8")
    assert et.io.load_word_vectors(path, limit=2)[0] == [long_word, "x"]
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"2 2\r\na\t1\t2\r\nb 3  4\r\n\r\n")
    words, emb = et.io.load_word_vectors(crlf)
    assert words == ["a", "b"] and emb.weight.numpy().tolist() == [[1, 2], [3, 4]]
    glove = tmp_path / "glove.txt"
    glove.write_text("a\u00a0b 1 2\nc 3 4\n\n", encoding="utf-8")  # a non-breaking space stays in the word
    assert et.io.load_word_vectors(glove)[0] == ["a\u00a0b", "c"]
    empty_header = tmp_path / "zero.txt"
    empty_header.write_text("0 2\n", encoding="utf-8")
    with pytest.raises(et.SerializationError, match="no vectors"):
        et.io.load_word_vectors(empty_header)


def test_c_tool_binary_with_newlines(tmp_path):
    vectors = np.arange(6, dtype="<f4").reshape(2, 3)
    path = tmp_path / "c.bin"
    path.write_bytes(b"2 3\n" + b"".join(w + b" " + v.tobytes() + b"\n" for w, v in zip([b"x", b"y"], vectors)))
    words, emb = et.io.load_word_vectors(path)
    assert words == ["x", "y"] and emb.weight.numpy().tolist() == vectors.tolist()


def test_sparse_half_precision_optimizer_step_on_every_backend():
    emb = et.nn.Embedding.from_pretrained(np.ones((4, 2)), freeze=False, sparse=True, dtype="float16")
    opt = et.optim.SGD(emb.parameters(), lr=0.5)
    emb([1]).sum().backward()
    opt.step()
    assert emb.weight.numpy().astype(np.float32).tolist() == [[1, 1], [0.5, 0.5], [1, 1], [1, 1]]


COMPRESSIONS = {"gzip": (gzip.compress, ".gz"), "bz2": (bz2.compress, ".bz2"), "xz": (lzma.compress, ".xz")}
KINDS = {"text": ("word2vec", {}), "binary": ("word2vec-binary", {"binary": True}),
         "glove": ("glove", {"write_header": False})}


def _gensim_file(kv, path, kind):
    kv.save_word2vec_format(path, **KINDS[kind][1])
    return path


def _gensim_load(path, kind):
    return KeyedVectors.load_word2vec_format(path, binary=kind == "binary", no_header=kind == "glove")


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_compressed_files_are_recognised_by_their_bytes(tmp_path, gensim_vectors, compression, kind):
    compress, extension = COMPRESSIONS[compression]
    named = tmp_path / f"v{extension}"  # gensim picks the decompressor by the file's name
    named.write_bytes(compress(_gensim_file(gensim_vectors, tmp_path / "v", kind).read_bytes()))
    misnamed = tmp_path / "v.txt"  # embtable by its first bytes
    misnamed.write_bytes(named.read_bytes())
    oracle = _gensim_load(named, kind)
    for format in ["auto", KINDS[kind][0]]:
        words, emb = et.io.load_word_vectors(misnamed, format=format)
        assert words == oracle.index_to_key and emb.weight.numpy().tobytes() == oracle.vectors.tobytes()
    assert et.io.load_word_vectors(misnamed, limit=2)[0] == oracle.index_to_key[:2]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_damaged_compressed_data_raises_serialization_error(tmp_path, gensim_vectors, compression):
    compress, _ = COMPRESSIONS[compression]
    data = compress(_gensim_file(gensim_vectors, tmp_path / "v", "text").read_bytes())
    damaged = tmp_path / "damaged"
    damaged.write_bytes(data[:-9])
    with pytest.raises(et.SerializationError, match=f"{compression} data is damaged"):
        et.io.load_word_vectors(damaged)


@pytest.mark.parametrize("chunk", [1, 7])
@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_files_read_in_small_chunks_load_the_same(tmp_path, monkeypatch, rng, kind, compressed, chunk):
    kv = KeyedVectors(5)
    kv.add_vectors([f"w{i}" for i in range(40)] + WORDS, rng.standard_normal((47, 5)).astype(np.float32))
    path = _gensim_file(kv, tmp_path / "v", kind)
    if compressed:
        path.write_bytes(gzip.compress(path.read_bytes()))
    monkeypatch.setattr(et.io.sources, "CHUNK", chunk)
    words, emb = et.io.load_word_vectors(path)
    assert words == kv.index_to_key and emb.weight.numpy().tobytes() == kv.vectors.tobytes()
    assert et.io.load_word_vectors(path, limit=45)[0] == kv.index_to_key[:45]


SPACED = [". . .", "cat", "at name@domain.com", "2 people", "- -", "dog"]


@pytest.mark.parametrize("header", [False, True])
def test_words_with_spaces_are_all_but_the_last_dim_fields(tmp_path, rng, header):
    vectors = rng.standard_normal((len(SPACED), 4)).astype(np.float32)
    lines = [f"{word} {' '.join(map(str, row))}" for word, row in zip(SPACED, vectors)]  # str: shortest float32
    path = tmp_path / "glove.840B.txt"
    path.write_text(("6 4\n" if header else "") + "\n".join(lines) + "\n", encoding="utf-8")
    words, emb = et.io.load_word_vectors(path, format="word2vec" if header else "glove")
    assert words == SPACED and emb.weight.numpy().tobytes() == vectors.tobytes()


def test_the_length_of_headerless_vectors_is_what_most_lines_end_with(tmp_path):
    path = tmp_path / "spaced.txt"
    path.write_text("a b c 1 2\n. . . 3 4\nd 5 6\n", encoding="utf-8")  # most lines have more fields than 3
    words, emb = et.io.load_word_vectors(path)
    assert words == ["a b c", ". . .", "d"] and emb.weight.numpy().tolist() == [[1, 2], [3, 4], [5, 6]]
    path.write_text("x 1 2\n1 2 3 4\ny 5 6\n", encoding="utf-8")  # a number in a word's later part
    with pytest.raises(et.SerializationError, match=r"line 2: expected a word and 2 numbers, got 4 fields"):
        et.io.load_word_vectors(path)


def _records(words, vectors, binary):
    if binary:
        return b"".join(w.encode() + b" " + v.astype("<f4").tobytes() for w, v in zip(words, vectors))
    return "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in zip(words, vectors)).encode()


@pytest.mark.parametrize("binary", [False, True])
def test_repeated_words_keep_their_first_vector_and_warn(tmp_path, rng, binary):
    words = ["a", "b", "a", "c", "b", "b"]
    vectors = rng.standard_normal((len(words), 3)).astype(np.float32)
    path = tmp_path / "repeats"
    path.write_bytes(f"{len(words)} 3\n".encode() + _records(words, vectors, binary))
    oracle = KeyedVectors.load_word2vec_format(path, binary=binary)
    kept = list(oracle.key_to_index)  # (gensim 4.4 leaves None keys and zero rows after them in text files)
    with pytest.warns(et.io.DuplicateWordWarning) as caught:
        loaded, emb = et.io.load_word_vectors(path)
    assert loaded == kept == ["a", "b", "c"]
    assert emb.weight.numpy().tobytes() == oracle.vectors[:len(kept)].tobytes()
    unit, first = ("record", 1) if binary else ("line", 2)  # the header is line 1
    message = str(caught[0].message)
    assert len(caught) == 1 and "3 repeated word(s)" in message
    assert f"'a' at {unit} {first + 2} (first at {unit} {first})" in message
    assert f"'b' at {unit} {first + 5} (first at {unit} {first + 1})" in message


@pytest.mark.parametrize("kind, format, right", [
    ("binary", "word2vec", "word2vec-binary"), ("binary", "fasttext", "word2vec-binary"),
    ("binary", "glove", "word2vec-binary"), ("text", "word2vec-binary", "word2vec"), ("text", "glove", "word2vec"),
    ("glove", "word2vec", "glove"), ("glove", "word2vec-binary", "glove"), ("glove", "fasttext", "glove"),
])
def test_a_format_the_file_is_not_names_the_one_to_pass(tmp_path, gensim_vectors, kind, format, right):
    path = _gensim_file(gensim_vectors, tmp_path / "v", kind)
    with pytest.raises(et.SerializationError, match=f"format='{right}'"):
        et.io.load_word_vectors(path, format=format)
    words, emb = et.io.load_word_vectors(path, format=right)
    assert words == WORDS and emb.weight.numpy().tobytes() == gensim_vectors.vectors.tobytes()


def _significant_digits(text):
    mantissa = text.lstrip("-").split("e")[0].replace(".", "").strip("0")
    return len(mantissa)


def _check_shortest(text, value):
    """`text` reads back as `value` (through a double, as every reader does), and no decimal
    of fewer significant digits does: the nearest one of one digit fewer does not, nor has
    NumPy's shortest form (Dragon4) fewer digits."""
    assert np.float32(float(text)).tobytes() == value.tobytes()
    digits = _significant_digits(text)
    if digits > 1:
        fewer = f"{float(value):.{digits - 2}e}"
        assert np.float32(float(fewer)) != value, (text, fewer)
    assert digits <= _significant_digits(np.format_float_scientific(value, unique=True)), text


EDGES = [0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 1.1754944e-38, 3.4028235e38, -3.4028235e38, 1e-14, 9.999999e-15,
         1.0000001e-14, 1e23, 9.999999e22, 1.0000001e23, 0.1, 1 / 3, 16777216.0, 100.0, 1000.0, 123456.79, 1e-5]
FLOATS32 = st.one_of(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(EDGES))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=FLOATS32))
def test_text_round_trips_bit_for_bit_with_the_shortest_digits(values):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "v.txt")
        words = [f"w{i}" for i in range(len(values))]
        et.io.save_word_vectors(path, words, et.nn.Embedding.from_pretrained(values))
        loaded, emb = et.io.load_word_vectors(path)
        assert loaded == words and emb.weight.numpy().view(np.uint32).tolist() == values.view(np.uint32).tolist()
        assert KeyedVectors.load_word2vec_format(path).vectors.tobytes() == values.tobytes()
        with open(path, encoding="utf-8") as file:
            rows = [line.split()[1:] for line in file.read().splitlines()[1:]]
    for row, texts in zip(values, rows):
        for value, text in zip(row, texts):
            _check_shortest(text, value)


def test_every_kind_of_float32_round_trips(tmp_path, rng):
    values = rng.integers(0, 2**32, 25_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = values[np.isfinite(values)][:24_000].reshape(-1, 12)  # every exponent, subnormals included
    path = tmp_path / "v.txt"
    et.io.save_word_vectors(path, [f"w{i}" for i in range(len(values))], et.nn.Embedding.from_pretrained(values))
    assert et.io.load_word_vectors(path)[1].weight.numpy().tobytes() == values.tobytes()
    texts = path.read_text().split("\n", 1)[1].split()
    for value, text in list(zip(values.ravel(), [t for t in texts if not t.startswith("w")]))[::20]:
        _check_shortest(text, value)


def test_nan_and_infinities_are_written_as_gensim_reads_them(tmp_path):
    negative_nan = np.uint32(0xFFC00001).view(np.float32)  # sign and payload: not kept, by design
    values = np.float32([[np.nan, np.inf, -np.inf], [negative_nan, -0.0, 1.5]])
    path = tmp_path / "v.txt"
    et.io.save_word_vectors(path, ["a", "b"], et.nn.Embedding.from_pretrained(values))
    assert path.read_text() == "2 3\na nan inf -inf\nb nan -0 1.5\n"
    for loaded in [et.io.load_word_vectors(path)[1].weight.numpy(), KeyedVectors.load_word2vec_format(path).vectors]:
        assert np.array_equal(np.isnan(loaded), np.isnan(values))
        assert loaded[~np.isnan(values)].tobytes() == values[~np.isnan(values)].tobytes()


def test_text_files_are_no_larger_than_gensims(tmp_path, rng):
    vectors = (rng.standard_normal((3000, 50)) / 7).astype(np.float32)
    words = [f"w{i}" for i in range(len(vectors))]
    kv = KeyedVectors(50)
    kv.add_vectors(words, vectors)
    kv.save_word2vec_format(tmp_path / "gensim.txt")
    et.io.save_word_vectors(tmp_path / "ours.txt", words, et.nn.Embedding.from_pretrained(vectors))
    assert os.path.getsize(tmp_path / "ours.txt") <= os.path.getsize(tmp_path / "gensim.txt")


def test_a_save_that_fails_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "v.txt"
    path.write_text("earlier", encoding="utf-8")
    emb = et.nn.Embedding(3, 2)
    with pytest.raises(et.InvalidArgumentError, match=r"word 2 \('a'\) repeats word 0"):
        et.io.save_word_vectors(path, ["a", "b", "a"], emb)
    with pytest.raises(et.InvalidArgumentError, match="not valid Unicode"):
        et.io.save_word_vectors(path, ["a", "b", "\ud800"], emb)

    def failing(file, words, vectors, bar):
        file.write(b"half a line")
        raise OSError("disk full")

    monkeypatch.setattr(et.io.word_vectors, "write_text", failing)
    with pytest.raises(OSError, match="disk full"):
        et.io.save_word_vectors(path, ["a", "b", "c"], emb)
    assert path.read_text(encoding="utf-8") == "earlier" and os.listdir(tmp_path) == ["v.txt"]


def test_word_vector_progress_bars_show_unless_silenced(tmp_path, monkeypatch, capsys, gensim_vectors):
    monkeypatch.setattr(et.io.sources, "PROGRESS_FROM", 0)  # every file counts as large
    monkeypatch.setattr(et.io.word_vectors, "PROGRESS_FROM", 0)
    emb = et.nn.Embedding.from_pretrained(gensim_vectors.vectors)

    def shown(**options):
        et.io.save_word_vectors(tmp_path / "v.txt", WORDS, emb, **options)
        et.io.load_word_vectors(tmp_path / "v.txt", **options)
        return capsys.readouterr().err

    err = shown()
    assert "saving vectors" in err and "loading vectors" in err
    assert shown(progress=False) == ""
    monkeypatch.setenv("TQDM_DISABLE", "0")  # not a value that silences
    assert "loading vectors" in shown()
    monkeypatch.setenv("TQDM_DISABLE", "1")  # read when a bar is made, long after tqdm was imported
    assert shown() == ""


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("layer", [et.nn.Embedding, et.nn.EmbeddingBag])
def test_creating_a_file_backed_table_shows_a_bar_on_a_terminal_unless_silenced(tmp_path, monkeypatch, layer):
    def shown(name, **options):
        terminal = _Terminal()
        with contextlib.redirect_stderr(terminal):
            layer.create(tmp_path / name, 100, 4, **options)
        return terminal.getvalue()

    assert "creating table" in shown("default")
    assert shown("quiet", progress=False) == ""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert shown("silenced") == ""

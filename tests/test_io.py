"""Word-vector files against gensim (the oracle) in both directions, the other formats,
malformed files, and DLPack both ways."""

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

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

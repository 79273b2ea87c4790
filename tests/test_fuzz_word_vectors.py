"""A fuzzer for the word-vector readers: hypothesis mutates valid files of every format
(word2vec text and binary, fastText ``.vec``, GloVe, GloVe 840B with spaced words; plain and
gzip) with bit flips, truncations, inserted and deleted bytes and replaced header numbers.
Every case must load a well-formed result or raise `SerializationError`: never another
exception, never a hang, never memory far beyond the file's size, and the same outcome
whatever the size of the chunks the file is read in.

CI runs `EXAMPLES` cases per seed file and compression (a few seconds in all); set
``EMBTABLE_FUZZ_EXAMPLES`` for a long run by hand.
"""

import gzip
import os
import signal
import tracemalloc
import zlib
from unittest import mock

import numpy as np
import pytest
from gensim.models import KeyedVectors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embtable as et
from embtable.io import sources

EXAMPLES = int(os.environ.get("EMBTABLE_FUZZ_EXAMPLES", "25"))
TIME_LIMIT_S = 20  # far beyond what a case of a few hundred bytes needs: only a hang reaches it
MEMORY_BASE = 1 << 20  # bytes a load may take beyond a multiple of the file's size
MEMORY_PER_BYTE = 64

WORDS = ["the", "naïve", "日本語", "e=mc²", "don't", "x"]


def _seed_files(folder):
    """Valid files of each kind, as gensim writes them (the GloVe 840B one by hand)."""
    kv = KeyedVectors(3)
    kv.add_vectors(WORDS, np.random.default_rng(5).standard_normal((len(WORDS), 3)).astype(np.float32))
    seeds = {}
    for name, options in [("word2vec", {}), ("word2vec-binary", {"binary": True}), ("glove", {"write_header": False})]:
        path = folder / name
        kv.save_word2vec_format(path, **options)
        seeds[name] = path.read_bytes()
    seeds["fasttext"] = b"".join(line.rstrip(b"\n") + b" \n" for line in seeds["word2vec"].splitlines(keepends=True))
    seeds["glove-840b"] = ". . . 0.5 -1.25 3\n" + seeds["glove"].decode() + "at name@domain.com 1e-3 2 -0\n"
    seeds["glove-840b"] = seeds["glove-840b"].encode()
    return seeds


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return _seed_files(tmp_path_factory.mktemp("seeds"))


HEADER_NUMBERS = st.sampled_from(["0", "1", "2", "3", "6", "7", "1000", str(10**12), str(2**63), str(10**30),
                                  "9" * 5000, "-1", "-3", "x", "3.5", "", "0x10", "1e3", "٣"])


@st.composite
def mutations(draw, data: bytes) -> bytes:
    """`data` after a few random edits."""
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "header", "replace"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "insert":
            piece = draw(st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from(
                [b" ", b"\n", b"\t", b"\r\n", b"\x00", b"\xff", b"\xc3", b"-", b"e", b"nan", b"1e999", b" 1", b"  "])))
            data = data[:at] + piece + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 16)):]
        elif kind == "header":
            rest = data.partition(b"\n")[2]
            data = f"{draw(HEADER_NUMBERS)} {draw(HEADER_NUMBERS)}\n".encode() + rest
        elif kind == "replace" and data:
            data = data[:at] + draw(st.sampled_from([b"\n", b" ", b"0"])) + data[at + 1:]
    return data


class _Hang(Exception):
    pass


def _outcome(path, format, chunk):
    """What loading `path` in chunks of `chunk` bytes gives: ("loaded", words, vector bytes,
    dim) or ("error", message); any other exception propagates."""
    with mock.patch.object(sources, "CHUNK", chunk):
        try:
            words, emb = et.io.load_word_vectors(path, format=format, progress=False)
        except et.SerializationError as error:
            return ("error", str(error))
    weight = emb.weight.numpy()
    assert isinstance(words, list) and all(isinstance(w, str) and w for w in words)
    assert len(set(words)) == len(words) == emb.num_embeddings == weight.shape[0] >= 1
    assert emb.embedding_dim == weight.shape[1] >= 1 and weight.dtype == np.float32
    return ("loaded", words, weight.tobytes(), emb.embedding_dim)


def _check(path, format, size, compressed):
    """Load `path` (`size` bytes, decompressed) within the time and memory bounds, whole and
    in tiny chunks, with the same outcome (the same error message too, but for compressed
    files, where damaged data is found sooner or later than a bad record)."""
    def hang(*_):
        raise _Hang(f"loading took over {TIME_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    tracemalloc.start()
    try:
        whole = _outcome(path, format, sources.CHUNK)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak <= MEMORY_BASE + MEMORY_PER_BYTE * size, f"{peak} bytes taken to read {size}"
        assert _outcome(path, format, 3)[:1 if compressed else 3] == whole[:1 if compressed else 3]
    finally:
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _decompressed_size(data):
    try:
        return len(gzip.decompress(data))
    except (OSError, EOFError, zlib.error):
        return len(data)


KINDS = ["word2vec", "word2vec-binary", "glove", "glove-840b", "fasttext"]
FORMAT_OF = {"glove-840b": "glove"}


@pytest.mark.filterwarnings("ignore::embtable.io.DuplicateWordWarning")  # a repeat is a well-formed outcome
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("kind", KINDS)
def test_mutated_files_load_or_raise_serialization_error(tmp_path, seeds, kind, compressed):
    path = tmp_path / "vectors"
    path.write_bytes(seeds[kind])
    et.io.load_word_vectors(path, progress=False)  # the seed loads (and every lazy import is done)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data(), format=st.sampled_from(["auto", FORMAT_OF.get(kind, kind)]),
           before=st.booleans())
    def case(data, format, before):
        content = seeds[kind]
        if compressed and before:  # damage the text or records, then compress
            content = gzip.compress(data.draw(mutations(content)), mtime=0)
        elif compressed:  # damage the compressed bytes
            content = data.draw(mutations(gzip.compress(content, mtime=0)))
        else:
            content = data.draw(mutations(content))
        path.write_bytes(content)
        _check(path, format, max(len(content), _decompressed_size(content)), compressed)

    case()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("kind", ["word2vec", "word2vec-binary"])
@pytest.mark.parametrize("header", [f"{10**12} 3", f"6 {10**12}", f"{10**18} {10**17}"])
def test_a_header_announcing_huge_tables_allocates_nothing_up_front(tmp_path, seeds, kind, compressed, header):
    content = header.encode() + b"\n" + seeds[kind].partition(b"\n")[2]
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(content) if compressed else content)
    tracemalloc.start()
    try:
        with pytest.raises(et.SerializationError, match=r"(record|line) \d+"):
            et.io.load_word_vectors(path, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= MEMORY_BASE + MEMORY_PER_BYTE * len(content)

"""Nearest rows (`Embedding.most_similar`, SPEC §5) against a float64 NumPy brute force, over
every query form, chunkings down to one row per chunk, ties, padding, zero rows, dtypes, a
file-backed table and threads; and `embtable neighbors` on a GloVe file and a demo folder."""

import re
import threading
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embtable as et
from embtable.apps.cli import main
from embtable.nn import Embedding, nearest
from embtable.tables import MappedTable


def brute_force(table, queries, metric):
    """Every score of every query (rows of `queries`) against every row, in float64."""
    table, queries = np.asarray(table, np.float64), np.atleast_2d(np.asarray(queries, np.float64))
    if metric == "cosine":
        table, queries = unit(table), unit(queries)
    return queries @ table.T


def unit(rows):
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1)


def expected_order(scores, excluded):
    """Per query, every row not in its `excluded` set, best first (score, then lower row)."""
    return [[j for j in np.lexsort((np.arange(line.shape[0]), -line)) if j not in out]
            for line, out in zip(scores, excluded)]


def check(indices, scores, oracle, excluded, k, *, exact=False, atol=1e-12):
    """`indices` / `scores` ([Q, k] arrays) are a right answer for the brute-force `oracle`
    scores ([Q, N]) with the rows `excluded` per query. `exact`: the same rows in the same
    order as the oracle (for data whose scores are exact, ties included); otherwise (scores
    rounded differently) each score is its row's, the scores are as good as the oracle's at
    every rank, and the order is right by the scores returned."""
    assert indices.shape == scores.shape == (len(oracle), k)
    for q, order in enumerate(expected_order(oracle, excluded)):
        best = order[:k]
        if exact:
            assert indices[q].tolist() == best
        assert len(set(indices[q].tolist())) == k and not set(indices[q].tolist()) & excluded[q]
        np.testing.assert_allclose(scores[q], oracle[q, indices[q]], rtol=0, atol=atol)
        np.testing.assert_allclose(scores[q], oracle[q, best], rtol=0, atol=atol)
        ranked = [(-s, i) for s, i in zip(scores[q].tolist(), indices[q].tolist())]
        assert ranked == sorted(ranked)


def results(emb, query, k, metric="cosine"):
    indices, found = emb.most_similar(query, k, metric=metric)
    assert indices.dtype == et.DType.I64 and found.dtype == emb.weight.dtype
    assert indices.device == found.device == emb.weight.device
    return indices.numpy(), found.numpy()


@pytest.fixture
def tiny_chunks(monkeypatch, request):
    """Scratch budgets: one row per chunk, a few rows per chunk, and the default."""
    monkeypatch.setattr(nearest, "CHUNK_BYTES", request.param)
    return request.param


CHUNKS = [1, 700, nearest.CHUNK_BYTES]


@pytest.mark.parametrize("tiny_chunks", CHUNKS, indirect=True)
@pytest.mark.parametrize("dtype, atol", [(et.DType.F64, 1e-12), (et.DType.F32, 2e-6)])
@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("padding_idx", [None, 3])
def test_matches_brute_force_for_every_query_form(rng, tiny_chunks, dtype, atol, metric, padding_idx):
    weights = rng.standard_normal((57, 5))
    emb = Embedding.from_pretrained(weights, padding_idx=padding_idx, dtype=dtype)
    stored = emb.weight.numpy()
    padding = set() if padding_idx is None else {padding_idx}
    k = 7
    for ids in ([11], [0, 56, 3, 11, 11]):
        indices, found = results(emb, ids, k, metric)
        check(indices, found, brute_force(stored, stored[ids], metric), [padding | {i} for i in ids], k,
              atol=atol * 10)
    indices, found = results(emb, 11, k, metric)
    assert indices.shape == (k,)
    check(indices[None], found[None], brute_force(stored, stored[[11]], metric), [padding | {11}], k,
          atol=atol * 10)
    vectors = rng.standard_normal((4, 5))
    for query in (vectors, et.Tensor(vectors, dtype=dtype), vectors.astype(np.float32).tolist()):
        indices, found = results(emb, query, k, metric)
        check(indices, found, brute_force(stored, np.asarray(query, dtype.numpy), metric), [padding] * 4, k,
              atol=atol * 10)
    indices, found = results(emb, vectors[2], k, metric)
    assert indices.shape == (k,)
    check(indices[None], found[None], brute_force(stored, vectors[2].astype(dtype.numpy), metric), [padding],
          k, atol=atol * 10)


@pytest.mark.parametrize("tiny_chunks", CHUNKS, indirect=True)
@pytest.mark.parametrize("dtype", [et.DType.F64, et.DType.F32])
def test_ties_go_to_the_lower_index(tiny_chunks, dtype):
    """Integer rows: every dot product is exact, so duplicate rows tie exactly, and so do
    rows of the same cosine against a query of norm 2 (whose unit vector is exact)."""
    directions = np.array([[1, 0, 2, 1], [0, 3, 1, 0], [-1, 1, 0, 2], [2, 2, -1, 0]])
    weights = np.concatenate([directions[[0, 1, 2, 3, 1, 0, 3, 2, 1, 1]], np.zeros((3, 4)), directions[[0, 2]]])
    emb = Embedding.from_pretrained(weights, dtype=dtype)
    query = np.array([1.0, 1.0, 1.0, 1.0])  # norm 2
    for metric in ("dot", "cosine"):
        indices, found = results(emb, query, 15, metric)
        check(indices[None], found[None], brute_force(weights, query, metric), [set()], 15, exact=True,
              atol=1e-6)
        assert np.all(np.diff(found) <= 0)
    indices, found = results(emb, 1, 14, "dot")  # the row itself (1) is left out; its copies are not
    check(indices[None], found[None], brute_force(weights, weights[[1]], "dot"), [{1}], 14, exact=True)
    assert indices[:3].tolist() == [4, 8, 9] and found[0] == found[2] == 10


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_the_padding_row_is_never_returned(metric):
    weights = np.eye(5)
    weights[2] = [9, 0, 0, 0, 0]  # the padding row: not zeroed by from_pretrained, the best match of row 0
    emb = Embedding.from_pretrained(weights, padding_idx=2, dtype=et.DType.F64)
    indices, found = results(emb, [1.0, 0, 0, 0, 0], 4, metric)
    assert indices.tolist() == [0, 1, 3, 4]
    indices, _ = results(emb, 0, 3, metric)
    assert indices.tolist() == [1, 3, 4]
    indices, _ = results(emb, 2, 4, metric)  # the padding row as the query: left out once
    assert indices.tolist() == [0, 1, 3, 4]
    with pytest.raises(et.InvalidArgumentError, match=r"k=4 is more than the 3 rows.*5 rows, less the padding "
                                                      r"row and the query's own row"):
        emb.most_similar(0, 4)
    with pytest.raises(et.InvalidArgumentError, match=r"k=5 is more than the 4 rows.*less the padding row\)"):
        emb.most_similar([1.0, 0, 0, 0, 0], 5)


def test_zero_rows_and_zero_queries_have_cosine_zero():
    weights = np.array([[1.0, 0], [-1, 0], [0, 0], [1, 1], [0, 0], [-1, -1]])
    emb = Embedding.from_pretrained(weights, dtype=et.DType.F64)
    indices, found = results(emb, [1.0, 0], 6)
    assert indices.tolist() == [0, 3, 2, 4, 5, 1]
    np.testing.assert_allclose(found, [1, np.sqrt(0.5), 0, 0, -np.sqrt(0.5), -1])
    indices, found = results(emb, [0.0, 0], 6)  # a zero query: cosine 0 with every row, so row order
    assert indices.tolist() == list(range(6)) and found.tolist() == [0.0] * 6
    assert not np.signbit(found).any()
    indices, found = results(emb, 2, 5)  # a zero row as the query
    assert indices.tolist() == [0, 1, 3, 4, 5] and not found.any()


@pytest.mark.parametrize("tiny_chunks", CHUNKS, indirect=True)
def test_nan_scores_rank_last(tiny_chunks):
    weights = np.array([[np.nan, 1.0], [1, 0], [np.nan, 0], [-1, 0], [0, 1]])
    emb = Embedding.from_pretrained(weights, dtype=et.DType.F64)
    for metric in ("cosine", "dot"):
        indices, found = results(emb, [1.0, 0], 5, metric)
        assert indices.tolist() == [1, 4, 3, 0, 2] and np.isnan(found[3:]).all()
        indices, _ = results(emb, [1.0, 0], 2, metric)
        assert indices.tolist() == [1, 4]


@pytest.mark.parametrize("dtype", [et.DType.F16, et.DType.BF16])
def test_half_precision_tables(rng, dtype):
    weights = rng.standard_normal((40, 8))
    emb = Embedding.from_pretrained(weights, dtype=dtype)
    stored = emb.weight.numpy().astype(np.float64)
    indices, found = results(emb, [5, 9], 6)
    check(indices, found.astype(np.float64), brute_force(stored, stored[[5, 9]], "cosine"), [{5}, {9}], 6,
          atol=1e-2)


def test_result_shapes():
    emb = Embedding(12, 3)
    assert emb.most_similar(4)[0].shape == (10,)
    assert emb.most_similar(np.int32(4), k=2)[0].shape == (2,)
    assert emb.most_similar(np.array([4, 5], np.uint8), k=2)[0].shape == (2, 2)
    assert emb.most_similar([], k=3)[0].shape == (0, 3)
    assert emb.most_similar(np.zeros((0, 3)), k=3)[1].shape == (0, 3)
    assert emb.most_similar(et.Tensor([1, 2, 3]), k=11)[0].shape == (3, 11)  # integers: row indices
    assert emb.most_similar(et.Tensor([1.0, 2, 3]), k=11)[0].shape == (11,)  # floats: a vector


def test_torch_tensors_as_queries():
    import torch

    emb = Embedding(20, 4)
    vectors = emb.weight.numpy()[[3, 7]]
    reference = emb.most_similar(vectors, 6)[0].numpy()
    assert reference[:, 0].tolist() == [3, 7]  # as vectors, each query's own row is its best match
    assert np.array_equal(emb.most_similar(torch.from_numpy(vectors), 6)[0].numpy(), reference)
    assert np.array_equal(emb.most_similar(torch.tensor([3, 7]), 5)[0].numpy(), reference[:, 1:])


@pytest.mark.parametrize("query, k, metric, error, message", [
    (0, 0, "cosine", et.InvalidArgumentError, "k must be an int >= 1, got 0"),
    (0, -3, "cosine", et.InvalidArgumentError, "k must be an int >= 1"),
    (0, 2.0, "cosine", et.InvalidArgumentError, "k must be an int >= 1, got 2.0"),
    (0, True, "cosine", et.InvalidArgumentError, "k must be an int"),
    (0, 10, "cosine", et.InvalidArgumentError, r"k=10 is more than the 9 rows a query can return \(a table of "
                                               r"10 rows, less the query's own row\)"),
    ([0.0] * 4, 11, "dot", et.InvalidArgumentError, r"k=11 is more than the 10 rows .*\(a table of 10 rows\)"),
    (0, 3, "l2", et.InvalidArgumentError, "metric must be one of"),
    (10, 3, "cosine", et.IndexOutOfRangeError, r"index 10 at position \(0,\) is out of range for an embedding "
                                               r"table of 10 rows"),
    ([1, -1], 3, "cosine", et.IndexOutOfRangeError, r"index -1 at position \(1,\)"),
    ([[1, 2]], 3, "cosine", et.ShapeError, r"one index or a 1-D list of them, got shape \(1, 2\)"),
    ([1.0, 2.0, 3.0], 3, "cosine", et.ShapeError, r"shape \[4\] or \[Q, 4\] .*got shape \(3,\)"),
    (np.zeros((2, 2, 4)), 3, "cosine", et.ShapeError, r"got shape \(2, 2, 4\)"),
    (1.5, 3, "cosine", et.ShapeError, r"got shape \(\)"),
    ([True, False], 3, "cosine", et.DTypeError, "integers.*or vectors.*got BOOL"),
    (np.zeros(4, np.complex64), 3, "cosine", et.DTypeError, "complex"),
])
def test_bad_arguments_raise(query, k, metric, error, message):
    emb = Embedding(10, 4)
    before = emb.weight.numpy()
    with pytest.raises(error, match=message):
        emb.most_similar(query, k, metric=metric)
    assert np.array_equal(emb.weight.numpy(), before)


def test_a_file_backed_table_is_read_chunk_by_chunk(rng, tmp_path, monkeypatch):
    """Its rows come through its storage's `gather`, a chunk at a time, never the whole
    table (`values`), and its changed rows not yet written back count."""
    weights = rng.standard_normal((300, 6)).astype(np.float32)
    in_memory = Embedding.from_pretrained(weights, freeze=False, sparse=True)
    in_memory.save(tmp_path / "table.safetensors")
    on_file = Embedding.open(tmp_path / "table.safetensors", writable=True, cache_bytes=1)
    for emb in (in_memory, on_file):
        loss = (emb([3, 5, 250]) ** 2).sum()
        loss.backward()
        et.optim.SGD(emb.parameters(), lr=0.5).step()
    gathered = []
    real_gather = MappedTable.gather

    def gather(self, ids):
        gathered.append(ids.numpy())
        return real_gather(self, ids)

    monkeypatch.setattr(MappedTable, "gather", gather)
    monkeypatch.setattr(MappedTable, "values", lambda self: pytest.fail("the whole table was read"))
    monkeypatch.setattr(nearest, "CHUNK_BYTES", 4000)
    for query, k in ([3, 250], 8), (rng.standard_normal((3, 6)), 5):
        expected = results(in_memory, query, k)
        gathered.clear()
        found = results(on_file, query, k)
        assert np.array_equal(found[0], expected[0])
        np.testing.assert_allclose(found[1], expected[1], rtol=1e-6)
        chunks = gathered[1:] if isinstance(query, list) else gathered  # an index query's own rows come first
        assert max(len(c) for c in chunks) < 300 and np.array_equal(np.concatenate(chunks), np.arange(300))
    assert on_file.weight.shape == (300, 6)


def test_threads_share_nothing(rng, monkeypatch):
    monkeypatch.setattr(nearest, "CHUNK_BYTES", 2000)
    emb = Embedding.from_pretrained(rng.standard_normal((500, 16)))
    emb.eval()
    queries = [rng.integers(0, 500, size=5).tolist() for _ in range(8)]
    expected = [emb.most_similar(q, 9) for q in queries]
    found = [None] * len(queries)

    def run(i):
        for _ in range(5):
            found[i] = emb.most_similar(queries[i], 9)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (want_ids, want_scores), (ids, scores) in zip(expected, found):
        assert np.array_equal(ids.numpy(), want_ids.numpy()) and np.array_equal(scores.numpy(), want_scores.numpy())


@settings(max_examples=150, deadline=None)
@given(data=st.data(), rows=st.integers(1, 30), dim=st.integers(1, 4), chunk_bytes=st.integers(1, 3000),
       metric=st.sampled_from(["dot", "cosine"]), by_index=st.booleans())
def test_any_chunking_gives_the_brute_force_answer(data, rows, dim, chunk_bytes, metric, by_index):
    """Small integer rows (many zero rows, duplicates and ties): with "dot" every score is
    exact, so the rows must be exactly the brute force's, ties to the lower index."""
    weights = np.array(data.draw(st.lists(st.lists(st.integers(-2, 2), min_size=dim, max_size=dim),
                                          min_size=rows, max_size=rows)), np.float64)
    padding_idx = data.draw(st.none() | st.integers(0, rows - 1))
    emb = Embedding.from_pretrained(weights, padding_idx=padding_idx, dtype=et.DType.F64)
    padding = set() if padding_idx is None else {padding_idx}
    if by_index:
        ids = data.draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=4))
        query, vectors, excluded = ids, weights[ids], [padding | {i} for i in ids]
    else:
        vectors = np.array(data.draw(st.lists(st.lists(st.integers(-2, 2), min_size=dim, max_size=dim),
                                              min_size=1, max_size=4)), np.float64)
        query, excluded = vectors, [padding] * len(vectors)
    fewest = min(rows - len(out) for out in excluded)
    if fewest < 1:
        with pytest.raises(et.InvalidArgumentError, match=f"k=1 is more than the {fewest} rows"):
            emb.most_similar(query, 1, metric=metric)
        return
    k = data.draw(st.integers(1, fewest))
    with mock.patch.object(nearest, "CHUNK_BYTES", chunk_bytes):
        indices, found = results(emb, query, k, metric)
    check(indices, found, brute_force(weights, vectors, metric), excluded, k, exact=metric == "dot", atol=1e-12)


# --- embtable neighbors ---------------------------------------------------------------------


def neighbour_lines(text):
    """{label: [(word, score), ...]} of the lines `embtable neighbors` printed."""
    lines = {}
    for line in text.splitlines():
        if not line.startswith("embtable:"):
            label, _, found = line.partition(": ")
            lines[label] = [(m[0], float(m[1])) for m in re.findall(r"(\S+) \((-?[\d.]+)\)", found)]
    return lines


def expected_neighbours(words, vectors, word, k):
    scores = brute_force(vectors, vectors[words.index(word)], "cosine")[0]
    return [w for w in (words[j] for j in np.lexsort((np.arange(len(words)), -scores))) if w != word][:k]


def test_neighbors_reads_a_glove_file(rng, tmp_path, capsys):
    words = ["the", "Paris", "london", "paris", "Berlin", "rome", "madrid", "lisbon"]
    vectors = rng.standard_normal((len(words), 5)).astype(np.float32)
    path = tmp_path / "glove.txt"
    path.write_text("".join(f"{w} {' '.join(map(repr, v.tolist()))}\n" for w, v in zip(words, vectors)),
                    encoding="utf-8")
    assert main(["neighbors", "london", "BERLIN", "xyz", "paris", "--vectors", str(path), "-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert "embtable: 'xyz' is not in the vocabulary of 8 words; skipped" in printed
    found = neighbour_lines(printed)
    assert set(found) == {"london", "BERLIN (as Berlin)", "paris"}  # "paris" exact, not "Paris"
    for label, word in [("london", "london"), ("BERLIN (as Berlin)", "Berlin"), ("paris", "paris")]:
        assert [w for w, _ in found[label]] == expected_neighbours(words, vectors, word, 3)
        scores = brute_force(vectors, vectors[words.index(word)], "cosine")[0]
        np.testing.assert_allclose([s for _, s in found[label]], [scores[words.index(w)] for w, _ in found[label]],
                                   atol=0.005)
    assert main(["neighbors", "PARIS", "--vectors", str(path), "-k", "50"]) == 0  # the first match, every word
    found = neighbour_lines(capsys.readouterr().out)
    assert [w for w, _ in found["PARIS (as Paris)"]] == expected_neighbours(words, vectors, "Paris", 7)


def test_neighbors_reads_a_demo_folder(rng, tmp_path, capsys):
    words = [f"w{i}" for i in range(20)]
    vectors = rng.standard_normal((20, 4))
    Embedding.from_pretrained(vectors).save(tmp_path / "vectors.safetensors")
    (tmp_path / "vocab.txt").write_text("".join(f"{w} {100 - i}\n" for i, w in enumerate(words)), encoding="utf-8")
    assert main(["neighbors", "w3", "W17", "--vectors", str(tmp_path)]) == 0
    found = neighbour_lines(capsys.readouterr().out)
    stored = vectors.astype(np.float32)
    assert [w for w, _ in found["w3"]] == expected_neighbours(words, stored, "w3", 10)
    assert [w for w, _ in found["W17 (as w17)"]] == expected_neighbours(words, stored, "w17", 10)
    assert main(["neighbors", "nope", "never", "--vectors", str(tmp_path)]) == 2
    printed = capsys.readouterr().out
    assert "'nope' is not in the vocabulary of 20 words; skipped" in printed
    assert "'never' is not in the vocabulary of 20 words; skipped" in printed
    assert "embtable: none of the words ['nope', 'never'] is in the vocabulary" in printed
    (tmp_path / "vocab.txt").write_text("w0 1\n", encoding="utf-8")
    assert main(["neighbors", "w0", "--vectors", str(tmp_path)]) == 2
    assert "holds 20 vectors but 1 words in vocab.txt" in capsys.readouterr().out
    assert main(["neighbors", "w0", "--vectors", str(tmp_path), "-k", "0"]) == 2
    assert "-k must be an int >= 1, got 0" in capsys.readouterr().out

"""Serving one table from several threads (issue #17): every call of an eval-mode table,
made from `THREADS` threads at once with different inputs, gives exactly (bit for bit) what
the same call gives alone. The kernels release the GIL, so the threads really overlap in
gathers, pools and buffer hand-outs; here the host buffer cache serves even small outputs
and the gather kernel even small lookups, so that every path runs.

A forward with ``max_norm`` (renorm) rewrites rows of the table: concurrent ones must give
the outputs and the table of the same calls made one after another."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from typing import Any, Callable

import numpy as np
import pytest

import embtable as et
from embtable.backends import host_cache as host_cache_module
from embtable.backends import numpy_backend
from embtable.nn import Embedding, EmbeddingBag

THREADS = 4
ROUNDS = 16  # calls per thread of each case
ROWS, DIM = 500, 64
# rows each thread renorms at once: enough for the renorms to overlap (PyTorch's renorm is
# hundreds of times slower than the kernel: fewer there)
RENORM_ROWS = 250 if os.environ.get("EMBTABLE_CPU_BACKEND") == "torch" else 10000
RENORM_ROUNDS = 12  # fresh tables renormed by the threads at once
QUANTIZED = [None, (8, None), (4, 32)]
QUANTIZED_IDS = ["float", "int8", "int4-g32"]


@pytest.fixture(autouse=True)
def every_path(monkeypatch):
    """Small outputs through the shared buffer cache and small lookups through the gather
    kernel, where only large ones would otherwise go."""
    monkeypatch.setattr(host_cache_module, "MIN_BYTES", 1024)
    monkeypatch.setattr(numpy_backend, "SMALL_GATHER_BYTES", 0)
    yield
    host_cache_module.host_cache.trim(0)


def hammered(call: Callable[..., Any], inputs: list[tuple]) -> None:
    """Call `call` on each of `inputs` alone, then from `THREADS` threads at once, each
    taking other inputs at each of its `ROUNDS` calls (every other one under `no_grad`),
    and assert that every concurrent result equals the one computed alone."""
    expected = [_bits(call(*args)) for args in inputs]
    failures: list[str] = []

    def serve(thread: int) -> None:
        for round_ in range(ROUNDS):
            k = (thread * 7 + round_ * THREADS) % len(inputs)
            if round_ % 2:
                with et.no_grad():
                    got = call(*inputs[k])
            else:
                got = call(*inputs[k])
            if _bits(got) != expected[k]:
                failures.append(f"thread {thread}, round {round_}: input {k} gave another result")

    _together(serve, failures)
    assert not failures, failures[:5]


def _together(serve: Callable[[int], None], failures: list[str]) -> None:
    """Run ``serve(thread)`` on `THREADS` threads started together; what one raises is
    recorded in `failures`."""
    start = threading.Barrier(THREADS)

    def run(thread: int) -> None:
        try:
            start.wait()
            serve(thread)
        except Exception as error:  # noqa: BLE001 - reported by the caller, with its thread
            failures.append(f"thread {thread} raised {error!r}")

    workers = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _bits(result: Any) -> tuple:
    """A result's shape, dtype and bytes (of each part of a tuple)."""
    if isinstance(result, tuple):
        return tuple(_bits(part) for part in result)
    array = result.numpy()
    return array.shape, array.dtype.str, array.tobytes()


def table(rng: np.random.Generator, rows: int = ROWS) -> np.ndarray:
    return rng.standard_normal((rows, DIM)).astype(np.float32)


def lookups(rng: np.random.Generator) -> list[tuple]:
    """Index batches of several sizes, shapes and dtypes, the padding row among them."""
    batches = [rng.integers(0, ROWS, size) for size in (1, 3, 40, 257, 1500, 4096)]
    batches += [rng.integers(0, ROWS, (32, 20)).astype(np.int32), np.array([0, 0, 5, 0])]
    return [(batch,) for batch in batches]


def bags(rng: np.random.Generator) -> list[tuple]:
    """Bags as 1-D ids with offsets (empty bags and the padding row among them) and as 2-D
    rows, each with and without per-sample weights."""
    inputs = []
    for count, length in [(1, 5), (16, 3), (64, 20), (300, 9)]:
        sizes = rng.integers(0, 2 * length, count)
        ids = rng.integers(0, ROWS, int(sizes.sum()))
        ids[rng.random(ids.shape[0]) < 0.1] = 0
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        inputs.append((ids, offsets, None))
        inputs.append((ids, offsets, rng.standard_normal(ids.shape[0]).astype(np.float32)))
    square = rng.integers(0, ROWS, (128, 12))
    inputs += [(square, None, None), (square, None, rng.standard_normal(square.shape).astype(np.float32))]
    return inputs


@pytest.mark.parametrize("quantized", QUANTIZED, ids=QUANTIZED_IDS)
def test_lookups_from_threads_equal_sequential_ones(rng, quantized):
    layer = Embedding.from_pretrained(table(rng), freeze=False, padding_idx=0).eval()
    hammered(layer.to_quantized(*quantized) if quantized else layer, lookups(rng))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("quantized", QUANTIZED, ids=QUANTIZED_IDS)
def test_bags_from_threads_equal_sequential_ones(rng, mode, quantized):
    layer = EmbeddingBag.from_pretrained(table(rng), freeze=False, mode=mode, padding_idx=0).eval()
    hammered(layer.to_quantized(*quantized) if quantized else layer, bags(rng))


def test_a_file_backed_table_serves_threads(rng, tmp_path):
    """Its row cache changes at every call (rows read in, others evicted: it holds 64)."""
    cache_bytes = 64 * (DIM * 4 + 64)
    Embedding.from_pretrained(table(rng), padding_idx=0).save(tmp_path / "e.safetensors")
    hammered(Embedding.open(tmp_path / "e.safetensors", cache_bytes=cache_bytes), lookups(rng))
    EmbeddingBag.from_pretrained(table(rng), mode="sum", padding_idx=0).save(tmp_path / "b.safetensors")
    hammered(EmbeddingBag.open(tmp_path / "b.safetensors", cache_bytes=cache_bytes), bags(rng))


@pytest.mark.skipif(not hasattr(Embedding, "most_similar"), reason="Embedding.most_similar is not there yet")
@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_nearest_rows_from_threads_equal_sequential_ones(rng, metric):
    layer = Embedding.from_pretrained(table(rng), padding_idx=0).eval()
    queries = [3, [1, 2, 499], rng.standard_normal(DIM).astype(np.float32), table(rng, 50)]
    hammered(lambda query, k: layer.most_similar(query, k, metric=metric), [(q, k) for q in queries for k in (1, 10)])


def _stable_rows(weights: np.ndarray, max_norm: float) -> np.ndarray:
    """The rows of `weights` longer than `max_norm` whose renorm a second renorm leaves
    exactly as it is (not all: the first leaves some a rounding above `max_norm`). Renorms
    of these rows give the same table and lookups whatever their order."""
    probe = Embedding.from_pretrained(weights.copy(), max_norm=max_norm)
    every = np.arange(weights.shape[0])
    once, twice = probe(every).numpy(), probe(every).numpy()
    longer = np.linalg.norm(weights, axis=1) > max_norm
    return np.flatnonzero(longer & (once == twice).all(axis=1))


@pytest.mark.parametrize("kind", [Embedding, EmbeddingBag], ids=["lookup", "bag"])
def test_max_norm_renorms_from_threads_as_in_a_sequential_order(rng, kind):
    """Each round, `THREADS` threads make the first lookups of a fresh table at once, of the
    same rows in other orders: each row is renormed once, never twice nor read half
    rescaled, so the outputs and the table are those of the same calls made in turn."""
    weights = 3 * table(rng, RENORM_ROWS)
    rows = _stable_rows(weights, 1.0)
    inputs = [(rng.permutation(rows),) for _ in range(THREADS)]
    options = {}
    if kind is EmbeddingBag:
        options = {"mode": "sum"}
        inputs = [(ids, np.arange(0, ids.shape[0], 40)) for ids, in inputs]
    alone = kind.from_pretrained(weights, max_norm=1.0, **options).eval()
    expected = [_bits(alone(*args)) for args in inputs]
    failures: list[str] = []
    for round_ in range(RENORM_ROUNDS):
        layer = kind.from_pretrained(weights, max_norm=1.0, **options).eval()

        def serve(thread: int) -> None:
            if _bits(layer(*inputs[thread])) != expected[thread]:
                failures.append(f"round {round_}, thread {thread}: another result")

        _together(serve, failures)
        if not np.array_equal(layer.weight.numpy(), alone.weight.numpy()):
            failures.append(f"round {round_}: another table")
    assert not failures, failures[:5]


@pytest.mark.backend_independent
def test_kernels_take_turns_on_a_threading_layer_that_is_not_threadsafe():
    """numba's workqueue layer aborts the process when two threads launch kernels at once;
    where it is the layer in use (no TBB nor OpenMP), launches take turns instead."""
    script = textwrap.dedent("""
        import threading
        import numba
        import numpy as np
        import embtable as et

        table = et.nn.EmbeddingBag(100000, 64, mode="sum")
        ids = np.random.default_rng(0).integers(0, 100000, 65536)
        offsets = np.arange(0, 65536, 16)

        def serve():
            for _ in range(20):
                table(ids, offsets)
                table(ids[:, None], None)

        threads = [threading.Thread(target=serve) for _ in range(4)]
        [thread.start() for thread in threads]
        [thread.join() for thread in threads]
        print(numba.threading_layer())
    """)
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "EMBTABLE_CPU_BACKEND": "numpy"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "workqueue", done.stderr[-2000:]

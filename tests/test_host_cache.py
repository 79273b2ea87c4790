"""The host buffer cache: memory is reused only once nothing references it."""

import threading
import time

import numpy as np
import pytest
import torch

import embtable as et
from embtable.backends.numpy_backend import NUMPY
from embtable.core import backend_of
from embtable.backends.host_cache import MIN_BYTES, BufferCache, host_cache
from embtable.nn import Embedding

ROWS = MIN_BYTES // (64 * 4)  # a [ROWS, 64] float32 array is exactly MIN_BYTES


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def test_a_dropped_array_s_memory_is_handed_out_again():
    cache = BufferCache()
    first = cache.empty((ROWS, 64), np.float32)
    where = address(first)
    del first
    again = cache.empty((ROWS * 2, 32), np.float32)  # same size, other shape
    assert address(again) == where and again.shape == (ROWS * 2, 32) and again.dtype == np.float32


@pytest.mark.parametrize("holder", [
    lambda a: a[1:],                      # a view
    lambda a: a.reshape(-1),              # a view of a view
    lambda a: memoryview(a),              # the buffer protocol
    lambda a: torch.from_numpy(a),        # another library, zero-copy
    lambda a: et.from_dlpack(a),          # an embtable Tensor, zero-copy
    lambda a: np.from_dlpack(a),          # DLPack
])
def test_memory_still_referenced_anywhere_is_never_handed_out(holder):
    cache = BufferCache()
    first = cache.empty((ROWS, 64), np.float32)
    first[...] = 7
    kept = holder(first)
    del first
    second = cache.empty((ROWS, 64), np.float32)
    second[...] = 0
    assert np.asarray(kept).reshape(-1)[-1] == 7  # untouched
    del kept, second
    assert cache.idle_bytes() == 2 * MIN_BYTES


def test_small_arrays_and_limit_zero_bypass_the_cache():
    off = BufferCache(limit=0)
    off.empty((ROWS, 64), np.float32)
    small = BufferCache()
    small.empty((ROWS - 1, 64), np.float32)
    assert off.idle_bytes() == 0 and small.idle_bytes() == 0  # nothing was kept


def test_idle_memory_is_trimmed_to_the_limit_least_recently_used_first():
    cache = BufferCache(limit=2 * MIN_BYTES)
    sizes = [(ROWS, 64), (ROWS, 80), (ROWS, 96)]
    arrays = [cache.empty(shape, np.float32) for shape in sizes]
    newest = address(arrays[2])
    del arrays
    assert cache.idle_bytes() == MIN_BYTES * (64 + 80 + 96) // 64  # idle until the next request
    held = cache.empty((ROWS, 128), np.float32)  # new size: allocates, then trims the idle ones
    assert cache.idle_bytes() <= 2 * MIN_BYTES and held.nbytes == 2 * MIN_BYTES
    assert address(cache.empty((ROWS, 96), np.float32)) == newest  # the most recent survived
    cache.trim(0)
    assert cache.idle_bytes() == 0


def test_threads_never_share_a_buffer():
    cache = BufferCache()
    clashes = []

    def work(k):
        for _ in range(20):
            a = cache.empty((ROWS, 64), np.float32).reshape(-1)
            a[::4096] = k
            time.sleep(0.0005)  # hold it while the other threads ask
            clashes.extend(set(a[::4096].tolist()) - {k})
            del a

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not clashes and cache.idle_bytes() >= MIN_BYTES  # every thread finished; reuse happened


@pytest.mark.skipif(backend_of(et.Tensor([1.0])) is not NUMPY,
                    reason="the host cache serves the NumPy backend; PyTorch allocates its own tensors")
def test_training_reuses_outputs_and_gradients_and_matches_fresh_memory():
    """Two identical training runs, the first reusing memory, the second with reuse off:
    bit-identical weights. The output and the gradient are each MIN_BYTES."""
    indices = np.random.default_rng(0).integers(0, ROWS, ROWS)
    previous = host_cache.limit

    def train() -> np.ndarray:
        et.manual_seed(0)
        emb = Embedding(ROWS, 64)
        opt = et.optim.SGD(emb.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            out = emb(indices)
            (out * out).sum().backward()
            opt.step()
        return emb.weight.numpy().copy()

    try:
        et.set_host_cache_limit(2**30)
        et.empty_host_cache()
        reused = train()
        assert host_cache.idle_bytes() >= 2 * MIN_BYTES  # an output and a gradient went through it
        et.set_host_cache_limit(0)
        assert host_cache.idle_bytes() == 0
        fresh = train()
        assert host_cache.idle_bytes() == 0
    finally:
        et.set_host_cache_limit(previous)
    np.testing.assert_array_equal(reused, fresh)


def test_a_somewhat_larger_idle_buffer_serves_a_smaller_request():
    cache = BufferCache()
    big = cache.empty((ROWS * 2 - 1, 64), np.float32)
    where = address(big)
    del big
    smaller = cache.empty((ROWS, 64), np.float32)  # at least half the buffer: reused
    assert address(smaller) == where and smaller.shape == (ROWS, 64)
    another = cache.empty((ROWS, 64), np.float32)  # the only cached buffer is in use
    assert address(another) != where


def test_each_request_takes_the_smallest_idle_buffer_that_fits():
    """A step's output (smaller) must not take the gradient's buffer (larger, more recent),
    or every gradient would need fresh memory."""
    cache = BufferCache()
    output, gradient = cache.empty((ROWS, 64), np.float32), cache.empty((ROWS, 96), np.float32)
    places = address(output), address(gradient)
    del output, gradient
    for _ in range(3):
        output, gradient = cache.empty((ROWS, 64), np.float32), cache.empty((ROWS, 96), np.float32)
        assert (address(output), address(gradient)) == places
        del output, gradient


def test_limit_zero_releases_buffers_dropped_after_it_was_set():
    cache = BufferCache()
    held = cache.empty((ROWS, 64), np.float32)
    cache.limit = 0
    cache.trim(0)
    del held
    cache.empty((ROWS, 64), np.float32)  # the next large request trims to the limit
    assert cache.idle_bytes() == 0


def test_a_reusing_request_also_trims_to_the_limit():
    cache = BufferCache(limit=MIN_BYTES)
    arrays = [cache.empty((ROWS, 64), np.float32) for _ in range(4)]
    del arrays
    assert cache.idle_bytes() == 4 * MIN_BYTES  # dropped since the last request
    kept = cache.empty((ROWS, 64), np.float32)  # reuses one, trims the rest to the limit
    assert cache.idle_bytes() <= MIN_BYTES and kept.nbytes == MIN_BYTES


def test_limit_is_validated():
    with pytest.raises(et.InvalidArgumentError, match="-1"):
        et.set_host_cache_limit(-1)
    et.empty_host_cache()

"""The normal samples new tables are drawn from (`kernels/cpu/normals.py`): N(0, 1) to the
precision a few million draws can tell, the tail beyond the ziggurat's last layer included,
and each chunk's values a function of its state alone."""

import math

import numpy as np
import pytest

from embtable.kernels.cpu.normals import TAIL, fill_normal_rows


def states(count: int, seed: int = 1) -> np.ndarray:
    return np.array([np.random.SeedSequence(seed, spawn_key=(c,)).generate_state(4, np.uint64)
                     for c in range(count)])


def drawn(rows: int, dim: int, chunk_rows: int, seed: int = 1, dtype=np.float64, scale: float = 1.0) -> np.ndarray:
    out = np.empty((rows, dim), dtype)
    for chunk, state in enumerate(states(-(-rows // chunk_rows), seed)):
        fill_normal_rows(out[chunk * chunk_rows:(chunk + 1) * chunk_rows], state, scale)
    return out


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2))


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return drawn(1 << 16, 64, 1 << 12).ravel()  # 4M values


def test_the_samples_follow_the_standard_normal_cdf(sample):
    head = np.sort(sample[:1 << 20])
    below = np.arange(1, head.size + 1) / head.size
    assert np.abs(normal_cdf(head) - below).max() < 1.63 / math.sqrt(head.size)  # Kolmogorov-Smirnov at 1%
    assert abs(sample.mean()) < 5 / math.sqrt(sample.size)
    assert abs(sample.var() - 1) < 5 * math.sqrt(2 / sample.size)


@pytest.mark.parametrize("k", [0.5, 1.0, 2.0, 3.0, TAIL, 4.0])
def test_each_band_and_the_tail_hold_their_share(sample, k):
    expected = math.erfc(k / math.sqrt(2))  # P(|x| > k)
    seen = np.mean(np.abs(sample) > k)
    assert abs(seen - expected) < 5 * math.sqrt(expected * (1 - expected) / sample.size) + 1e-7


def test_the_tail_beyond_the_last_layer_has_the_normal_tails_mean(sample):
    tail = np.abs(sample[np.abs(sample) > TAIL])
    expected = math.exp(-TAIL * TAIL / 2) / math.sqrt(2 * math.pi) / (0.5 * math.erfc(TAIL / math.sqrt(2)))
    assert tail.size > 1000
    assert abs(tail.mean() - expected) < 5 * 0.3 / math.sqrt(tail.size)  # sd of the tail is ~0.26
    assert (sample > TAIL).sum() == pytest.approx((sample < -TAIL).sum(), rel=0.2)


def test_neighbouring_values_are_independent(sample):
    assert abs(np.corrcoef(sample[:-1], sample[1:])[0, 1]) < 5 / math.sqrt(sample.size)
    signs = sample > 0
    assert abs(np.mean(signs[:-1] == signs[1:]) - 0.5) < 5 * 0.5 / math.sqrt(sample.size)


def test_a_chunks_values_depend_on_its_state_alone():
    whole = drawn(1000, 8, 300)
    state = states(3)[2]
    kept = state.copy()
    alone = np.empty((300, 8))
    fill_normal_rows(alone, state, 1.0)
    np.testing.assert_array_equal(whole[600:900], alone)
    np.testing.assert_array_equal(state, kept)
    assert not np.array_equal(whole[:300], whole[300:600])


def test_values_are_scaled_then_rounded_once_into_the_output_dtype():
    wide = drawn(500, 16, 128)
    np.testing.assert_array_equal(drawn(500, 16, 128, dtype=np.float32, scale=0.25), (wide * 0.25).astype(np.float32))
    assert not np.array_equal(drawn(500, 16, 128, seed=2), wide)

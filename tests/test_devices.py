"""Every available device against a float64 NumPy reference: the same semantics on every
backend (NumPy with numba kernels on the CPU by default; PyTorch on the CPU under
EMBTABLE_CPU_BACKEND=torch, and on CUDA and MPS wherever PyTorch sees them)."""

import math

import numpy as np
import pytest
import torch

import embtable as et
from embtable.nn import Embedding


def available_devices():
    devices = [et.Device.CPU]
    if torch.cuda.is_available():
        devices += [et.Device.CUDA(i) for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append(et.Device.MPS)
    return devices


DEVICES = available_devices()
ROWS, DIM = 30, 6


@pytest.fixture
def data():
    rng = np.random.default_rng(11)
    weights = rng.standard_normal((ROWS, DIM)) * 1.5
    indices = rng.integers(0, ROWS, size=(5, 8))
    indices[0, :3] = 2  # duplicates and padding
    upstream = rng.standard_normal(indices.shape + (DIM,))
    return weights, indices, upstream


def reference_norms(rows, p):
    return np.abs(rows).max(-1) if p == math.inf else (np.abs(rows) ** p).sum(-1) ** (1 / p)


def reference_gradient(indices, upstream, padding_idx, freq):
    """The dense table gradient of a plain lookup, in float64."""
    flat, g = indices.reshape(-1), upstream.reshape(-1, DIM).copy()
    if freq:
        g /= np.bincount(flat, minlength=ROWS)[flat][:, None]
    grad = np.zeros((ROWS, DIM))
    np.add.at(grad, flat, g)
    if padding_idx is not None:
        grad[padding_idx] = 0
    return grad


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("padding_idx, freq, sparse", [(None, False, False), (2, False, True), (2, True, False),
                                                        (5, True, True)])
def test_forward_and_gradients(device, data, padding_idx, freq, sparse):
    weights, indices, upstream = data
    emb = Embedding.from_pretrained(weights, freeze=False, padding_idx=padding_idx, scale_grad_by_freq=freq,
                                    sparse=sparse, device=device)
    assert emb.weight.device == device
    out = emb(et.Tensor(indices, device=device))
    assert out.device == device
    np.testing.assert_array_equal(out.numpy(), weights[indices])
    out.backward(et.Tensor(upstream, device=device))
    grad = emb.weight.grad
    assert isinstance(grad, et.RowSparseGrad) == sparse
    grad = grad.to_dense() if sparse else grad
    np.testing.assert_allclose(grad.numpy(), reference_gradient(indices, upstream, padding_idx, freq), rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_max_norm_both_modes(device, data, p):
    weights, indices, upstream = data
    renorm = Embedding.from_pretrained(weights, max_norm=1.0, norm_type=p, device=device)
    out = renorm(indices).numpy()
    used = np.unique(indices)
    norms = reference_norms(weights[used], p)
    expected = weights.copy()
    expected[used] *= np.where(norms > 1.0, 1.0 / (norms + 1e-7), 1.0)[:, None]
    np.testing.assert_allclose(renorm.weight.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(out, expected[indices], rtol=1e-12)

    clip = Embedding.from_pretrained(weights, max_norm=1.0, norm_type=p, max_norm_mode="clip", device=device)
    rows = weights[indices]
    scale = np.minimum(1.0, 1.0 / (reference_norms(rows, p) + 1e-7))
    np.testing.assert_allclose(clip(indices).numpy(), rows * scale[..., None], rtol=1e-12)
    np.testing.assert_array_equal(clip.weight.numpy(), weights)


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("sparse", [False, True])
def test_adam_matches_the_reference(device, data, sparse):
    weights, indices, upstream = data
    emb = Embedding.from_pretrained(weights, freeze=False, sparse=sparse, device=device)
    adam = et.optim.Adam(emb.parameters(), lr=0.1)
    expected, m, v = weights.copy(), np.zeros_like(weights), np.zeros_like(weights)
    for step in (1, 2):
        adam.zero_grad()
        emb(indices).backward(upstream)
        adam.step()
        g = reference_gradient(indices, upstream, None, False)
        rows = np.unique(indices) if sparse else np.arange(ROWS)
        m[rows] += 0.1 * (g[rows] - m[rows])
        if sparse:  # SparseAdam: lazy rows, eps before the bias correction
            v[rows] += 0.001 * (g[rows] ** 2 - v[rows])
            size = 0.1 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
            expected[rows] -= size * m[rows] / (np.sqrt(v[rows]) + 1e-8)
        else:
            v = 0.999 * v + 0.001 * g**2
            expected -= 0.1 / (1 - 0.9**step) * m / (np.sqrt(v) / np.sqrt(1 - 0.999**step) + 1e-8)
    np.testing.assert_allclose(emb.weight.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_bad_index_is_caught_before_any_kernel(device, data):
    weights, indices, _ = data
    emb = Embedding.from_pretrained(weights, max_norm=0.5, device=device)
    indices[3, 4] = ROWS
    with pytest.raises(et.IndexOutOfRangeError, match=rf"index {ROWS} at position \(3, 4\)"):
        emb(indices)
    np.testing.assert_array_equal(emb.weight.numpy(), weights)

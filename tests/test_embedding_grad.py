"""Embedding backward: every combination of padding / freq scaling / sparse / max_norm mode
against torch.autograd in float64, the SPEC example, RowSparseGrad, precision, determinism."""

import itertools
import math
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
import torch

import embtable as et

pytestmark = pytest.mark.usefixtures("both_storages")
from embtable.nn import Embedding
from embtable.nn import functional as F

NORM_TYPES = [1.0, 2.0, 3.0, math.inf]


def torch_reference(weights, indices, upstream, *, padding_idx, scale_grad_by_freq, max_norm,
                    norm_type, mode):
    """Output, dense weight gradient and weight after the call, computed by PyTorch."""
    weight = torch.tensor(weights, requires_grad=True)
    idx = torch.from_numpy(indices)
    if mode == "clip":
        rows = torch.nn.functional.embedding(idx, weight, padding_idx=padding_idx,
                                             scale_grad_by_freq=scale_grad_by_freq)
        norms = torch.linalg.vector_norm(rows, ord=norm_type, dim=-1, keepdim=True)
        out = rows * torch.clamp(max_norm / (norms + 1e-7), max=1.0)
    else:
        out = torch.nn.functional.embedding(idx, weight, padding_idx=padding_idx, max_norm=max_norm,
                                            norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq)
    out.backward(torch.from_numpy(upstream))
    return out.detach().numpy(), weight.grad.numpy(), weight.detach().numpy()


NORMS = [(None, "renorm", 2.0)] + [(1.3, mode, p) for mode in ("renorm", "clip") for p in NORM_TYPES]
COMBINATIONS = list(itertools.product([None, 0, 7], [False, True], [False, True], NORMS))


@pytest.mark.parametrize("padding_idx, freq, sparse, norm", COMBINATIONS)
def test_gradient_matches_torch(padding_idx, freq, sparse, norm, rng):
    max_norm, mode, norm_type = norm
    weights = rng.standard_normal((12, 5)) * 1.5
    indices = rng.integers(0, 12, size=(4, 9))
    indices[0, :3] = 0  # padding and duplicates
    indices[1, :4] = 7
    upstream = rng.standard_normal(indices.shape + (5,))
    expected_out, expected_grad, expected_weight = torch_reference(
        weights, indices, upstream, padding_idx=padding_idx, scale_grad_by_freq=freq,
        max_norm=max_norm, norm_type=norm_type, mode=mode)
    emb = Embedding.from_pretrained(weights, freeze=False, padding_idx=padding_idx, max_norm=max_norm,
                                    norm_type=norm_type, scale_grad_by_freq=freq, sparse=sparse,
                                    max_norm_mode=mode)
    out = emb(indices)
    out.backward(upstream)
    np.testing.assert_allclose(out.numpy(), expected_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(emb.weight.numpy(), expected_weight, rtol=1e-12, atol=1e-14)
    grad = emb.weight.grad
    if sparse:
        assert isinstance(grad, et.RowSparseGrad)
        rows = grad.indices.numpy()
        assert grad.indices.dtype is et.DType.I64 and (np.diff(rows) > 0).all()
        present = set(np.unique(indices)) - {padding_idx}
        assert set(rows) == present
        assert grad.values.shape == (len(rows), 5) and grad.shape == (12, 5)
        grad = grad.to_dense()
    assert grad.dtype is et.DType.F64
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-12, atol=1e-14)


def test_spec_example_freq_and_padding():
    for sparse in (False, True):
        emb = Embedding(3, 1, padding_idx=0, scale_grad_by_freq=True, sparse=sparse, dtype=et.DType.F64)
        out = emb(np.array([[1, 1, 2], [1, 0, 0]]))
        out.backward(np.arange(1, 7, dtype=np.float64).reshape(2, 3, 1))
        grad = emb.weight.grad.to_dense() if sparse else emb.weight.grad
        np.testing.assert_allclose(grad.numpy()[:, 0], [0.0, 7 / 3, 3.0], rtol=1e-15)


def test_functional_embedding_is_differentiable():
    weight = et.Tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    F.embedding([1, 1, 3], weight, padding_idx=3).sum().backward()
    np.testing.assert_array_equal(weight.grad.numpy(), [[0] * 3, [2] * 3, [0] * 3, [0] * 3])


def test_frozen_table_gets_no_gradient():
    emb = Embedding.from_pretrained(np.ones((3, 2)))
    out = emb([0, 1])
    assert not out.requires_grad
    with et.no_grad():
        assert not Embedding(3, 2)([0]).requires_grad


def test_sparse_gradients_accumulate_by_merging_rows():
    emb = Embedding(10, 2, sparse=True, dtype=et.DType.F64)
    emb([1, 5, 5]).sum().backward()
    emb([5, 8]).sum().backward()
    grad = emb.weight.grad
    assert isinstance(grad, et.RowSparseGrad)
    assert grad.indices.tolist() == [1, 5, 8]
    np.testing.assert_array_equal(grad.values.numpy(), [[1, 1], [3, 3], [1, 1]])


def test_sparse_and_dense_uses_of_one_table_add_up(rng):
    emb = Embedding(6, 3, sparse=True, dtype=et.DType.F64)
    x = et.Tensor(rng.standard_normal((2, 3)))
    logits = x @ emb.weight.T  # a dense use: tied output weights
    (emb([2, 4]).sum() + logits.sum()).backward()
    expected = np.zeros((6, 3))
    expected[[2, 4]] += 1
    expected += x.numpy().sum(axis=0)
    assert isinstance(emb.weight.grad, et.Tensor)
    np.testing.assert_allclose(emb.weight.grad.numpy(), expected, rtol=1e-14)


def test_sparse_backward_never_allocates_the_dense_table():
    rows, dim = 400_000, 64  # a dense f32 gradient would be ~100 MB
    emb = Embedding.from_pretrained(np.zeros((rows, dim), np.float32), freeze=False, sparse=True)
    indices = np.random.default_rng(0).integers(0, rows, size=2000)
    out = emb(indices)
    tracemalloc.start()
    out.backward(np.ones(out.shape, np.float32))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"backward peaked at {peak / 2**20:.1f} MiB"
    assert isinstance(emb.weight.grad, et.RowSparseGrad)


@pytest.mark.parametrize("dtype, np_dtype", [(et.DType.BF16, ml_dtypes.bfloat16), (et.DType.F16, np.float16)])
@pytest.mark.parametrize("sparse", [False, True])
def test_half_precision_accumulates_in_f32_and_rounds_once(dtype, np_dtype, sparse):
    emb = Embedding(4, 2, dtype=dtype, sparse=sparse)
    indices = np.array([1] * 3000 + [2])
    upstream = np.full((len(indices), 2), 0.01, np.float32)
    upstream[-1] = 0.3
    emb(indices).backward(upstream.astype(np_dtype))
    grad = emb.weight.grad.to_dense() if sparse else emb.weight.grad
    assert grad.dtype is dtype
    exact = np.zeros((4, 2), np.float64)
    np.add.at(exact, indices, upstream.astype(np_dtype).astype(np.float64))
    # summing 3000 copies of 0.01 in bf16/f16 would stall far below 30; f32 is exact to rounding
    np.testing.assert_array_equal(grad.numpy(), exact.astype(np.float32).astype(np_dtype))


@pytest.mark.parametrize("sparse, freq", [(False, False), (False, True), (True, True)])
def test_backward_is_deterministic(sparse, freq):
    rng = np.random.default_rng(5)
    indices = rng.zipf(1.3, size=200_000) % 500  # heavily duplicated
    upstream = rng.standard_normal((200_000, 16)).astype(np.float32)
    grads = []
    for _ in range(2):
        et.manual_seed(0)
        emb = Embedding(500, 16, sparse=sparse, scale_grad_by_freq=freq, padding_idx=3)
        emb(indices).backward(upstream)
        grad = emb.weight.grad.to_dense() if sparse else emb.weight.grad
        grads.append(grad.numpy().tobytes())
    assert grads[0] == grads[1]


def test_renorm_gradient_is_a_plain_gather():
    weights = np.array([[3.0, 4.0], [0.1, 0.1]])
    emb = Embedding.from_pretrained(weights, freeze=False, max_norm=1.0)
    emb([0, 0]).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy(), [[2, 2], [0, 0]])


def test_clip_gradient_at_a_row_exactly_within_the_norm_passes_through():
    weights = np.array([[0.3, 0.4]])
    emb = Embedding.from_pretrained(weights, freeze=False, max_norm=1.0, max_norm_mode="clip")
    emb([0]).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy(), [[1.0, 1.0]])

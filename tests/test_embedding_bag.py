"""SPEC §8, EmbeddingBag: differential tests against torch.nn.functional.embedding_bag where
PyTorch supports the combination, and everywhere against a float64 reference written from
SPEC §8 (torch autograd over plain indexing, one bag at a time); errors change nothing."""


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import embtable as et

pytestmark = pytest.mark.usefixtures("both_storages")
from embtable.nn import EmbeddingBag
from embtable.nn import functional as F

ROWS, DIM = 12, 5


def spec_reference(weight, indices, offsets, include_last_offset, mode, padding_idx=None, weights=None,
                   scale_grad_by_freq=False, max_norm=None, norm_type=2.0, max_norm_mode="renorm", upstream=None):
    """SPEC §8 in float64, one bag at a time: (output, weight after any renorm, weight
    gradient, per-sample-weight gradient)."""
    table = torch.tensor(weight, dtype=torch.float64)
    flat = np.asarray(indices).reshape(-1)
    if np.asarray(indices).ndim == 2:
        count, length = np.asarray(indices).shape
        bounds = [(b * length, (b + 1) * length) for b in range(count)]
    else:
        ends = list(offsets) if include_last_offset else list(offsets) + [len(flat)]
        bounds = list(zip(ends[:-1], ends[1:]))
    if max_norm is not None and max_norm_mode == "renorm":
        with torch.no_grad():
            for row in np.unique(flat):
                norm = torch.linalg.vector_norm(table[row], ord=norm_type)
                if norm > max_norm:
                    table[row] *= max_norm / (norm + 1e-7)
    leaf = table.clone().requires_grad_(True)
    w = None if weights is None else torch.tensor(np.asarray(weights, np.float64).reshape(-1), requires_grad=True)
    pooled = []
    for start, stop in bounds:
        kept = [i for i in range(start, stop) if flat[i] != padding_idx]
        if not kept:
            pooled.append(torch.zeros(table.shape[1], dtype=torch.float64))
            continue
        rows = leaf[torch.tensor(flat[kept])]
        if max_norm is not None and max_norm_mode == "clip":
            shrink = max_norm / (torch.linalg.vector_norm(rows, ord=norm_type, dim=1, keepdim=True) + 1e-7)
            rows = rows * torch.where(shrink < 1, shrink, torch.ones_like(shrink))
        if w is not None:
            rows = rows * w[kept][:, None]
        pooled.append(rows.sum(0) if mode == "sum" else rows.mean(0) if mode == "mean" else rows.max(0).values)
    out = torch.stack(pooled) if pooled else torch.zeros((0, table.shape[1]), dtype=torch.float64)
    g = upstream if upstream is not None else np.ones(out.shape)
    if out.requires_grad:
        out.backward(torch.tensor(g, dtype=torch.float64))
    grad = np.zeros(table.shape) if leaf.grad is None else leaf.grad.numpy().copy()
    if scale_grad_by_freq:
        counts = np.bincount(flat, minlength=len(weight))
        grad /= np.maximum(counts, 1)[:, None]
    weight_grad = None if w is None else np.zeros(w.shape) if w.grad is None else w.grad.numpy()
    return out.detach().numpy(), table.numpy(), grad, None if w is None else weight_grad.reshape(np.shape(weights))


def layout(name, rng):
    """(indices, offsets, include_last_offset) for a layout, with repeats, an empty bag
    and the padding candidate 3 in places."""
    if name == "2d":
        indices = rng.integers(0, ROWS, (4, 3))
        indices[1, 1] = 3
        indices[2] = 3  # a bag of padding only (when padding_idx is 3)
        return indices, None, False
    indices = rng.integers(0, ROWS, 12)
    indices[[1, 5]] = 3
    indices[7] = indices[6]
    if name == "offsets":
        return indices, np.array([0, 3, 3, 7]), False  # bag 1 is empty; the last runs to the end
    if name == "csr":
        return indices, np.array([0, 2, 2, 6, 12]), True
    return indices, np.array([0, 2, 2, 6, 10]), True  # CSR whose positions 10 and 11 are in no bag


def torch_supports(shape, mode, weighted, freq, sparse, max_norm_mode):
    """Whether torch.nn.functional.embedding_bag computes this combination, and correctly:
    on PyTorch 2.13's CPU, scale_grad_by_freq divides some rows by another index's count
    (pytorch/pytorch#190063), and ids after the last of include_last_offset's offsets are
    summed into the last bag where SPEC §8 leaves them out; the SPEC reference alone checks
    those."""
    return ((not weighted or mode == "sum") and (mode != "max" or not sparse) and not freq
            and max_norm_mode != "clip" and shape != "csr_trailing")


@pytest.mark.parametrize("max_norm, max_norm_mode", [(None, "renorm"), (1.0, "renorm"), (1.0, "clip")],
                         ids=["no-max-norm", "renorm", "clip"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("freq", [False, True], ids=["", "freq"])
@pytest.mark.parametrize("weighted", [False, True], ids=["", "weighted"])
@pytest.mark.parametrize("shape", ["2d", "offsets", "csr", "csr_trailing"])
@pytest.mark.parametrize("padding_idx", [None, 3], ids=["no-padding", "padding"])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_against_the_spec_and_torch(mode, padding_idx, shape, weighted, freq, sparse, max_norm, max_norm_mode):
    rng = np.random.default_rng(7)
    weight = rng.standard_normal((ROWS, DIM))
    indices, offsets, last = layout(shape, rng)
    weights = rng.standard_normal(indices.shape) if weighted else None
    options = dict(mode=mode, padding_idx=padding_idx, scale_grad_by_freq=freq, max_norm=max_norm)
    bag = EmbeddingBag.from_pretrained(weight, freeze=False, sparse=sparse, include_last_offset=last,
                                       max_norm_mode=max_norm_mode, **options)
    ours_weights = None if weights is None else et.Tensor(weights, requires_grad=True)
    out = bag(indices, offsets, ours_weights)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    grad = bag.weight.grad
    assert isinstance(grad, et.RowSparseGrad) == sparse
    grad = grad.to_dense().numpy() if sparse else grad.numpy()
    expected = spec_reference(weight, indices, offsets, last, weights=weights, norm_type=2.0,
                              max_norm_mode=max_norm_mode, upstream=upstream, **options)
    for got, want, what in zip((out.numpy(), bag.weight.numpy(), grad), expected, ("output", "weight", "grad")):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=what)
    if weighted:
        np.testing.assert_allclose(ours_weights.grad.numpy(), expected[3], rtol=1e-12, atol=1e-12)
    if torch_supports(shape, mode, weighted, freq, sparse, max_norm_mode):
        table = torch.tensor(weight, requires_grad=True)
        theirs_weights = None if weights is None else torch.tensor(weights, requires_grad=True)
        theirs = torch.nn.functional.embedding_bag(
            torch.tensor(indices), table, None if offsets is None else torch.tensor(offsets),
            per_sample_weights=theirs_weights, include_last_offset=last, sparse=sparse, **options)
        theirs.backward(torch.tensor(upstream))
        np.testing.assert_allclose(out.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
        their_grad = table.grad.to_dense() if sparse else table.grad
        np.testing.assert_allclose(grad, their_grad.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bag.weight.numpy(), table.detach().numpy(), rtol=1e-12, atol=1e-12)
        if weighted:
            np.testing.assert_allclose(ours_weights.grad.numpy(), theirs_weights.grad.numpy(), rtol=1e-12, atol=1e-12)


@st.composite
def bag_layouts(draw):
    """Random bags: empty ones, all-padding ones, repeated ids, sometimes one giant bag."""
    lengths = draw(st.lists(st.integers(0, 6), min_size=0, max_size=6))
    if draw(st.booleans()):
        lengths.insert(draw(st.integers(0, len(lengths))), 150)
    size = sum(lengths)
    ids = draw(st.lists(st.integers(0, 5), min_size=size, max_size=size))
    return np.array(ids, np.int64), np.cumsum([0] + lengths[:-1]).astype(np.int64) if lengths else np.zeros(0, np.int64)


@settings(max_examples=60, deadline=None)
@given(layout_=bag_layouts(), mode=st.sampled_from(["sum", "mean", "max"]), padding=st.sampled_from([None, 0, 2]),
       weighted=st.booleans(), sparse=st.booleans(), seed=st.integers(0, 2**16))
def test_random_bag_layouts(layout_, mode, padding, weighted, sparse, seed):
    indices, offsets = layout_
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((6, 3))
    weights = rng.standard_normal(indices.shape) if weighted else None
    bag = EmbeddingBag.from_pretrained(weight, freeze=False, mode=mode, padding_idx=padding, sparse=sparse)
    ours_weights = None if weights is None else et.Tensor(weights, requires_grad=True)
    out = bag(indices, offsets, ours_weights)
    assert out.shape == (len(offsets), 3)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    expected = spec_reference(weight, indices, offsets, False, mode, padding, weights, upstream=upstream)
    np.testing.assert_allclose(out.numpy(), expected[0], rtol=1e-12, atol=1e-12)
    grad = bag.weight.grad
    if grad is not None:
        grad = grad.to_dense() if sparse else grad
        np.testing.assert_allclose(grad.numpy(), expected[2], rtol=1e-12, atol=1e-12)
    if weighted:
        np.testing.assert_allclose(ours_weights.grad.numpy(), expected[3], rtol=1e-12, atol=1e-12)


def test_max_sends_the_gradient_to_the_earliest_maximum():
    weight = np.array([[1.0, 5.0], [3.0, 5.0], [3.0, 0.0]])
    bag = EmbeddingBag.from_pretrained(weight, freeze=False, mode="max")
    out = bag([[0, 1, 2, 1]])
    np.testing.assert_array_equal(out.numpy(), [[3.0, 5.0]])
    out.backward(np.ones((1, 2)))
    np.testing.assert_array_equal(bag.weight.grad.numpy(), [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("dtype", [et.DType.F16, et.DType.BF16, et.DType.F32], ids=str)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_half_precision_pools_in_float32(dtype, mode, rng):
    weight = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    bag = EmbeddingBag.from_pretrained(weight, freeze=False, mode=mode, dtype=dtype, sparse=True)
    rounded = bag.weight.numpy().astype(np.float64)
    indices = rng.integers(0, ROWS, 400)  # long bags: float32 sums keep their precision
    offsets = np.array([0, 150, 150, 390])
    weights = rng.standard_normal(400)
    out = bag(indices, offsets, et.Tensor(weights, dtype=dtype))
    assert out.dtype is dtype
    upstream = rng.standard_normal(out.shape)
    out.backward(et.Tensor(upstream, dtype=dtype))
    rounded_weights = et.Tensor(weights, dtype=dtype).numpy().astype(np.float64)
    expected = spec_reference(rounded, indices, offsets, False, mode, weights=rounded_weights,
                              upstream=et.Tensor(upstream, dtype=dtype).numpy().astype(np.float64))
    step = {et.DType.F16: 1e-3, et.DType.BF16: 8e-3, et.DType.F32: 1e-6}[dtype]
    scale = np.abs(expected[0]).max()
    np.testing.assert_allclose(out.numpy().astype(np.float64), expected[0], atol=2 * step * scale)
    assert bag.weight.grad.dtype is dtype
    np.testing.assert_allclose(bag.weight.grad.to_dense().numpy().astype(np.float64), expected[2],
                               atol=2 * step * np.abs(expected[2]).max())


def test_backward_is_deterministic(rng):
    weight = rng.standard_normal((1000, 16)).astype(np.float32)
    indices = rng.zipf(1.3, 200000) % 1000
    offsets = np.sort(rng.choice(200000, 999, replace=False))
    offsets[0] = 0
    grads = []
    for _ in range(2):
        bag = EmbeddingBag.from_pretrained(weight, freeze=False, mode="mean", scale_grad_by_freq=True)
        weights = et.Tensor(rng.standard_normal(200000).astype(np.float32) * 0 + 0.5, requires_grad=True)
        bag(indices, np.unique(offsets), weights).sum().backward()
        grads.append((bag.weight.grad.numpy(), weights.grad.numpy()))
    assert grads[0][0].tobytes() == grads[1][0].tobytes() and grads[0][1].tobytes() == grads[1][1].tobytes()


# Row widths around every tile shape of the pooling kernel: whole vectors, a partial one,
# one tile, a tile and a bit, several tiles (64 float32 / 32 float64 columns a tile).
WIDTHS = [*range(1, 18), 31, 32, 33, 63, 64, 65, 127, 128, 129, 300]


@pytest.mark.parametrize("dtype", [et.DType.F32, et.DType.F64], ids=str)
@pytest.mark.parametrize("width", WIDTHS)
def test_every_row_width_pools_like_the_reference(width, dtype, rng):
    weight = rng.standard_normal((40, width))
    indices = rng.integers(0, 40, 300)
    indices[:9] = 3
    offsets = np.array([0, 9, 9, 10, 100, 300])  # padding only, empty, one row, long bags
    weights = rng.standard_normal(300)
    for mode in ("sum", "mean"):
        for sample in (None, weights):
            bag = EmbeddingBag.from_pretrained(weight, mode=mode, padding_idx=3, include_last_offset=True,
                                              dtype=dtype)
            out = bag(indices, offsets, None if sample is None else et.Tensor(sample, dtype=dtype))
            expected = spec_reference(bag.weight.numpy().astype(np.float64), indices, offsets, True, mode,
                                      padding_idx=3, weights=None if sample is None else
                                      et.Tensor(sample, dtype=dtype).numpy().astype(np.float64))[0]
            tolerance = 1e-12 if dtype is et.DType.F64 else 1e-5
            np.testing.assert_allclose(out.numpy(), expected, atol=tolerance * np.abs(expected).max(),
                                       err_msg=f"mode={mode}, weighted={sample is not None}")

# --- errors: named, and nothing changed -----------------------------------------------------

@pytest.mark.parametrize("indices, offsets, words", [
    (np.arange(6), None, "need offsets"),
    (np.arange(6).reshape(2, 3), np.array([0, 1]), "offsets must be None"),
    (np.arange(6).reshape(1, 2, 3), None, "shape \\(1, 2, 3\\)"),
    (np.arange(6), np.array([1, 3]), "offsets\\[0\\] must be 0, got 1"),
    (np.arange(6), np.array([0, 4, 2]), "offsets\\[2\\] = 2 is below offsets\\[1\\] = 4"),
    (np.arange(6), np.array([0, 7]), "offsets\\[1\\] = 7 is past the end of the 6 indices"),
    (np.arange(6), np.array([[0, 3]]), "offsets must be 1-D integers"),
    (np.arange(6), np.array([0.0, 3.0]), "offsets must be 1-D integers"),
])
def test_bad_bags_raise_and_change_nothing(indices, offsets, words):
    bag = EmbeddingBag(10, 3, max_norm=0.1)
    before = bag.weight.numpy().tobytes()
    with pytest.raises(et.InvalidArgumentError if "shape" not in words else et.ShapeError, match=words):
        bag(indices, offsets)
    assert bag.weight.numpy().tobytes() == before


def test_include_last_offset_needs_an_offset():
    with pytest.raises(et.InvalidArgumentError, match="one entry more"):
        EmbeddingBag(10, 3, include_last_offset=True)(np.arange(3), np.zeros(0, np.int64))


def test_bad_sample_weights_and_indices_raise_and_change_nothing():
    bag = EmbeddingBag(10, 3, max_norm=0.1, mode="sum")
    before = bag.weight.numpy().tobytes()
    with pytest.raises(et.ShapeError, match="indices' shape \\(2, 3\\)"):
        bag(np.zeros((2, 3), np.int64), per_sample_weights=np.ones(6, np.float32))
    with pytest.raises(et.DTypeError, match="table's dtype F32, got F64"):
        bag(np.zeros((2, 3), np.int64), per_sample_weights=np.ones((2, 3)))
    with pytest.raises(et.IndexOutOfRangeError, match="index 10 at position \\(4,\\)"):
        bag(np.array([1, 2, 3, 4, 10]), np.array([0, 2]))
    assert bag.weight.numpy().tobytes() == before


def test_no_bags_give_no_rows():
    assert EmbeddingBag(5, 3)(np.zeros(0, np.int64), []).shape == (0, 3)
    assert EmbeddingBag(5, 3)(np.zeros((0, 4), np.int64)).shape == (0, 3)


# --- the layer ------------------------------------------------------------------------------

def test_layer_properties_repr_and_checkpoints(tmp_path):
    bag = EmbeddingBag(20, 4, mode="max", padding_idx=-1, include_last_offset=True, sparse=True)
    assert (bag.mode, bag.include_last_offset, bag.padding_idx, bag.num_embeddings) == ("max", True, 19, 20)
    assert repr(bag) == "EmbeddingBag(20, 4, padding_idx=19, sparse=True, mode='max', include_last_offset=True)"
    assert np.all(bag.weight.numpy()[19] == 0) and list(bag.state_dict()) == ["weight"]
    bag.save(tmp_path / "bag.safetensors")
    loaded = EmbeddingBag.load(tmp_path / "bag.safetensors")
    assert repr(loaded) == repr(bag) and loaded.weight.numpy().tobytes() == bag.weight.numpy().tobytes()
    with pytest.raises(et.InvalidArgumentError, match="mode must be one of"):
        EmbeddingBag(3, 2, mode="median")


def test_same_seed_same_table_as_embedding():
    et.manual_seed(3)
    a = et.nn.Embedding(30, 4, padding_idx=2)
    et.manual_seed(3)
    b = EmbeddingBag(30, 4, padding_idx=2)
    assert a.weight.numpy().tobytes() == b.weight.numpy().tobytes()


def test_torch_state_dict_loads_and_goes_back(rng):
    theirs = torch.nn.EmbeddingBag(15, 3, mode="sum")
    ours = EmbeddingBag(15, 3, mode="sum")
    ours.load_state_dict(theirs.state_dict())
    indices, offsets = rng.integers(0, 15, 9), np.array([0, 4])
    np.testing.assert_allclose(ours(indices, offsets).numpy(),
                               theirs(torch.tensor(indices), torch.tensor(offsets)).detach().numpy(), rtol=1e-6)
    back = torch.nn.EmbeddingBag(15, 3, mode="sum")
    back.load_state_dict({k: torch.from_dlpack(v) for k, v in ours.state_dict().items()})
    assert torch.equal(back.weight, theirs.weight)


def test_functional_matches_the_layer(rng):
    weight = et.Tensor(rng.standard_normal((8, 3)), requires_grad=True)
    indices, offsets = rng.integers(0, 8, 10), np.array([0, 5, 5])
    out = F.embedding_bag(indices, weight, offsets, mode="max", padding_idx=1, sparse=True)
    layer = EmbeddingBag.from_pretrained(weight.numpy(), mode="max", padding_idx=1)
    np.testing.assert_array_equal(out.numpy(), layer(indices, offsets).numpy())
    out.sum().backward()
    assert isinstance(weight.grad, et.RowSparseGrad)


def test_a_table_changed_before_the_backward_of_weighted_bags_refuses_it():
    bag = EmbeddingBag(6, 2, mode="sum")
    weights = et.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = bag([[1, 2, 3]], per_sample_weights=weights.reshape(1, 3))
    optimizer = et.optim.SGD(bag.parameters(), lr=0.1)
    bag.weight.grad = et.Tensor(np.ones((6, 2), np.float32))
    optimizer.step()  # changes the rows the weights' gradient reads
    with pytest.raises(et.ModifiedTensorError):
        out.sum().backward()

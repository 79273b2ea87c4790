"""Embedding, forward side: construction, initialisation, lookup, max_norm, errors.

PyTorch is the oracle for lookups and renorm; a float64 NumPy formula for clip mode.
"""

import math

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import embtable as et

pytestmark = pytest.mark.usefixtures("both_storages")
from embtable.nn import Embedding
from embtable.nn import functional as F

INDEX_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
NORM_TYPES = [1.0, 2.0, 3.0, math.inf]


# --- construction ---------------------------------------------------------------------------

def test_properties_and_defaults():
    emb = Embedding(10, 4)
    assert (emb.num_embeddings, emb.embedding_dim) == (10, 4)
    assert emb.padding_idx is None and emb.max_norm is None and emb.norm_type == 2.0
    assert emb.scale_grad_by_freq is False and emb.sparse is False
    assert emb.weight.shape == (10, 4) and emb.weight.dtype is et.DType.F32
    assert emb.weight.device == et.Device.CPU and emb.weight.requires_grad is True
    assert emb.parameters() == [emb.weight]
    assert emb.training and emb.state is et.LayerState.TRAINING


def test_properties_are_read_only():
    emb = Embedding(10, 4, padding_idx=1)
    for name in ["num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
                 "scale_grad_by_freq", "sparse"]:
        with pytest.raises(AttributeError):
            setattr(emb, name, 3)


def test_new_and_new_with_spec_follow_the_seed():
    assert repr(Embedding.new(10000, 300)) == "Embedding(10000, 300)"
    emb = Embedding.new_with_spec(10000, 300, 0, 5.0, 2.0, True, et.Device.CPU, et.DType.F64)
    assert (emb.padding_idx, emb.max_norm, emb.norm_type, emb.scale_grad_by_freq) == (0, 5.0, 2.0, True)
    assert emb.weight.dtype is et.DType.F64
    assert repr(emb) == "Embedding(10000, 300, padding_idx=0, max_norm=5.0, scale_grad_by_freq=True)"


def test_repr_shows_non_defaults_only():
    assert repr(Embedding(10000, 300, padding_idx=0, max_norm=5.0)) == \
        "Embedding(10000, 300, padding_idx=0, max_norm=5.0)"
    assert repr(Embedding(5, 2, norm_type=1, sparse=True, max_norm=1, max_norm_mode="clip")) == \
        "Embedding(5, 2, max_norm=1.0, norm_type=1.0, sparse=True, max_norm_mode='clip')"


@pytest.mark.parametrize("padding_idx, expected", [(0, 0), (9, 9), (-1, 9), (-10, 0)])
def test_negative_padding_idx_is_normalised(padding_idx, expected):
    emb = Embedding(10, 3, padding_idx=padding_idx)
    assert emb.padding_idx == expected
    assert (emb.weight.numpy()[expected] == 0).all()


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(num_embeddings=0, embedding_dim=3), et.InvalidArgumentError, "num_embeddings"),
    (dict(num_embeddings=2.0, embedding_dim=3), et.InvalidArgumentError, "num_embeddings"),
    (dict(num_embeddings=True, embedding_dim=3), et.InvalidArgumentError, "num_embeddings"),
    (dict(num_embeddings=4, embedding_dim=0), et.InvalidArgumentError, "embedding_dim"),
    (dict(num_embeddings=4, embedding_dim=3, padding_idx=4), et.InvalidArgumentError, "padding_idx"),
    (dict(num_embeddings=4, embedding_dim=3, padding_idx=-5), et.InvalidArgumentError, "-5"),
    (dict(num_embeddings=4, embedding_dim=3, padding_idx=1.5), et.InvalidArgumentError, "1.5"),
    (dict(num_embeddings=4, embedding_dim=3, max_norm=0.0), et.InvalidArgumentError, "max_norm"),
    (dict(num_embeddings=4, embedding_dim=3, max_norm=-1), et.InvalidArgumentError, "-1"),
    (dict(num_embeddings=4, embedding_dim=3, max_norm=math.nan), et.InvalidArgumentError, "nan"),
    (dict(num_embeddings=4, embedding_dim=3, norm_type=0), et.InvalidArgumentError, "norm_type"),
    (dict(num_embeddings=4, embedding_dim=3, norm_type="2"), et.InvalidArgumentError, "norm_type"),
    (dict(num_embeddings=4, embedding_dim=3, scale_grad_by_freq=1), et.InvalidArgumentError, "scale_grad_by_freq"),
    (dict(num_embeddings=4, embedding_dim=3, max_norm_mode="clamp"), et.InvalidArgumentError, "clamp"),
    (dict(num_embeddings=4, embedding_dim=3, dtype=et.DType.I64), et.DTypeError, "I64"),
    (dict(num_embeddings=4, embedding_dim=3, dtype="int32"), et.DTypeError, "I32"),
    (dict(num_embeddings=4, embedding_dim=3, device="cuda:0"), et.DeviceError, "cuda:0"),
    (dict(num_embeddings=4, embedding_dim=3, device=et.Device.MPS), et.DeviceError, "mps"),
])
def test_bad_construction_arguments(kwargs, error, words):
    with pytest.raises(error, match=words.replace(".", r"\.")):
        Embedding(**kwargs)


def test_norm_type_may_be_inf():
    assert Embedding(4, 3, norm_type=math.inf).norm_type == math.inf


@pytest.mark.parametrize("dtype", [et.DType.F16, et.DType.BF16, et.DType.F32, et.DType.F64])
def test_every_float_dtype(dtype):
    emb = Embedding(6, 3, dtype=dtype)
    assert emb.weight.dtype is dtype
    assert emb(np.array([1, 2])).dtype is dtype


def test_dtype_accepts_numpy_and_names():
    assert Embedding(2, 2, dtype=np.float64).weight.dtype is et.DType.F64
    assert Embedding(2, 2, dtype="bfloat16").weight.dtype is et.DType.BF16
    assert Embedding(2, 2, dtype=torch.float16).weight.dtype is et.DType.F16


def test_default_dtype_is_used():
    et.set_default_dtype(et.DType.F64)
    assert Embedding(2, 2).weight.dtype is et.DType.F64


# --- initialisation -------------------------------------------------------------------------

def test_initialisation_is_scaled_normal_and_reproducible():
    et.manual_seed(7)
    first = Embedding(2000, 100, padding_idx=3).weight.numpy()
    et.manual_seed(7)
    again = Embedding(2000, 100, padding_idx=3).weight.numpy()
    assert np.array_equal(first, again)
    assert (first[3] == 0).all()
    values = np.delete(first, 3, axis=0).astype(np.float64) * math.sqrt(100)
    # N(0, 1) after undoing the 1/sqrt(dim) scale: 199,900 samples
    assert abs(values.mean()) < 0.01
    assert abs(values.std() - 1) < 0.01
    assert abs(np.mean(np.abs(values) < 1) - 0.6827) < 0.005


def test_a_rows_initial_values_depend_only_on_the_seed_and_its_place():
    """Rows are drawn in fixed chunks, each from its own stream, on all cores: a smaller
    table is the start of a larger one, and chunks are not copies of each other."""
    from embtable.rng import CHUNK_ROWS

    et.manual_seed(11)
    large = Embedding(2 * CHUNK_ROWS + 5, 8).weight.numpy()
    et.manual_seed(11)
    small = Embedding(100, 8).weight.numpy()
    et.manual_seed(11)
    middle = Embedding(CHUNK_ROWS + 3, 8).weight.numpy()
    assert small.tobytes() == large[:100].tobytes() and middle.tobytes() == large[:CHUNK_ROWS + 3].tobytes()
    assert not np.array_equal(large[:100], large[CHUNK_ROWS:CHUNK_ROWS + 100])
    second = Embedding(100, 8).weight.numpy()  # the next table draws another seed
    assert not np.array_equal(second, small)


def test_a_failed_construction_does_not_consume_randomness():
    et.manual_seed(3)
    with pytest.raises(et.InvalidArgumentError):
        Embedding(5, 4, padding_idx=5)
    after_failure = Embedding(5, 4).weight.numpy()
    et.manual_seed(3)
    assert np.array_equal(after_failure, Embedding(5, 4).weight.numpy())


# --- from_pretrained ------------------------------------------------------------------------

def test_from_pretrained_copies_and_keeps_padding_row(rng):
    weights = rng.standard_normal((5, 3))
    emb = Embedding.from_pretrained(weights, padding_idx=1)
    weights[0, 0] = 99.0
    assert emb.weight.dtype is et.DType.F64
    assert emb.weight.requires_grad is False
    assert emb.weight.numpy()[0, 0] != 99.0
    assert np.array_equal(emb.weight.numpy()[1], weights[1])  # not zeroed
    assert Embedding.from_pretrained(weights, freeze=False).weight.requires_grad is True


def test_from_pretrained_accepts_tensors_lists_and_torch():
    source = torch.randn(4, 2)
    from_torch = Embedding.from_pretrained(source)
    assert np.array_equal(from_torch.weight.numpy(), source.numpy())
    from_list = Embedding.from_pretrained([[1.0, 2.0], [3.0, 4.0]])
    assert from_list.weight.dtype is et.DType.F32
    from_tensor = Embedding.from_pretrained(from_list.weight, dtype=et.DType.BF16, sparse=True)
    assert from_tensor.weight.dtype is et.DType.BF16 and from_tensor.sparse


@pytest.mark.parametrize("weights, error", [
    (np.ones((3, 2), dtype=np.int64), et.DTypeError),
    ([[1, 2], [3, 4]], et.DTypeError),
    (np.ones(3), et.ShapeError),
    (np.ones((2, 2, 2)), et.ShapeError),
    (np.ones((0, 3)), et.ShapeError),
])
def test_from_pretrained_rejects_bad_weights(weights, error):
    with pytest.raises(error):
        Embedding.from_pretrained(weights)


def test_from_pretrained_casts_integers_when_asked():
    emb = Embedding.from_pretrained(np.ones((3, 2), dtype=np.int64), dtype=et.DType.F32)
    assert emb.weight.dtype is et.DType.F32


# --- forward --------------------------------------------------------------------------------

def test_seed_examples_shapes():
    emb = Embedding.new(10, 5)
    assert emb.forward(et.Tensor([1, 3, 5, 7])).shape == (4, 5)
    assert emb(et.Tensor([1, 3, 5, 7, 2, 4, 6, 8]).reshape(2, 4)).shape == (2, 4, 5)


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_every_integer_index_dtype_matches_torch(index_dtype, rng):
    emb = Embedding(100, 7)
    indices = rng.integers(0, 100, size=(3, 4)).astype(index_dtype)
    expected = torch.nn.functional.embedding(torch.from_numpy(indices.astype(np.int64)),
                                             torch.from_numpy(emb.weight.numpy()))
    for given_as in (indices, et.Tensor(indices), torch.from_numpy(indices.astype(np.int64)), indices.tolist()):
        assert np.array_equal(emb(given_as).numpy(), expected.numpy())


@pytest.mark.parametrize("shape", [(), (0,), (2, 0), (1,), (2, 3, 4)])
def test_any_index_shape(shape):
    emb = Embedding(10, 3)
    indices = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 10
    out = emb(indices)
    assert out.shape == shape + (3,)
    assert np.array_equal(out.numpy(), emb.weight.numpy()[indices])


def test_zero_d_index_and_empty_list():
    emb = Embedding(10, 3)
    assert emb(et.Tensor(4)).shape == (3,)
    assert emb(np.int64(4)).shape == (3,)
    assert emb([]).shape == (0, 3)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_forward_matches_torch(data):
    rows = data.draw(st.integers(1, 50))
    dim = data.draw(st.integers(1, 9))
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    dtype = data.draw(st.sampled_from(INDEX_DTYPES))
    upper = min(rows, np.iinfo(dtype).max + 1)
    indices = data.draw(hnp.arrays(dtype, shape, elements=st.integers(0, upper - 1)))
    weights = data.draw(hnp.arrays(np.float32, (rows, dim), elements=st.floats(-3, 3, width=32)))
    emb = Embedding.from_pretrained(weights)
    expected = torch.nn.functional.embedding(torch.from_numpy(indices.astype(np.int64)),
                                             torch.from_numpy(weights))
    assert np.array_equal(emb(indices).numpy(), expected.numpy())


def test_padding_row_is_returned_as_it_is():
    emb = Embedding(5, 2, padding_idx=0)
    assert (emb([0, 0]).numpy() == 0).all()
    changed = emb.weight.numpy()
    changed[0] = [1.5, -2.5]
    emb.load_state_dict({"weight": changed})
    assert np.array_equal(emb([0]).numpy(), [[1.5, -2.5]])


def test_training_state_does_not_change_forward(rng):
    emb = Embedding(20, 4, max_norm=0.5)
    indices = rng.integers(0, 20, size=30)
    trained = emb(indices).numpy()
    assert np.array_equal(emb.eval()(indices).numpy(), trained)
    assert emb.state is et.LayerState.EVAL


def test_half_precision_forward_is_exact():
    weights = np.linspace(-2, 2, 40, dtype=np.float32).reshape(10, 4).astype(ml_dtypes.bfloat16)
    emb = Embedding.from_pretrained(weights)
    out = emb([3, 9, 3])
    assert out.dtype is et.DType.BF16
    assert np.array_equal(out.numpy(), weights[[3, 9, 3]])


# --- max_norm: renorm -----------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_renorm_matches_torch_output_and_weight(norm_type, dtype, rng):
    weights = (rng.standard_normal((40, 6)) * 2).astype(dtype)
    indices = rng.integers(0, 40, size=(5, 7))
    max_norm = 1.5
    torch_weight = torch.from_numpy(weights.copy())
    expected = torch.nn.functional.embedding(torch.from_numpy(indices), torch_weight,
                                             max_norm=max_norm, norm_type=norm_type)
    emb = Embedding.from_pretrained(weights, max_norm=max_norm, norm_type=norm_type)
    out = emb(indices)
    tolerance = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=0)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), **tolerance)
    np.testing.assert_allclose(emb.weight.numpy(), torch_weight.numpy(), **tolerance)
    untouched = np.setdiff1d(np.arange(40), indices)
    assert np.array_equal(emb.weight.numpy()[untouched], weights[untouched])
    norms = np.linalg.norm(out.numpy().astype(np.float64), ord=norm_type, axis=-1)
    assert (norms <= max_norm * (1 + 1e-6)).all()


def test_renorm_scales_by_max_norm_over_norm_plus_eps():
    weights = np.array([[3.0, 4.0], [0.3, 0.4]])
    emb = Embedding.from_pretrained(weights, max_norm=1.0)
    emb([0, 0, 1])
    np.testing.assert_array_equal(emb.weight.numpy()[0], weights[0] * (1.0 / (5.0 + 1e-7)))
    np.testing.assert_array_equal(emb.weight.numpy()[1], weights[1])


def test_renorm_happens_in_eval_mode_too():
    emb = Embedding.from_pretrained(np.full((3, 4), 10.0), max_norm=1.0).eval()
    emb([2])
    assert np.linalg.norm(emb.weight.numpy()[2]) == pytest.approx(1.0, rel=1e-6)
    assert np.array_equal(emb.weight.numpy()[:2], np.full((2, 4), 10.0))


@pytest.mark.parametrize("dtype", [et.DType.F16, et.DType.BF16])
def test_renorm_half_precision_close_to_torch(dtype, rng):
    weights = (rng.standard_normal((30, 8)) * 3).astype(np.float32)
    indices = rng.integers(0, 30, size=50)
    torch_dtype = torch.float16 if dtype is et.DType.F16 else torch.bfloat16
    torch_weight = torch.from_numpy(weights).to(torch_dtype)
    expected = torch.nn.functional.embedding(torch.from_numpy(indices), torch_weight, max_norm=2.0)
    emb = Embedding.from_pretrained(torch_weight, max_norm=2.0)
    assert emb.weight.dtype is dtype
    out = emb(indices).numpy().astype(np.float32)
    np.testing.assert_allclose(out, expected.float().numpy(), rtol=1e-2, atol=1e-2)


# --- max_norm: clip -------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", NORM_TYPES + [0.5])
def test_clip_matches_formula_and_leaves_weight(norm_type, rng):
    weights = rng.standard_normal((25, 5)) * 2
    indices = rng.integers(0, 25, size=(4, 6))
    emb = Embedding.from_pretrained(weights, max_norm=1.2, norm_type=norm_type, max_norm_mode="clip")
    out = emb(indices).numpy()
    rows = weights[indices]
    norms = np.linalg.norm(rows, ord=norm_type, axis=-1) if norm_type >= 1 else \
        (np.abs(rows) ** norm_type).sum(-1) ** (1 / norm_type)
    expected = rows * np.minimum(1.0, 1.2 / (norms + 1e-7))[..., None]
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=0)
    assert np.array_equal(emb.weight.numpy(), weights)


def test_clip_via_functional():
    weight = et.Tensor(np.array([[3.0, 4.0], [0.3, 0.4]]))
    out = F.embedding([0, 1], weight, max_norm=1.0, max_norm_mode="clip").numpy()
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)
    assert np.array_equal(weight.numpy(), [[3.0, 4.0], [0.3, 0.4]])


# --- functional.embedding -------------------------------------------------------------------

def test_functional_never_zeroes_padding_row_and_renorms_in_place(rng):
    weight = et.Tensor(rng.standard_normal((6, 3)) * 5)
    before = weight.numpy()
    out = F.embedding(np.array([0, 2]), weight, padding_idx=0)
    assert np.array_equal(out.numpy(), before[[0, 2]])
    F.embedding(np.array([1]), weight, max_norm=1.0)
    assert np.linalg.norm(weight.numpy()[1]) == pytest.approx(1.0, rel=1e-7)
    assert np.array_equal(weight.numpy()[[0, 2, 3, 4, 5]], before[[0, 2, 3, 4, 5]])


@pytest.mark.parametrize("weight, error", [
    (np.ones((3, 2)), et.InvalidArgumentError),
    (et.Tensor(np.ones((3, 2), dtype=np.int32)), et.DTypeError),
    (et.Tensor(np.ones(3)), et.ShapeError),
])
def test_functional_rejects_bad_weight(weight, error):
    with pytest.raises(error):
        F.embedding([0], weight)


def test_functional_validates_options():
    with pytest.raises(et.InvalidArgumentError, match="padding_idx"):
        F.embedding([0], et.Tensor(np.ones((3, 2))), padding_idx=3)


# --- bad indices ----------------------------------------------------------------------------

def test_out_of_range_message_names_first_position_and_value():
    emb = Embedding(10, 3)
    with pytest.raises(et.IndexOutOfRangeError) as caught:
        emb(np.array([[0, 1, 2], [3, 4, 10]]))
    assert str(caught.value) == "index 10 at position (1, 2) is out of range for an embedding table of 10 rows"
    assert isinstance(caught.value, IndexError)
    with pytest.raises(et.IndexOutOfRangeError, match=r"index -1 at position \(0, 1\)"):
        emb([[0, -1, 12]])
    with pytest.raises(et.IndexOutOfRangeError, match=r"index 11 at position \(\)"):
        emb(11)
    with pytest.raises(et.IndexOutOfRangeError, match=r"index 300 at position \(0,\)"):
        emb(np.array([300], dtype=np.uint16))


@pytest.mark.parametrize("indices", [
    np.array([1.0, 2.0]), [0.5], np.array([True, False]), torch.tensor([1.0]),
    et.Tensor([1.0, 2.0]), np.array([1, 2], dtype=np.float16),
])
def test_non_integer_indices_raise_dtype_error(indices):
    with pytest.raises(et.DTypeError, match="integer"):
        Embedding(10, 3)(indices)


@pytest.mark.parametrize("mode", ["renorm", "clip"])
def test_a_forward_that_raises_changes_nothing(mode, rng):
    emb = Embedding.from_pretrained(rng.standard_normal((10, 4)) * 10, max_norm=1.0, max_norm_mode=mode)
    before = emb.weight.numpy()
    batch = np.array([[1, 2, 3], [4, 5, 10]])  # every row long, one index bad
    with pytest.raises(et.IndexOutOfRangeError):
        emb(batch)
    assert emb.weight.numpy().tobytes() == before.tobytes()
    with pytest.raises(et.DTypeError):
        emb(batch.astype(np.float32))
    assert emb.weight.numpy().tobytes() == before.tobytes()


def test_views_and_column_major_weights(rng):
    weights = rng.standard_normal((6, 4))
    emb = Embedding.from_pretrained(np.asfortranarray(weights), max_norm=1.0)
    assert np.allclose(emb([5]).numpy(), weights[[5]] / np.linalg.norm(weights[5]), rtol=1e-6)
    transposed = et.Tensor(weights.T.copy()).T  # a transposed view of a (4, 6) tensor
    np.testing.assert_array_equal(F.embedding([2, 0], transposed).numpy(), weights[[2, 0]])

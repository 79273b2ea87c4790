"""Quantized tables (SPEC §10): every value within half a step of the original, lookups
exactly the float layer over `dequantize()`, bags as it up to summation order (float64
references), the layout's size, checkpoints bit for bit, and the errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embtable as et
from embtable.nn import Embedding, EmbeddingBag, QuantizedEmbedding, QuantizedEmbeddingBag

F32_EPS = 2.0 ** -24


def group_bounds(values, group):
    """Each group's minimum and maximum (float64), ``[rows, groups]``."""
    grouped = values.astype(np.float64).reshape(values.shape[0], -1, group)
    return grouped.min(axis=2), grouped.max(axis=2)


ROUNDING = {"F64": 0.0, "F32": F32_EPS, "F16": 2.0 ** -11, "BF16": 2.0 ** -8}  # half an ulp, relative


def assert_within_half_a_step(original, dequantized, bits, group, dtype="F32"):
    """Half a step of each group, plus the float32 roundings of its scale, offset and value
    (a few ulps of its largest magnitude) and the value's own rounding to `dtype`."""
    low, high = group_bounds(original, group)
    half_step = (high - low) / (2 ** bits - 1) / 2
    magnitude = np.maximum(np.abs(low), np.abs(high))
    allowed = ((half_step + 4 * F32_EPS * magnitude)[..., None]
               + ROUNDING[dtype] * np.abs(dequantized.astype(np.float64)).reshape(*low.shape, group))
    error = np.abs(dequantized.astype(np.float64) - original.astype(np.float64)).reshape(*low.shape, group)
    assert (error <= allowed).all(), float((error - allowed).max())


@st.composite
def tables(draw):
    rows, dim = draw(st.integers(1, 12)), draw(st.sampled_from([1, 2, 3, 6, 8, 16]))
    group = draw(st.sampled_from([None, *[g for g in (1, 2, 3, 4, 8) if dim % g == 0]]))
    dtype = draw(st.sampled_from(["F32", "F64", "F16", "BF16"]))
    kind = draw(st.sampled_from(["normal", "constant rows", "huge range", "tiny", "signed zeros", "integers"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if kind == "normal":
        values = rng.normal(0, draw(st.sampled_from([1e-3, 1.0, 50.0])), (rows, dim))
    elif kind == "constant rows":
        values = np.repeat(rng.normal(0, 10, (rows, 1)), dim, axis=1)
    elif kind == "huge range":
        values = rng.uniform(-1, 1, (rows, dim)) * 10.0 ** rng.integers(-4, 37, (rows, dim))
    elif kind == "tiny":
        values = rng.normal(0, 1e-30, (rows, dim))
    elif kind == "signed zeros":
        values = rng.choice([0.0, -0.0, 1.5, -2.25], (rows, dim))
    else:
        values = rng.integers(-200, 200, (rows, dim)).astype(np.float64)
    if dtype in ("F16", "BF16"):
        values = np.clip(values, -6e4, 6e4)
    return et.Tensor(values, dtype=dtype), draw(st.sampled_from([8, 4])), group


@settings(max_examples=150, deadline=None)
@given(table=tables())
def test_every_value_is_within_half_a_step_of_the_original(table):
    weights, bits, group = table
    layer = Embedding.from_pretrained(weights)
    q = layer.to_quantized(bits, group)
    original = weights.to(dtype="F64").numpy()
    dequantized = q.dequantize()
    assert dequantized.dtype == weights.dtype and q.group_size == group and q.bits == bits
    assert_within_half_a_step(original, dequantized.to(dtype="F64").numpy(), bits, group or weights.shape[1],
                              weights.dtype.name)
    assert layer.weight.numpy().tobytes() == weights.numpy().tobytes()  # the source is left as it is


@pytest.mark.parametrize("bits, group", [(8, None), (4, None), (8, 4), (4, 2)])
def test_a_zero_row_is_exact_zeros_and_lookups_are_the_dequantized_rows(rng, bits, group):
    et.manual_seed(5)
    layer = Embedding(50, 8, padding_idx=7)
    q = layer.to_quantized(bits, group)
    table = q.dequantize().numpy()
    assert table[7].tobytes() == np.zeros(8, np.float32).tobytes()  # +0.0, not -0.0
    ids = rng.integers(0, 50, (3, 4, 5))
    assert q(ids).shape == (3, 4, 5, 8)
    assert q(ids).numpy().tobytes() == table[ids].tobytes()
    assert q(ids).numpy().tobytes() == Embedding.from_pretrained(table)(ids).numpy().tobytes()


def bag_reference(table, ids, bounds, weights, mode, padding_idx):
    """Each bag pooled in float64 from the dequantized `table`."""
    out = np.zeros((len(bounds) - 1, table.shape[1]))
    for b in range(len(bounds) - 1):
        kept = [i for i in range(bounds[b], bounds[b + 1]) if ids[i] != padding_idx]
        if not kept:
            continue
        rows = table[ids[kept]].astype(np.float64) * (1.0 if weights is None else weights[kept, None])
        out[b] = rows.max(axis=0) if mode == "max" else rows.sum(axis=0) / (len(kept) if mode == "mean" else 1)
    return out


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("bits, group", [(8, None), (4, None), (8, 8), (4, 8), (4, 4)])
@pytest.mark.parametrize("weighted", [False, True])
def test_bags_are_the_float_bag_over_the_dequantized_table(rng, mode, bits, group, weighted):
    et.manual_seed(2)
    layer = EmbeddingBag(40, 16, mode=mode, padding_idx=3, include_last_offset=True)
    q = layer.to_quantized(bits, group)
    table = q.dequantize().numpy()
    ids = rng.integers(0, 40, 30)
    ids[[0, 5, 6]] = 3
    bounds = np.array([0, 0, 4, 5, 7, 19, 30, 30])  # empty bags, a bag of padding only
    ids[4] = 3
    weights = rng.normal(size=30).astype(np.float32) if weighted else None
    pooled = q(ids, bounds, weights).numpy()
    expected = bag_reference(table, ids, bounds, weights, mode, 3)
    assert pooled.dtype == np.float32 and pooled.shape == (7, 16)
    np.testing.assert_allclose(pooled, expected, rtol=2e-6, atol=1e-6)
    floated = EmbeddingBag.from_pretrained(table, mode=mode, padding_idx=3, include_last_offset=True)
    np.testing.assert_allclose(pooled, floated(ids, bounds, weights).numpy(), rtol=2e-6, atol=1e-6)
    two_d = rng.integers(0, 40, (6, 5))
    np.testing.assert_allclose(q(two_d).numpy(), bag_reference(table, two_d.reshape(-1), np.arange(7) * 5, None,
                                                                mode, 3), rtol=2e-6, atol=1e-6)


def test_float64_tables_pool_in_float64(rng):
    layer = EmbeddingBag.from_pretrained(rng.normal(size=(20, 6)), mode="mean")
    q = layer.to_quantized(8, 3)
    ids = rng.integers(0, 20, (4, 7))
    table = q.dequantize().numpy()
    assert table.dtype == np.float64
    np.testing.assert_allclose(q(ids).numpy(), bag_reference(table, ids.reshape(-1), np.arange(5) * 7, None,
                                                             "mean", None), rtol=1e-13)


@pytest.mark.parametrize("dim", [32, 64, 128])
def test_the_tables_are_4_to_8_times_smaller(dim):
    layer = Embedding(1000, dim)
    for bits, group, per_row in ((8, None, dim + 8), (4, None, dim // 2 + 8), (8, 32, dim + 8 * dim // 32),
                                 (4, 32, dim // 2 + 8 * dim // 32)):
        assert layer.to_quantized(bits, group).nbytes == 1000 * per_row
    assert layer.to_quantized(8).nbytes <= 1.2 * 1000 * (dim + 8)
    assert layer.to_quantized(4).nbytes <= 1.2 * 1000 * (dim / 2 + 4)


def test_max_norm_is_applied_when_quantizing_and_the_source_is_left_as_it_is(rng):
    layer = Embedding.from_pretrained(rng.normal(0, 3, (30, 8)).astype(np.float32), max_norm=2.0)
    before = layer.weight.numpy().copy()
    q = layer.to_quantized(8)
    assert q.max_norm == 2.0
    assert layer.weight.numpy().tobytes() == before.tobytes()
    norms = np.linalg.norm(q.dequantize().numpy().astype(np.float64), axis=1)
    assert (norms <= 2.0 + 0.05).all() and (norms > 1.9).sum() >= 25  # most rows were longer, now ~2
    renormed = Embedding.from_pretrained(before, max_norm=2.0)
    renormed(np.arange(30))  # the float layer's renorm: what was quantized
    assert_within_half_a_step(renormed.weight.numpy(), q.dequantize().numpy(), 8, 8)


@pytest.mark.parametrize("kind", [QuantizedEmbedding, QuantizedEmbeddingBag])
def test_a_saved_quantized_layer_loads_bit_for_bit(tmp_path, rng, kind):
    et.manual_seed(4)
    source = (Embedding(60, 12, padding_idx=2) if kind is QuantizedEmbedding
              else EmbeddingBag(60, 12, mode="max", padding_idx=2, dtype="F64"))
    q = source.to_quantized(4, 6)
    q.save(tmp_path / "q.safetensors")
    loaded = kind.load(tmp_path / "q.safetensors")
    assert type(loaded) is kind and loaded.config() == q.config() and loaded.dtype == q.dtype
    for name, buffer in q.state_dict().items():
        assert loaded.state_dict()[name].numpy().tobytes() == buffer.numpy().tobytes(), name
    ids = rng.integers(0, 60, (5, 3))
    assert loaded(ids).numpy().tobytes() == q(ids).numpy().tobytes()
    assert q.parameters() == [] and [name for name, _ in q.named_buffers()] == ["rows"]
    other = QuantizedEmbeddingBag if kind is QuantizedEmbedding else QuantizedEmbedding
    with pytest.raises(et.SerializationError, match=f"not {other.__name__}"):
        other.load(tmp_path / "q.safetensors")


def test_bad_layouts_values_and_indices_raise():
    layer = Embedding(10, 6)
    for bits, group in ((3, None), (16, None), (8.0, None), (8, 4), (8, 0), (4, True)):
        with pytest.raises(et.InvalidArgumentError, match="bits|group_size"):
            layer.to_quantized(bits, group)
    for values in ([[1.0, 2.0], [np.inf, 0.0]], [[1.0, 2.0], [1e39, 1.1e39]], [[0.0, 0.0], [np.nan, 1.0]]):
        with pytest.raises(et.InvalidArgumentError, match="row 1"):
            Embedding.from_pretrained(np.array(values)).to_quantized()
    with pytest.raises(et.InvalidArgumentError, match="range must fit in float32"):
        Embedding.from_pretrained(np.array([[-3e38, 3e38]])).to_quantized()
    q = layer.to_quantized()
    with pytest.raises(et.IndexOutOfRangeError):
        q(np.array([0, 10]))
    with pytest.raises(et.InvalidArgumentError, match="offsets"):
        EmbeddingBag(10, 6).to_quantized()(np.arange(4), np.array([1, 2]))


def test_a_quantized_layer_serves_another_float_dtype_also_inside_another_layer(rng, tmp_path):
    q = Embedding(20, 4).to_quantized(np.int64(8))  # NumPy integers read as ints (and save as JSON)
    ids = rng.integers(0, 20, 9)
    as_f32 = q(ids).numpy()
    et.nn.Sequential(q).to(dtype="F64")
    assert q.dtype == et.DType.F64 and q.rows.dtype == et.DType.U8
    assert q(ids).numpy().tobytes() == q.dequantize().numpy()[ids].tobytes()
    np.testing.assert_allclose(q(ids).numpy(), as_f32, rtol=F32_EPS)  # the same values, rounded once to F64
    q.save(tmp_path / "q.safetensors")
    assert QuantizedEmbedding.load(tmp_path / "q.safetensors").config() == q.config()


# --- PyTorch's 8-bit row-wise layout ----------------------------------------------------------

torch = pytest.importorskip("torch")  # in the test extras: present wherever the suite runs


def torch_bag(packed, ids, bounds, mode, weights=None):
    """`torch.ops.quantized.embedding_bag_byte_rowwise_offsets` over CSR `bounds`."""
    return torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
        torch.from_numpy(np.ascontiguousarray(packed)), torch.from_numpy(ids), torch.from_numpy(bounds), False,
        {"sum": 0, "mean": 1, "max": 2}[mode], False, None if weights is None else torch.from_numpy(weights), None,
        True).numpy()


def test_a_table_packed_by_pytorch_is_served_as_pytorch_unpacks_it(rng):
    weights = torch.from_numpy(rng.normal(0, 2, (64, 24)).astype(np.float32))
    packed = torch.ops.quantized.embedding_bag_byte_prepack(weights)
    q = QuantizedEmbedding.from_packed_rows(packed)
    unpacked = torch.ops.quantized.embedding_bag_byte_unpack(packed).numpy()
    assert q.dequantize().numpy().tobytes() == unpacked.tobytes()
    assert q.to_packed_rows().numpy().tobytes() == packed.numpy().tobytes()
    ids = rng.integers(0, 64, (7, 3))
    assert q(ids).numpy().tobytes() == unpacked[ids].tobytes()
    bag = QuantizedEmbeddingBag.from_packed_rows(packed.numpy(), mode="sum", include_last_offset=True)
    flat, bounds = rng.integers(0, 64, 40), np.array([0, 3, 3, 17, 40])
    per_sample = rng.normal(size=40).astype(np.float32)
    np.testing.assert_allclose(bag(flat, bounds, per_sample).numpy(),
                               torch_bag(packed, flat, bounds, "sum", per_sample), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_a_table_quantized_here_is_served_by_pytorch_as_here(rng, mode):
    layer = EmbeddingBag.from_pretrained(rng.normal(0, 1, (80, 32)).astype(np.float32), mode=mode,
                                         include_last_offset=True)
    q = layer.to_quantized(8)
    packed = q.to_packed_rows().numpy()
    assert packed.shape == (80, 40)
    unpacked = torch.ops.quantized.embedding_bag_byte_unpack(torch.from_numpy(packed)).numpy()
    assert unpacked.tobytes() == q.dequantize().numpy().tobytes()
    flat, bounds = rng.integers(0, 80, 50), np.array([0, 10, 11, 30, 50])
    served = (torch_bag(packed, flat, bounds, mode) if mode == "sum"  # PyTorch's quantized bags only sum
              else EmbeddingBag.from_pretrained(unpacked, mode=mode, include_last_offset=True)(flat, bounds).numpy())
    np.testing.assert_allclose(q(flat, bounds).numpy(), served, rtol=1e-5, atol=1e-5)
    again = QuantizedEmbeddingBag.from_packed_rows(packed, mode=mode, include_last_offset=True)
    assert again.to_packed_rows().numpy().tobytes() == packed.tobytes()


def test_only_8_bit_row_wise_tables_have_pytorchs_layout():
    for bits, group in ((4, None), (8, 4)):
        with pytest.raises(et.InvalidArgumentError, match="packed rows hold 8-bit codes"):
            Embedding(10, 8).to_quantized(bits, group).to_packed_rows()
    for bad in (np.zeros((3, 8), np.uint8), np.zeros((3, 12), np.float32), np.zeros(12, np.uint8)):
        with pytest.raises(et.InvalidArgumentError, match="packed rows must be U8"):
            QuantizedEmbedding.from_packed_rows(bad)
    nan_scale = np.zeros((2, 12), np.uint8)
    nan_scale[:, 4:8] = np.frombuffer(np.float32(np.nan).tobytes(), np.uint8)
    with pytest.raises(et.InvalidArgumentError, match="finite"):
        QuantizedEmbedding.from_packed_rows(nan_scale)


@pytest.mark.parametrize("dim", [5, 6, 7])
def test_rows_whose_codes_are_padded_convert_to_and_from_pytorchs_layout(rng, dim):
    weights = torch.from_numpy(rng.normal(0, 1, (9, dim)).astype(np.float32))
    packed = torch.ops.quantized.embedding_bag_byte_prepack(weights)
    q = QuantizedEmbedding.from_packed_rows(packed)
    assert q.nbytes == 9 * (-(-dim // 4) * 4 + 8)  # codes padded to whole float32 words
    assert q.to_packed_rows().numpy().tobytes() == packed.numpy().tobytes()
    assert q.dequantize().numpy().tobytes() == torch.ops.quantized.embedding_bag_byte_unpack(packed).numpy().tobytes()


@pytest.mark.parametrize("dim", [3, 13, 72, 136])
@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("bits", [8, 4])
def test_row_wise_sums_of_any_width_match_float64(rng, dim, mode, bits):
    layer = EmbeddingBag.from_pretrained(rng.normal(size=(50, dim)).astype(np.float32), mode=mode, padding_idx=1)
    q = layer.to_quantized(bits)
    ids = rng.integers(0, 50, 60)
    ids[::7] = 1
    bounds = np.array([0, 1, 1, 9, 30, 59])
    weights = rng.normal(size=60).astype(np.float32)
    expected = bag_reference(q.dequantize().numpy(), ids, np.append(bounds, 60), weights, mode, 1)
    np.testing.assert_allclose(q(ids, bounds, weights).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dim, bits, group, dtype", [(6, 4, 3, "F32"), (272, 8, 136, "F32"), (272, 4, 136, "F32"),
                                                     (24, 8, 8, "F16"), (24, 4, None, "BF16")])
def test_bags_of_odd_wide_and_half_precision_layouts_match_float64(rng, dim, bits, group, dtype):
    weights = et.Tensor(rng.normal(size=(30, dim)), dtype=dtype)
    q = EmbeddingBag.from_pretrained(weights, mode="sum", include_last_offset=True).to_quantized(bits, group)
    ids, bounds = rng.integers(0, 30, 40), np.array([0, 5, 5, 31])  # positions 31: past the last bag
    per_sample = et.Tensor(rng.normal(size=40), dtype=dtype)
    expected = bag_reference(q.dequantize().to(dtype="F64").numpy(), ids, bounds, per_sample.to(dtype="F64").numpy(),
                             "sum", None)
    pooled = q(ids, bounds, per_sample)
    assert pooled.dtype == et.DType[dtype]
    tolerance = {"F32": 1e-5, "F16": 2e-2, "BF16": 1e-1}[dtype]
    np.testing.assert_allclose(pooled.to(dtype="F64").numpy(), expected, rtol=tolerance, atol=tolerance)

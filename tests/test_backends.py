"""Conformance of every backend to the `Backend` protocol: the same names and signatures,
and the same values as a NumPy (float64 where it counts) reference, function by function.
Runs against the NumPy backend and a PyTorch backend on the CPU (and CUDA / MPS where
PyTorch sees them), whatever EMBTABLE_CPU_BACKEND says."""

import inspect
import math

import numpy as np
import pytest
import torch

import embtable as et
from embtable.backends import Backend, FusedStep
from embtable.backends.base import NAMESPACE
from embtable.backends.numpy_backend import NUMPY
from embtable.backends.torch_backend import TorchBackend


def backends():
    found = [NUMPY, TorchBackend(et.Device.CPU)]
    if torch.cuda.is_available():
        found.append(TorchBackend(et.Device.CUDA(0)))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append(TorchBackend(et.Device.MPS))
    return found


@pytest.fixture(params=backends(), ids=lambda b: f"{type(b).__name__}-{b.device}")
def backend(request):
    return request.param


PROTOCOL_METHODS = sorted(name for name, value in vars(Backend).items()
                          if callable(value) and not name.startswith("_"))


def put(backend, array):
    return backend.from_host(np.array(array, order="C"))  # a copy: NumPy's from_host shares memory


def host(backend, array):
    return np.array(backend.to_host(array))


def test_the_protocol_lists_the_functions():
    assert {"take_rows", "scatter_sum", "fused_step", "first_out_of_range", "renorm_rows_"} <= set(PROTOCOL_METHODS)


def test_every_function_is_there_with_the_protocols_signature(backend):
    assert isinstance(backend, Backend)
    for name in PROTOCOL_METHODS:
        expected = list(inspect.signature(getattr(Backend, name)).parameters)[1:]  # without self
        assert list(inspect.signature(getattr(backend, name)).parameters) == expected, name
    for name in NAMESPACE:
        assert callable(getattr(backend.xp, name)), name
    assert isinstance(backend.device, et.Device)


def test_the_torch_namespace_creates_arrays_on_its_device():
    """PyTorch's meta device stands in for a GPU: arrays the ops create (aranges, zeros,
    results of host scalars) must land where the backend keeps its data."""
    meta = TorchBackend(et.Device.CPU, torch_device="meta").xp
    created = [meta.arange(3), meta.zeros((2,), torch.float32), meta.asarray(np.float32(1.0)),
               meta.where(meta.zeros((2,), torch.bool), meta.zeros((2,), torch.float32), 0)]
    assert all(t.device.type == "meta" for t in created)


@pytest.mark.parametrize("dtype", list(et.DType), ids=str)
def test_host_round_trip_and_dtypes(backend, dtype):
    values = (np.arange(6) % 2).astype(dtype.numpy).reshape(2, 3)
    array = put(backend, values)
    foreign = torch.from_numpy(values.view(np.int16) if dtype is et.DType.BF16 else values) \
        if backend is NUMPY else values
    assert backend.owns(array) and not backend.owns(foreign)
    assert backend.dtype_of(array) is dtype
    np.testing.assert_array_equal(host(backend, array), values)
    cast = backend.astype(array, et.DType.F64, copy=True)
    assert backend.dtype_of(cast) is et.DType.F64
    np.testing.assert_array_equal(host(backend, cast), values.astype(np.float64))


def test_constructors_and_concat(backend):
    np.testing.assert_array_equal(host(backend, backend.zeros((2, 3), et.DType.F32)), np.zeros((2, 3)))
    np.testing.assert_array_equal(host(backend, backend.ones((4,), et.DType.I64)), np.ones(4))
    joined = backend.concat([put(backend, np.arange(3)), put(backend, np.arange(2))])
    np.testing.assert_array_equal(host(backend, joined), [0, 1, 2, 0, 1])


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64])
def test_first_out_of_range(backend, dtype):
    info = np.iinfo(dtype)
    largest = np.array([0, info.max, 1], dtype)  # in range of tables larger than the dtype
    for limit in (300, 40000, 2**40) + ((int(info.max) + 1,) if info.max < 2**40 else ()):
        expected = -1 if int(info.max) < limit else 1
        assert backend.first_out_of_range(put(backend, largest), limit) == expected, limit
    good = np.array([[0, 5], [9, 3]], dtype)
    assert backend.first_out_of_range(put(backend, good), 10) == -1
    assert backend.first_out_of_range(put(backend, np.zeros((0, 3), dtype)), 10) == -1
    high = good.copy()
    high[1, 0] = 10
    assert backend.first_out_of_range(put(backend, high), 10) == 2
    top = good.copy()
    top[0, 1] = info.max
    assert backend.first_out_of_range(put(backend, top), 10) == 1
    if info.min < 0:
        low = good.copy()
        low[1, 1] = -1
        assert backend.first_out_of_range(put(backend, low), 10) == 3
    index = backend.index_array(put(backend, good))
    assert backend.dtype_of(index) is et.DType.I64
    np.testing.assert_array_equal(host(backend, index), good.astype(np.int64))


def test_counting_and_grouping(backend, rng):
    indices = rng.integers(0, 20, 200)
    array = put(backend, indices)
    np.testing.assert_array_equal(host(backend, backend.bincount(array, 25)), np.bincount(indices, minlength=25))
    assert sorted(host(backend, backend.distinct(array, 20)).tolist()) == sorted(set(indices.tolist()))
    huge = put(backend, np.array([7, 10**9, 7, 3]))  # a table far larger than the batch
    assert sorted(host(backend, backend.distinct(huge, 2 * 10**9)).tolist()) == [3, 7, 10**9]
    expected_rows, inverse, expected_counts = np.unique(indices, return_inverse=True, return_counts=True)
    for num_rows in (None, 20, 10**6):  # unbounded; counted within a small table; sorted in a huge one
        rows, counts, slots = backend.group_rows(array, num_rows)
        np.testing.assert_array_equal(host(backend, rows), expected_rows)
        assert backend.dtype_of(rows) is et.DType.I64
        np.testing.assert_array_equal(host(backend, counts), expected_counts)
        np.testing.assert_array_equal(host(backend, slots), inverse)


@pytest.mark.parametrize("dtype", [et.DType.F32, et.DType.F64, et.DType.F16, et.DType.BF16], ids=str)
def test_take_rows(backend, dtype, rng):
    table = rng.standard_normal((50, 7)).astype(dtype.numpy)
    indices = rng.integers(0, 50, (3, 4))
    out = backend.take_rows(put(backend, table), put(backend, indices))
    np.testing.assert_array_equal(host(backend, out), table[indices])
    big = rng.integers(0, 50, 20000)  # past the small-output path
    np.testing.assert_array_equal(host(backend, backend.take_rows(put(backend, table), put(backend, big))),
                                  table[big])


@pytest.mark.parametrize("dtype", [et.DType.F32, et.DType.F64], ids=str)
def test_scatter_sum(backend, dtype, rng):
    values = rng.standard_normal((40, 3)).astype(dtype.numpy)
    slots = rng.integers(0, 6, 40)
    targets = np.array([2, -1, 0, 4, 1, 3])  # slot 1 is dropped
    counts = np.array([1, 2, 3, 1, 5, 2])
    got = backend.scatter_sum(put(backend, values), put(backend, slots), 5, put(backend, targets),
                              put(backend, counts))
    expected = np.zeros((5, 3))
    for value, slot in zip(values.astype(np.float64), slots):
        if targets[slot] >= 0:
            expected[targets[slot]] += value / counts[slot]
    np.testing.assert_allclose(host(backend, got), expected, rtol=1e-5 if dtype is et.DType.F32 else 1e-12)
    plain = backend.scatter_sum(put(backend, values), put(backend, slots), 8)
    reference = np.zeros((8, 3))
    np.add.at(reference, slots, values.astype(np.float64))
    np.testing.assert_allclose(host(backend, plain), reference, rtol=1e-5)
    again = backend.scatter_sum(put(backend, values), put(backend, slots), 8)
    assert np.array_equal(host(backend, plain), host(backend, again))  # deterministic


def test_scatter_sum_of_no_positions(backend):
    """An empty batch's gradient: all zeros, with or without counts, targets or bags."""
    from embtable.backends import BagGradient

    values, slots = put(backend, np.zeros((0, 3))), put(backend, np.zeros(0, np.int64))
    nothing = put(backend, np.zeros(0))
    for kwargs in (dict(), dict(counts=put(backend, np.zeros(4, np.int64))),
                   dict(targets=put(backend, np.zeros(0, np.int64))),
                   dict(bags=BagGradient(put(backend, np.zeros(0, np.int64)), nothing, nothing))):
        got = backend.scatter_sum(values, slots, 4, **kwargs)
        np.testing.assert_array_equal(host(backend, got), np.zeros((4, 3)))


def test_add_rows(backend, rng):
    table = rng.standard_normal((6, 2))
    array = put(backend, table)
    backend.add_rows_(array, put(backend, np.array([4, 1])), put(backend, np.ones((2, 2))))
    expected = table.copy()
    expected[[4, 1]] += 1
    np.testing.assert_allclose(host(backend, array), expected)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("dtype", [et.DType.F32, et.DType.F64, et.DType.F16], ids=str)
def test_renorm_rows(backend, p, dtype, rng):
    table = (rng.standard_normal((10, 5)) * 2).astype(dtype.numpy)
    rows = np.array([1, 4, 7])
    array = put(backend, table)
    backend.renorm_rows_(array, put(backend, rows), 1.0, p)
    wide = table.astype(np.float64)
    norms = np.abs(wide).max(1) if p == math.inf else (np.abs(wide) ** p).sum(1) ** (1 / p)
    expected = wide.copy()
    for r in rows:
        if norms[r] > 1.0:
            expected[r] *= 1.0 / (norms[r] + 1e-7)
    tolerance = 2e-3 if dtype is et.DType.F16 else 1e-6
    np.testing.assert_allclose(host(backend, array).astype(np.float64), expected, rtol=tolerance, atol=tolerance)
    untouched = [r for r in range(10) if r not in rows]
    np.testing.assert_array_equal(host(backend, array)[untouched], table[untouched])


RULES = [lambda p: et.optim.SGD(p, lr=0.1), lambda p: et.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
         lambda p: et.optim.Adam(p, lr=0.1, weight_decay=0.1), lambda p: et.optim.AdamW(p, lr=0.1),
         lambda p: et.optim.Adagrad(p, lr=0.1, weight_decay=0.1)]


@pytest.mark.parametrize("make", RULES, ids=["sgd", "sgd-momentum", "adam", "adamw", "adagrad"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "rows"])
def test_fused_step_computes_the_reference_rule(backend, make, sparse, rng):
    """A kernel that runs gives the optimizer's reference rule (float64: to rounding);
    NumPy's backend has one for every FusedStep."""
    rule = make([et.Tensor([1.0], requires_grad=True)])  # an optimizer is its rule
    param, grad = rng.standard_normal((6, 5000)), rng.standard_normal((6, 5000))  # several dense blocks
    rows = np.array([1, 4]) if sparse else None
    g = grad[rows] if sparse else grad
    buffers = [np.abs(rng.standard_normal((6, 5000))) for _ in rule.buffer_names()]
    scalars = rule.scalars(3)
    expected = [b.copy() for b in [param, *buffers]]
    current = [t[rows] if sparse else t for t in expected]
    for target, new in zip(expected, rule.update(np, current[0], g, current[1:], scalars, sparse)):
        if sparse:
            target[rows] = new
        else:
            target[...] = new
    arrays = [put(backend, a) for a in [param, *buffers]]
    ran = backend.fused_step(rule.fused_step, arrays[0], None if rows is None else put(backend, rows),
                             put(backend, g), arrays[1:], scalars)
    assert ran or backend is not NUMPY
    for got, want, before in zip(arrays, expected, [param, *buffers]):
        np.testing.assert_allclose(host(backend, got), want if ran else before, rtol=1e-12, atol=1e-15)


def test_fused_step_says_whether_it_ran(backend, rng):
    """True with the parameter updated (here: plain SGD, whose result is exact), or False
    with nothing changed."""
    param = rng.standard_normal((4, 3))
    grad = rng.standard_normal((4, 3))
    array = put(backend, param)
    ran = backend.fused_step(FusedStep.SGD, array, None, put(backend, grad), [], (0.5, 0.0, 0.0))
    assert isinstance(ran, bool)
    np.testing.assert_allclose(host(backend, array), param - 0.5 * grad if ran else param, rtol=1e-12)
    rows = np.array([0, 3])
    array = put(backend, param)
    ran = backend.fused_step(FusedStep.SGD, array, put(backend, rows), put(backend, grad[:2]), [], (0.5, 0.0, 0.0))
    expected = param.copy()
    if ran:
        expected[rows] -= 0.5 * grad[:2]
    np.testing.assert_allclose(host(backend, array), expected, rtol=1e-12)


# --- pooled lookups -----------------------------------------------------------------------------

OFFSETS = np.array([0, 3, 3, 7])  # bag 1 empty; positions 7 and 8 in no bag


def reference_pool(table, indices, offsets, weights, mode, padding_idx, ids):
    """Each bag's pool in float64, and the earliest argmax, from the Backend docstring."""
    out = np.zeros((len(offsets) - 1, table.shape[1]))
    argmax = np.full(out.shape, -1)
    for b in range(len(offsets) - 1):
        kept = [i for i in range(offsets[b], offsets[b + 1]) if ids[i] != padding_idx]
        if not kept:
            continue
        rows = table[indices[kept]].astype(np.float64) * (1 if weights is None else weights[kept, None])
        out[b] = rows.sum(0) if mode == "sum" else rows.mean(0) if mode == "mean" else rows.max(0)
        argmax[b] = np.array(kept)[rows.argmax(0)]  # argmax: the first of equal maxima
    return out, argmax


def test_bag_of(backend):
    got = backend.bag_of(put(backend, OFFSETS), 9)
    np.testing.assert_array_equal(host(backend, got), [0, 0, 0, 2, 2, 2, 2, -1, -1])


@pytest.mark.parametrize("dtype", [et.DType.F32, et.DType.F64, et.DType.F16], ids=str)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_pool_rows(backend, mode, weighted, dtype, rng):
    table = rng.standard_normal((6, 4)).astype(dtype.numpy)
    indices = np.array([1, 4, 1, 2, 5, 5, 0, 3, 3])
    ids = np.array([1, 4, 1, 2, 2, 5, 0, 3, 3])  # position 4 reads row 5 but is padding (id 2)
    weights = rng.standard_normal(9).astype(dtype.numpy) if weighted else None
    for padding_idx, given_ids in ((None, None), (2, None), (2, ids)):
        wanted_ids = indices if given_ids is None else given_ids
        expected, winners = reference_pool(table, indices, OFFSETS, weights, mode,
                                           -1 if padding_idx is None else padding_idx, wanted_ids)
        out, argmax = backend.pool_rows(put(backend, table), put(backend, indices), put(backend, OFFSETS),
                                        None if weights is None else put(backend, weights), mode, padding_idx,
                                        None if given_ids is None else put(backend, given_ids))
        assert backend.dtype_of(out) is dtype
        tolerance = 2e-3 if dtype is et.DType.F16 else 1e-6
        np.testing.assert_allclose(host(backend, out).astype(np.float64), expected, rtol=tolerance, atol=tolerance)
        if mode == "max":
            np.testing.assert_array_equal(host(backend, argmax), winners)
        else:
            assert argmax is None


def test_scatter_sum_and_weight_grad_of_bags(backend, rng):
    from embtable.backends import BagGradient

    g = rng.standard_normal((3, 4))  # one gradient row per bag
    sources = np.array([0, 0, -1, 2, 2, 2, 1, -1])  # position 2: padding, 7: in no bag
    coefficients = rng.standard_normal(8)
    scales = rng.random(8)
    selected = np.array([[0, 1, 0, 1], [6, 6, 6, 6], [3, 4, 5, 3]])
    slots = np.array([4, 1, 4, 0, 1, 4, 2, 3])  # each position's table row
    table = rng.standard_normal((5, 4))
    for winners in (None, selected):
        bags = BagGradient(put(backend, sources), put(backend, coefficients), put(backend, scales),
                           None if winners is None else put(backend, winners))
        expected = np.zeros((5, 4))
        weight_grad = np.zeros(8)
        for i, b in enumerate(sources):
            if b < 0:
                continue
            share = g[b] * (1 if winners is None else winners[b] == i)
            expected[slots[i]] += coefficients[i] * share
            weight_grad[i] = scales[i] * (share * table[slots[i]]).sum()
        got = backend.scatter_sum(put(backend, g), put(backend, slots), 5, bags=bags)
        np.testing.assert_allclose(host(backend, got), expected, rtol=1e-12, atol=1e-12)
        got = backend.bag_weight_grad(put(backend, g), put(backend, table), put(backend, slots), bags)
        np.testing.assert_allclose(host(backend, got), weight_grad, rtol=1e-12, atol=1e-12)


def test_tables_and_state_start_on_a_cache_line(backend):
    """Rows of 64 floats then span four cache lines, not five (see embtable.memory)."""
    for array in (backend.zeros((1000, 64), et.DType.F32),
                  backend.astype(put(backend, np.ones((1000, 64), np.float32)), et.DType.F64, copy=True)):
        assert backend.to_host(array).ctypes.data % 64 == 0


def test_a_new_table_starts_on_a_cache_line():
    from embtable.core import data_of

    def address(tensor):
        array = data_of(tensor)
        return array.ctypes.data if isinstance(array, np.ndarray) else array.data_ptr()

    for table in (et.nn.Embedding(1000, 64), et.nn.EmbeddingBag(1000, 64, dtype=et.DType.F16),
                  et.nn.Embedding.from_pretrained(np.ones((1000, 64), np.float32))):
        assert address(table.weight) % 64 == 0


# --- dot products of rows -----------------------------------------------------------------------

@pytest.mark.parametrize("layout, chunked", [("C", False), ("C", True), ("F", False)],
                         ids=["one-chunk", "chunked", "fortran"])  # F: tables the NumPy kernel cannot take
@pytest.mark.parametrize("n, k", [(9, 4), (9, 1), (9, 0), (0, 3), (0, 0), (3000, 7)])
@pytest.mark.parametrize("dtype", [et.DType.F32, et.DType.F64, et.DType.F16, et.DType.BF16], ids=str)
def test_row_dots(backend, dtype, n, k, layout, chunked, rng, monkeypatch):
    if chunked:  # where a backend gathers rows (PyTorch's; NumPy's for half precision), a chunk at a time
        monkeypatch.setattr("embtable.backends.torch_backend.CHUNK_ELEMENTS", 50)
        monkeypatch.setattr("embtable.backends.numpy_backend.CHUNK_ELEMENTS", 50)
    table_a = rng.standard_normal((20, 7)).astype(dtype.numpy)
    table_b = rng.standard_normal((15, 7)).astype(dtype.numpy)
    ids_a, ids_b = rng.integers(0, 20, n), rng.integers(0, 15, (n, k))
    if n:
        ids_a[:3], ids_b[0, :] = 19, 14  # repeats, and the last rows
    arrange = np.asfortranarray if layout == "F" else np.ascontiguousarray
    args = (backend.from_host(arrange(table_a)), put(backend, ids_a), backend.from_host(arrange(table_b)),
            put(backend, ids_b))
    out = backend.row_dots(*args)
    assert backend.dtype_of(out) is dtype and tuple(out.shape) == (n, k)
    expected = np.einsum("nd,nkd->nk", table_a.astype(np.float64)[ids_a], table_b.astype(np.float64)[ids_b])
    tolerance = {et.DType.F64: 1e-12, et.DType.F32: 1e-5, et.DType.F16: 2e-3, et.DType.BF16: 1.6e-2}[dtype]
    np.testing.assert_allclose(host(backend, out).astype(np.float64), expected, rtol=tolerance, atol=tolerance)
    assert host(backend, backend.row_dots(*args)).tobytes() == host(backend, out).tobytes()  # deterministic
    np.testing.assert_array_equal(host(backend, args[0]), table_a)  # the tables are only read


def test_row_dots_sums_half_precision_in_float32(backend):
    """Products that a half-precision sum would lose: 1 + 2000 * 2**-12 (each step under
    half an ulp of F16 at 1), exact in F32 and then rounded once."""
    dim = 2001
    row = np.full((1, dim), 2.0**-6, np.float32)
    row[0, 0] = 1.0
    other = np.full((1, dim), 2.0**-6, np.float32)
    other[0, 0] = 1.0
    exact = 1.0 + 2000 * 2.0**-12
    for dtype in (et.DType.F16, et.DType.BF16):
        out = backend.row_dots(put(backend, row.astype(dtype.numpy)), put(backend, np.array([0])),
                               put(backend, other.astype(dtype.numpy)), put(backend, np.array([[0, 0]])))
        np.testing.assert_array_equal(host(backend, out).astype(np.float32),
                                      np.full((1, 2), np.float32(exact).astype(dtype.numpy), np.float32))

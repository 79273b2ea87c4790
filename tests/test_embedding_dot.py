"""`F.embedding_dot`: the dot products of rows of two `Embedding` layers as one op.

Its outputs and both tables' gradients are held to the unfused composition
``(table_a(ids_a)[..., None, :] * table_b(ids_b)).sum(-1)`` and to a float64 NumPy formula
in float64 (to 1e-12), and to the same model built with ``torch.nn.functional.embedding``
(float64 and float32), over ``ids_b`` of ``S`` and ``[*S, K]``, sparse and dense tables,
padding and freq scaling on either side, the same layer on both sides, max_norm (renorm
and clip), frozen tables, half precision, empty batches, file-backed tables, errors that
change nothing, in-place changes before backward, determinism, and a property test.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import embtable as et
from embtable.nn import Embedding, EmbeddingBag
from embtable.nn import functional as F
from embtable.optim import SGD

ROWS_A, ROWS_B, DIM = 9, 11, 6
PAD_A, PAD_B = 2, 5  # each side's padding_idx where one is set: present in the ids, non-zero rows

# (ids_a shape S, ids_b shape): S or [*S, K]
SHAPES = {
    "N": ((7,), (7,)),
    "NK": ((7,), (7, 4)),
    "K1": ((7,), (7, 1)),
    "S2": ((3, 4), (3, 4)),
    "S2K": ((3, 4), (3, 4, 5)),
    "scalar-K": ((), (3,)),
}
SIDE_OPTIONS = {
    "plain": {},
    "pad": dict(padding_idx="pad"),
    "freq": dict(scale_grad_by_freq=True),
    "pad-freq": dict(padding_idx="pad", scale_grad_by_freq=True),
}
SPARSITY = {"dense": (False, False), "sparse": (True, True), "dense-sparse": (False, True),
            "sparse-dense": (True, False)}


# --- helpers --------------------------------------------------------------------------------

def composed(table_a, ids_a, table_b, ids_b):
    """What embedding_dot stands for, op by op."""
    rows_a, rows_b = table_a(ids_a), table_b(ids_b)
    if np.ndim(ids_b) > np.ndim(ids_a):
        rows_a = rows_a.unsqueeze(-2)
    return (rows_a * rows_b).sum(-1)


def dense(grad):
    if grad is None:
        return None
    return (grad.to_dense() if isinstance(grad, et.RowSparseGrad) else grad).numpy()


def reference_table_grad(d_rows, ids, shape, padding_idx=None, scale_grad_by_freq=False, **_):
    """A lookup's table gradient from that of its rows, in float64 (torch's semantics)."""
    grad = np.zeros(shape)
    flat = np.asarray(ids).reshape(-1)
    np.add.at(grad, flat, d_rows.reshape(-1, shape[1]))
    if scale_grad_by_freq:
        grad /= np.maximum(np.bincount(flat, minlength=shape[0]), 1)[:, None]
    if padding_idx is not None:
        grad[padding_idx] = 0
    return grad


def reference(weights_a, ids_a, weights_b, ids_b, upstream, options_a, options_b, same):
    """Output and both tables' gradients of the dot products, in float64 NumPy."""
    ids_a, ids_b = np.asarray(ids_a), np.asarray(ids_b)
    rows_a, rows_b = weights_a[ids_a], weights_b[ids_b]
    with_k = ids_b.ndim > ids_a.ndim
    wide_a = rows_a[..., None, :] if with_k else rows_a
    out = (wide_a * rows_b).sum(-1)
    d_rows_a = upstream[..., None] * rows_b
    if with_k:
        d_rows_a = d_rows_a.sum(-2)
    grad_a = reference_table_grad(d_rows_a, ids_a, weights_a.shape, **options_a)
    grad_b = reference_table_grad(upstream[..., None] * wide_a, ids_b, weights_b.shape, **options_b)
    if same:
        grad_a = grad_b = grad_a + grad_b
    return out, grad_a, grad_b


def resolved(options, pad):
    return {name: (pad if value == "pad" else value) for name, value in options.items()}


def make_ids(rng, shape, rows, pad):
    """Ids with repeats, holding `pad` where there is room."""
    ids = rng.integers(0, min(rows, 4), size=shape) if len(shape) else np.int64(rng.integers(0, rows))
    ids = np.array(ids, dtype=np.int64)
    if ids.size >= 2:
        ids.reshape(-1)[[0, -1]] = pad
        ids.reshape(-1)[1] = rows - 1
    return ids


class Case:
    """Two tables' weights (or one, `same`), their options, ids and an upstream gradient."""

    def __init__(self, rng, shape_a, shape_b, options_a, options_b, same=False, dtype=np.float64):
        self.same = same
        rows_b = ROWS_A if same else ROWS_B
        pad_b = PAD_A if same else PAD_B
        self.options_a = resolved(options_a, PAD_A)
        self.options_b = self.options_a if same else resolved(options_b, pad_b)
        self.weights_a = (rng.standard_normal((ROWS_A, DIM)) * 1.5).astype(dtype)
        self.weights_b = self.weights_a if same else (rng.standard_normal((rows_b, DIM)) * 1.5).astype(dtype)
        assert (self.weights_a[PAD_A] != 0).all() and (self.weights_b[pad_b] != 0).all()
        self.ids_a = make_ids(rng, shape_a, ROWS_A, PAD_A)
        self.ids_b = make_ids(rng, shape_b, rows_b, pad_b)
        self.upstream = (rng.standard_normal(shape_b) + 0.5).astype(dtype)  # not all ones

    def layers(self, **extra):
        a = Embedding.from_pretrained(self.weights_a, freeze=False, **self.options_a, **extra)
        b = a if self.same else Embedding.from_pretrained(self.weights_b, freeze=False, **self.options_b, **extra)
        return a, b

    def run(self, fn, **extra):
        """Output, both layers and their gradients after ``fn(a, ids_a, b, ids_b).backward(upstream)``."""
        a, b = self.layers(**extra)
        out = fn(a, self.ids_a, b, self.ids_b)
        out.backward(self.upstream)
        return out, a, b


def assert_same_gradient(got, expected, sparse, dtype=et.DType.F64):
    """`got` is of the kind the layer's `sparse` says, holding `expected`'s rows and values."""
    if sparse:
        assert isinstance(got, et.RowSparseGrad) and isinstance(expected, et.RowSparseGrad)
        rows = got.indices.numpy()
        assert got.indices.dtype is et.DType.I64 and (np.diff(rows) > 0).all()  # distinct, ascending
        np.testing.assert_array_equal(rows, expected.indices.numpy())
    else:
        assert isinstance(got, et.Tensor) and not isinstance(got, et.RowSparseGrad)
    assert got.dtype is dtype
    np.testing.assert_allclose(dense(got), dense(expected), rtol=1e-12, atol=1e-12)


def check_against_composition_and_reference(case, sparse_a, sparse_b):
    fused, a, b = case.run(F.embedding_dot)
    expected, a2, b2 = case.run(composed)
    assert fused.shape == expected.shape == np.shape(case.ids_b)
    assert fused.dtype is et.DType.F64 and fused.requires_grad
    np.testing.assert_allclose(fused.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
    assert_same_gradient(a.weight.grad, a2.weight.grad, sparse_a)
    assert_same_gradient(b.weight.grad, b2.weight.grad, sparse_a if case.same else sparse_b)
    out, grad_a, grad_b = reference(case.weights_a, case.ids_a, case.weights_b, case.ids_b, case.upstream,
                                    case.options_a, case.options_b, case.same)
    np.testing.assert_allclose(fused.numpy(), out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense(a.weight.grad), grad_a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense(b.weight.grad), grad_b, rtol=1e-12, atol=1e-12)
    # the tables are read, never written (no max_norm)
    assert a.weight.numpy().tobytes() == case.weights_a.tobytes()
    assert b.weight.numpy().tobytes() == case.weights_b.tobytes()


# --- float64: the composition and a NumPy formula -----------------------------------------------

# every option on one side with the other plain, both sides', and mixed
OPTION_PAIRS = [(a, "plain") for a in SIDE_OPTIONS] + [("plain", b) for b in SIDE_OPTIONS if b != "plain"] + \
    [("pad", "freq"), ("freq", "pad"), ("pad-freq", "pad-freq")]


@pytest.mark.parametrize("sparsity", SPARSITY)
@pytest.mark.parametrize("options_a, options_b", OPTION_PAIRS, ids=lambda o: o)
@pytest.mark.parametrize("shape", ["N", "NK"])
def test_every_option_on_either_side_matches_the_composition(shape, options_a, options_b, sparsity, rng):
    sparse_a, sparse_b = SPARSITY[sparsity]
    case = Case(rng, *SHAPES[shape], SIDE_OPTIONS[options_a], SIDE_OPTIONS[options_b])
    case.options_a["sparse"], case.options_b["sparse"] = sparse_a, sparse_b
    check_against_composition_and_reference(case, sparse_a, sparse_b)


@pytest.mark.parametrize("sparsity", ["dense", "sparse"])
@pytest.mark.parametrize("options", ["plain", "pad-freq"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_matches_the_composition(shape, options, sparsity, rng):
    sparse_a, sparse_b = SPARSITY[sparsity]
    case = Case(rng, *SHAPES[shape], SIDE_OPTIONS[options], SIDE_OPTIONS[options])
    case.options_a["sparse"], case.options_b["sparse"] = sparse_a, sparse_b
    check_against_composition_and_reference(case, sparse_a, sparse_b)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("options", list(SIDE_OPTIONS))
@pytest.mark.parametrize("shape", ["N", "S2K"])
def test_the_same_layer_on_both_sides_adds_both_gradients(shape, options, sparse, rng):
    case = Case(rng, *SHAPES[shape], SIDE_OPTIONS[options], {}, same=True)
    case.options_a["sparse"] = sparse
    check_against_composition_and_reference(case, sparse, sparse)
    fused, a, b = case.run(F.embedding_dot)
    assert a is b
    if sparse:  # one gradient, each row once
        present = set(case.ids_a.reshape(-1).tolist()) | set(case.ids_b.reshape(-1).tolist())
        present.discard(case.options_a.get("padding_idx"))
        assert a.weight.grad.indices.tolist() == sorted(present)


def test_a_small_example_by_hand():
    a = Embedding.from_pretrained(np.array([[1.0, 2.0], [3.0, -1.0], [7.0, 7.0]]), freeze=False, padding_idx=2)
    b = Embedding.from_pretrained(np.array([[0.5, 1.0], [2.0, 0.0]]), freeze=False, scale_grad_by_freq=True)
    out = F.embedding_dot(a, [0, 2], b, [[1, 1, 0], [0, 1, 1]])
    np.testing.assert_array_equal(out.numpy(), [[2.0, 2.0, 2.5], [10.5, 14.0, 14.0]])
    out.backward(np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]))
    # a's row 0 gets 1*b1 + 2*b1 + 3*b0; the padding row 2 gets nothing
    np.testing.assert_array_equal(a.weight.grad.numpy(), [[7.5, 3.0], [0.0, 0.0], [0.0, 0.0]])
    # b's row 0 is used twice (3*a0 + 1*a2), row 1 four times (1*a0 + 2*a0 + a2 + a2): each / count
    np.testing.assert_array_equal(b.weight.grad.numpy(), [[(3 + 7) / 2, (6 + 7) / 2], [(3 + 14) / 4, (6 + 14) / 4]])


def test_indices_of_any_integer_kind_and_container(rng):
    case = Case(rng, (5,), (5, 3), {}, {})
    expected, _, _ = case.run(F.embedding_dot)
    for convert in (lambda i: i.astype(np.int32), lambda i: i.astype(np.uint8), lambda i: i.tolist(),
                    lambda i: et.Tensor(i, dtype=et.DType.I64), lambda i: et.Tensor(i, dtype=et.DType.I16)):
        out, _, _ = case.run(lambda a, ia, b, ib: F.embedding_dot(a, convert(ia), b, convert(ib)))
        assert out.numpy().tobytes() == expected.numpy().tobytes()


# --- PyTorch ----------------------------------------------------------------------------------

def torch_model(case, dtype, max_norm=None):
    """Output, both dense gradients and weights after the call, from torch.nn.functional.embedding."""
    weight_a = torch.tensor(case.weights_a, dtype=dtype, requires_grad=True)
    weight_b = weight_a if case.same else torch.tensor(case.weights_b, dtype=dtype, requires_grad=True)

    def look(ids, weight, options):
        return torch.nn.functional.embedding(torch.from_numpy(np.asarray(ids)), weight,
                                             padding_idx=options.get("padding_idx"),
                                             scale_grad_by_freq=options.get("scale_grad_by_freq", False),
                                             sparse=options.get("sparse", False) and not options.get(
                                                 "scale_grad_by_freq", False),  # torch has not both
                                             max_norm=max_norm)

    rows_a, rows_b = look(case.ids_a, weight_a, case.options_a), look(case.ids_b, weight_b, case.options_b)
    if case.ids_b.ndim > case.ids_a.ndim:
        rows_a = rows_a.unsqueeze(-2)
    out = (rows_a * rows_b).sum(-1)
    out.backward(torch.from_numpy(case.upstream).to(dtype))
    grads = [w.grad.to_dense() if w.grad.is_sparse else w.grad for w in (weight_a, weight_b)]
    return [t.detach().numpy() for t in (out, *grads, weight_a, weight_b)]


TORCH_CASES = [  # shape, options of a and of b, sparsity, the same layer, max_norm
    ("N", "plain", "plain", "dense", False, None),
    ("N", "pad", "freq", "sparse", False, 1.2),
    ("NK", "pad", "freq", "sparse", False, None),
    ("NK", "freq", "pad", "dense-sparse", False, 1.2),
    ("NK", "pad-freq", "pad-freq", "dense", False, 1.2),
    ("K1", "pad", "pad", "sparse-dense", False, None),
    ("S2K", "pad-freq", "pad-freq", "sparse-dense", False, None),
    ("scalar-K", "pad-freq", "plain", "dense", False, None),
    ("NK", "pad-freq", "pad-freq", "dense", True, None),
    ("NK", "pad-freq", "pad-freq", "sparse", True, 1.2),
    ("S2K", "freq", "freq", "sparse", True, None),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape, options_a, options_b, sparsity, same, max_norm", TORCH_CASES,
                         ids=["-".join(map(str, c)) for c in TORCH_CASES])
def test_matches_torch(shape, options_a, options_b, sparsity, same, max_norm, dtype, rng):
    case = Case(rng, *SHAPES[shape], SIDE_OPTIONS[options_a], SIDE_OPTIONS[options_b], same=same, dtype=dtype)
    case.options_a["sparse"], case.options_b["sparse"] = SPARSITY[sparsity]
    if same:
        case.options_b = case.options_a
    out, grad_a, grad_b, weight_a, weight_b = torch_model(case, torch.float64 if dtype == np.float64 else
                                                          torch.float32, max_norm)
    got, a, b = case.run(F.embedding_dot, max_norm=max_norm)
    tolerance = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    assert got.dtype is et.DType.from_numpy(np.dtype(dtype))
    np.testing.assert_allclose(got.numpy(), out, **tolerance)
    np.testing.assert_allclose(dense(a.weight.grad), grad_a, **tolerance)
    np.testing.assert_allclose(dense(b.weight.grad), grad_b, **tolerance)
    np.testing.assert_allclose(a.weight.numpy(), weight_a, **tolerance)
    np.testing.assert_allclose(b.weight.numpy(), weight_b, **tolerance)
    if max_norm is not None:  # the case does renorm some rows
        assert not np.array_equal(a.weight.numpy(), case.weights_a)


# --- max_norm ---------------------------------------------------------------------------------

NORMS = [dict(max_norm=1.0), dict(max_norm=1.3, norm_type=1.0), dict(max_norm=0.8, norm_type=float("inf"))]


@pytest.mark.parametrize("norm, sparse", [(NORMS[0], False), (NORMS[0], True), (NORMS[1], True), (NORMS[2], False)],
                         ids=["l2-dense", "l2-sparse", "l1-sparse", "linf-dense"])
@pytest.mark.parametrize("sides", ["a", "b", "both", "same"])
def test_renorm_rewrites_the_rows_its_lookups_would(sides, norm, sparse, rng):
    case = Case(rng, (6,), (6, 3), {}, {}, same=sides == "same")
    case.ids_b[0, 1] = 7  # a row only b reads
    for side, options in (("a", case.options_a), ("b", case.options_b)):
        options["sparse"] = sparse
        if sides in (side, "both", "same"):
            options.update(norm)
    fused, a, b = case.run(F.embedding_dot)
    expected, a2, b2 = case.run(composed)
    assert a.weight.numpy().tobytes() == a2.weight.numpy().tobytes()  # renormed exactly as the lookups
    assert b.weight.numpy().tobytes() == b2.weight.numpy().tobytes()
    assert not np.array_equal(a.weight.numpy(), case.weights_a) or sides == "b"
    assert not np.array_equal(b.weight.numpy(), case.weights_b) or sides == "a"
    untouched = np.setdiff1d(np.arange(ROWS_A), case.ids_a)
    if sides == "b":
        np.testing.assert_array_equal(a.weight.numpy(), case.weights_a)
    elif sides != "same":
        np.testing.assert_array_equal(a.weight.numpy()[untouched], case.weights_a[untouched])
    np.testing.assert_allclose(fused.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
    assert_same_gradient(a.weight.grad, a2.weight.grad, sparse)
    assert_same_gradient(b.weight.grad, b2.weight.grad, sparse)
    # the outputs are those of the renormed rows (the lookups' gradient is a plain gather)
    out, grad_a, grad_b = reference(a.weight.numpy(), case.ids_a, b.weight.numpy(), case.ids_b, case.upstream,
                                    case.options_a, case.options_b, case.same)
    np.testing.assert_allclose(fused.numpy(), out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense(a.weight.grad), grad_a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense(b.weight.grad), grad_b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("other", ["plain", "renorm", "clip"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("shape", ["N", "NK"])
def test_clip_is_the_composition(shape, sparse, other, rng):
    case = Case(rng, *SHAPES[shape], {"padding_idx": "pad"}, {"scale_grad_by_freq": True})
    case.options_a.update(max_norm=1.0, max_norm_mode="clip", sparse=sparse)
    case.options_b.update({"plain": {}, "renorm": dict(max_norm=1.1), "clip": dict(max_norm=0.9,
                                                                                   max_norm_mode="clip")}[other])
    fused, a, b = case.run(F.embedding_dot)
    expected, a2, b2 = case.run(composed)
    np.testing.assert_allclose(fused.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
    assert_same_gradient(a.weight.grad, a2.weight.grad, sparse)
    assert_same_gradient(b.weight.grad, b2.weight.grad, False)
    np.testing.assert_array_equal(a.weight.numpy(), case.weights_a)  # clipping leaves the table as it is
    assert b.weight.numpy().tobytes() == b2.weight.numpy().tobytes()
    norms = np.linalg.norm(case.weights_a[case.ids_a], axis=-1)
    assert (norms > 1.0).any()  # it does clip
    unclipped, _, _ = reference(case.weights_a, case.ids_a, b2.weight.numpy(), case.ids_b, case.upstream,
                                {}, {}, False)
    assert not np.allclose(fused.numpy(), unclipped)


# --- frozen tables, no_grad -------------------------------------------------------------------

@pytest.mark.parametrize("frozen", ["a", "b", "both"])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_frozen_table_gets_no_gradient(frozen, sparse, rng):
    case = Case(rng, (5,), (5, 3), {"padding_idx": "pad"}, {"scale_grad_by_freq": True})
    a = Embedding.from_pretrained(case.weights_a, freeze=frozen in ("a", "both"), sparse=sparse, **case.options_a)
    b = Embedding.from_pretrained(case.weights_b, freeze=frozen in ("b", "both"), sparse=sparse, **case.options_b)
    out = F.embedding_dot(a, case.ids_a, b, case.ids_b)
    expected, grad_a, grad_b = reference(case.weights_a, case.ids_a, case.weights_b, case.ids_b, case.upstream,
                                         case.options_a, case.options_b, False)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    if frozen == "both":
        assert not out.requires_grad
        with pytest.raises(et.InvalidArgumentError):
            out.backward(case.upstream)
        return
    out.backward(case.upstream)
    trained, still = (b, a) if frozen == "a" else (a, b)
    assert still.weight.grad is None
    assert isinstance(trained.weight.grad, et.RowSparseGrad) == sparse
    np.testing.assert_allclose(dense(trained.weight.grad), grad_b if frozen == "a" else grad_a,
                               rtol=1e-12, atol=1e-12)


def test_nothing_is_recorded_under_no_grad(rng):
    case = Case(rng, (5,), (5, 3), {}, {})
    a, b = case.layers()
    with et.no_grad():
        out = F.embedding_dot(a, case.ids_a, b, case.ids_b)
    assert not out.requires_grad and out.is_leaf
    with pytest.raises(et.InvalidArgumentError):
        out.backward(case.upstream)
    assert a.weight.grad is None and b.weight.grad is None
    np.testing.assert_allclose(out.numpy(), composed(a, case.ids_a, b, case.ids_b).numpy(), rtol=1e-12, atol=1e-12)
    with et.no_grad():  # renorm still applies, as a lookup's would
        renormed = Embedding.from_pretrained(case.weights_a * 10, freeze=False, max_norm=1.0)
        F.embedding_dot(renormed, case.ids_a, b, case.ids_b)
    np.testing.assert_allclose(np.linalg.norm(renormed.weight.numpy()[case.ids_a], axis=-1), 1.0, rtol=1e-6)


# --- determinism ------------------------------------------------------------------------------

@pytest.mark.parametrize("same, sparse, freq, dtype", [(False, False, False, et.DType.F32),
                                                     (False, True, True, et.DType.F32),
                                                     (True, False, True, et.DType.F32),
                                                     (True, True, False, et.DType.F32),
                                                     (False, False, True, et.DType.F64),
                                                     (True, True, True, et.DType.F64)])
def test_the_same_call_gives_the_same_bits(same, sparse, freq, dtype):
    rng = np.random.default_rng(7)
    n, k, rows = 3000, 5, 400
    ids_a = np.minimum(rng.zipf(1.3, n) - 1, rows - 1)  # hot rows repeat many times
    ids_b = np.minimum(rng.zipf(1.2, (n, k)) - 1, rows - 1)
    weights = rng.standard_normal((2, rows, 32)).astype(dtype.numpy)
    upstream = rng.standard_normal((n, k)).astype(dtype.numpy)
    results = []
    for _ in range(2):
        a = Embedding.from_pretrained(weights[0], freeze=False, sparse=sparse, scale_grad_by_freq=freq, padding_idx=0)
        b = a if same else Embedding.from_pretrained(weights[1], freeze=False, sparse=sparse, scale_grad_by_freq=freq)
        out = F.embedding_dot(a, ids_a, b, ids_b)
        out.backward(upstream)
        results.append([out.numpy().tobytes(), dense(a.weight.grad).tobytes(), dense(b.weight.grad).tobytes()])
    assert results[0] == results[1]
    if dtype is et.DType.F64:  # and, at this size too, the composition's values
        a2 = Embedding.from_pretrained(weights[0], freeze=False, sparse=sparse, scale_grad_by_freq=freq, padding_idx=0)
        b2 = a2 if same else Embedding.from_pretrained(weights[1], freeze=False, sparse=sparse,
                                                       scale_grad_by_freq=freq)
        expected = composed(a2, ids_a, b2, ids_b)
        expected.backward(upstream)
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
        assert_same_gradient(a.weight.grad, a2.weight.grad, sparse)
        assert_same_gradient(b.weight.grad, b2.weight.grad, sparse)


# --- half precision ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tolerance", [(et.DType.F16, 2e-3), (et.DType.BF16, 1.6e-2)], ids=str)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("same", [False, True])
def test_half_precision_is_close_to_float32(dtype, tolerance, sparse, same, rng):
    case = Case(rng, (40,), (40, 6), {"padding_idx": "pad"}, {"scale_grad_by_freq": True}, same=same)
    halves = [w.astype(dtype.numpy) for w in (case.weights_a, case.weights_b, case.upstream)]
    results = {}
    for name, (weights_a, weights_b, upstream) in (("half", halves),
                                                    ("f32", [h.astype(np.float32) for h in halves])):
        a = Embedding.from_pretrained(weights_a, freeze=False, sparse=sparse, **case.options_a)
        b = a if same else Embedding.from_pretrained(weights_b, freeze=False, sparse=sparse, **case.options_b)
        out = F.embedding_dot(a, case.ids_a, b, case.ids_b)
        out.backward(upstream)
        results[name] = [out, a.weight.grad, b.weight.grad]
    for got, wanted in zip(results["half"], results["f32"]):
        assert got.dtype is dtype and isinstance(got, et.RowSparseGrad) == isinstance(wanted, et.RowSparseGrad)
        wanted = dense(wanted)
        scale = np.abs(wanted).max()
        np.testing.assert_allclose(dense(got).astype(np.float32), wanted, rtol=tolerance, atol=tolerance * scale)


# --- empty batches ----------------------------------------------------------------------------

@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("shape_a, shape_b", [((0,), (0,)), ((0,), (0, 3)), ((4,), (4, 0)), ((0,), (0, 0)),
                                              ((2, 0), (2, 0, 3)), ((2, 3), (2, 3, 0))])
def test_empty_batches(shape_a, shape_b, sparse, rng):
    case = Case(rng, shape_a, shape_b, {"padding_idx": "pad"}, {"scale_grad_by_freq": True})
    case.options_a["sparse"] = case.options_b["sparse"] = sparse
    fused, a, b = case.run(F.embedding_dot)
    expected, a2, b2 = case.run(composed)
    assert fused.shape == shape_b and fused.dtype is et.DType.F64
    assert_same_gradient(a.weight.grad, a2.weight.grad, sparse)
    assert_same_gradient(b.weight.grad, b2.weight.grad, sparse)
    assert not dense(a.weight.grad).any() and not dense(b.weight.grad).any()


# --- file-backed tables -----------------------------------------------------------------------

def on_file(layer, path):
    """`layer` saved and reopened as a writable file-backed table whose cache holds one row."""
    layer.save(path)
    return Embedding.open(path, writable=True, cache_bytes=1)


@pytest.mark.parametrize("options", [dict(sparse=True, padding_idx=PAD_A, scale_grad_by_freq=True),
                                     dict(sparse=False), dict(sparse=True, max_norm=1.0),
                                     dict(sparse=False, max_norm=1.0, max_norm_mode="clip")],
                         ids=["sparse-pad-freq", "dense", "renorm", "clip"])
@pytest.mark.parametrize("side", ["a", "b", "same"])
def test_a_file_backed_table_gives_what_one_in_memory_gives(side, options, tmp_path, rng):
    case = Case(rng, (8,), (8, 4), {}, {}, same=side == "same")
    target, other = (case.options_b, case.options_a) if side == "b" else (case.options_a, case.options_b)
    target.update(options)
    if side == "b" and "padding_idx" in options:
        target["padding_idx"] = PAD_B
    if side != "same":
        other.update(padding_idx=PAD_A if side == "b" else PAD_B, scale_grad_by_freq=True, sparse=True)
    memory = case.run(F.embedding_dot)
    a, b = case.layers()
    if side in ("a", "same"):
        a = on_file(a, tmp_path / "a.safetensors")
        b = a if side == "same" else b
    else:
        b = on_file(b, tmp_path / "b.safetensors")
    assert (a.path is not None, b.path is not None) == (side != "b", side != "a")
    out = F.embedding_dot(a, case.ids_a, b, case.ids_b)
    out.backward(case.upstream)
    _, a2, b2 = memory
    np.testing.assert_allclose(out.numpy(), memory[0].numpy(), rtol=1e-12, atol=1e-12)
    assert_same_gradient(a.weight.grad, a2.weight.grad, case.options_a.get("sparse", False))
    assert_same_gradient(b.weight.grad, b2.weight.grad, case.options_b.get("sparse", False))
    assert a.weight.numpy().tobytes() == a2.weight.numpy().tobytes()  # renormed alike, where it renorms
    assert b.weight.numpy().tobytes() == b2.weight.numpy().tobytes()


# --- errors -----------------------------------------------------------------------------------

def tables():
    a = Embedding.from_pretrained(np.ones((5, 3)), freeze=False)
    b = Embedding.from_pretrained(np.ones((6, 3)), freeze=False)
    return a, b


ERRORS = {
    "bag": (lambda a, b: (EmbeddingBag(5, 3, dtype="F64"), [1], b, [1]), et.InvalidArgumentError,
            ["table_a", "EmbeddingBag"]),
    "tensor": (lambda a, b: (a, [1], b.weight, [1]), et.InvalidArgumentError, ["table_b", "Tensor"]),
    "array": (lambda a, b: (np.ones((5, 3)), [1], b, [1]), et.InvalidArgumentError, ["table_a", "ndarray"]),
    "dims": (lambda a, b: (a, [1], Embedding(6, 4, dtype="F64"), [1]), et.ShapeError, ["3", "4", "embedding_dim"]),
    "dtypes": (lambda a, b: (a, [1], Embedding(6, 3, dtype="F32"), [1]), et.DTypeError, ["F64", "F32"]),
    "ids_b shorter": (lambda a, b: (a, [1, 2], b, [1]), et.ShapeError, ["ids_b", "(2,)", "(1,)"]),
    "ids_b transposed": (lambda a, b: (a, [1, 2, 3], b, np.zeros((2, 3), np.int64)), et.ShapeError,
                         ["ids_b", "(2, 3)"]),
    "ids_b two more axes": (lambda a, b: (a, [1, 2], b, np.zeros((2, 2, 2), np.int64)), et.ShapeError,
                            ["ids_b", "(2, 2, 2)"]),
    "ids_b of fewer axes": (lambda a, b: (a, [[1, 2]], b, [1, 2]), et.ShapeError, ["ids_b", "(1, 2)"]),
    "ids_a out of range": (lambda a, b: (a, [1, 5], b, [[1], [2]]), et.IndexOutOfRangeError,
                           ["ids_a", "5", "(1,)"]),
    "ids_a negative": (lambda a, b: (a, [[1, 2], [-1, 0]], b, [[1, 2], [3, 4]]), et.IndexOutOfRangeError,
                       ["ids_a", "-1", "(1, 0)"]),
    "ids_b out of range": (lambda a, b: (a, [1, 2], b, [[1, 2], [6, 0]]), et.IndexOutOfRangeError,
                           ["ids_b", "6", "(1, 0)"]),
    "ids_b out of a's range": (lambda a, b: (a, [1, 2], a, [[1, 2], [3, 5]]), et.IndexOutOfRangeError,
                               ["ids_b", "5", "(1, 1)"]),
    "float ids_a": (lambda a, b: (a, [1.0, 2.0], b, [1, 2]), et.DTypeError, ["integer"]),
    "float ids_b": (lambda a, b: (a, [1, 2], b, np.array([[1.0], [2.0]])), et.DTypeError, ["integer"]),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors(name):
    make, error, words = ERRORS[name]
    a, b = tables()
    with pytest.raises(error) as raised:
        F.embedding_dot(*make(a, b))
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))


@pytest.mark.parametrize("storage", ["memory", "file", "clip"])
@pytest.mark.parametrize("name", ["ids_a out of range", "ids_b out of range", "ids_b out of a's range",
                                  "ids_b shorter", "ids_b transposed", "float ids_b"])
def test_a_call_that_raises_changes_nothing(name, storage, tmp_path):
    """Renorming tables stay as they were: every check comes before any renorm."""
    make, error, _ = ERRORS[name]
    big = np.arange(1.0, 19.0).reshape(6, 3)  # every row past max_norm
    a = Embedding.from_pretrained(big[:5], freeze=False, max_norm=1.0)
    b = Embedding.from_pretrained(big, freeze=False, max_norm=1.0,
                                  max_norm_mode="clip" if storage == "clip" else "renorm")
    if storage == "file":
        a = on_file(a, tmp_path / "a.safetensors")
    version = a.weight._version
    with pytest.raises(error):
        F.embedding_dot(*make(a, b))
    np.testing.assert_array_equal(a.weight.numpy(), big[:5])
    np.testing.assert_array_equal(b.weight.numpy(), big)
    assert a.weight._version == version
    assert a.weight.grad is None and b.weight.grad is None


# --- changed in place before backward ---------------------------------------------------------

@pytest.mark.parametrize("changed", ["a", "b"])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_table_changed_in_place_before_backward_raises(changed, sparse, rng):
    case = Case(rng, (5,), (5, 3), {}, {})
    a, b = case.layers(sparse=sparse)
    stale = F.embedding_dot(a, case.ids_a, b, case.ids_b)
    F.embedding_dot(a, case.ids_a, b, case.ids_b).backward(case.upstream)
    SGD([(a if changed == "a" else b).weight], lr=0.1).step()
    grads = [dense(a.weight.grad), dense(b.weight.grad)]
    with pytest.raises(et.ModifiedTensorError):
        stale.backward(case.upstream)
    np.testing.assert_array_equal(dense(a.weight.grad), grads[0])  # a backward that raises changes nothing
    np.testing.assert_array_equal(dense(b.weight.grad), grads[1])


@pytest.mark.parametrize("storage", ["memory", "file"])
def test_renorming_tables_score_twice_before_one_backward_as_lookups_do(rng, tmp_path, storage):
    """Positives and negatives scored in two calls (each renorming), a renormed lookup in
    between, one backward: what the same lookups give (their rows were copied when read)."""
    case = Case(rng, (5,), (5, 3), {}, {}, dtype=np.float32)
    grads = []
    for fn in (F.embedding_dot, composed):
        a = Embedding.from_pretrained(case.weights_a * 10, freeze=False, max_norm=1.0, sparse=True)
        if storage == "file":
            a.save(tmp_path / f"{len(grads)}.safetensors")
            a = Embedding.open(tmp_path / f"{len(grads)}.safetensors", writable=True)
        b = Embedding.from_pretrained(case.weights_b, freeze=False, max_norm=2.0)
        positives = fn(a, case.ids_a, b, case.ids_b[:, 0])
        a(case.ids_b.reshape(-1) % ROWS_A)  # renorms rows the first call did not
        negatives = fn(a, case.ids_a, b, case.ids_b[:, 1:])
        (positives.sum() + (negatives * negatives).sum()).backward()
        grads.append((dense(a.weight.grad), dense(b.weight.grad), a.weight.numpy().copy()))
    for fused, reference in zip(*grads):
        np.testing.assert_allclose(fused, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_renorms_and_reads_go_side_by_side_as_two_lookups(rng, dtype):
    """Each side renorms, then reads, as two lookups: the same layer on both sides (a
    float32 renorm of a renormed row may move it by an ulp), and a plain layer tied to a
    renorming one, which reads its rows before the other side renorms them (reading them
    after differs by far more than rounding)."""
    weights = (rng.standard_normal((ROWS_A, DIM)) * 3).astype(dtype)
    ids_a, ids_b = rng.integers(0, ROWS_A, 6), rng.integers(0, ROWS_A, (6, 3))
    results = []
    for fn in (F.embedding_dot, composed):
        same = Embedding.from_pretrained(weights, freeze=False, max_norm=1.0, sparse=True)
        plain = Embedding.from_pretrained(weights, freeze=False)
        tied = Embedding.from_pretrained(weights, freeze=False, max_norm=1.0)
        tied.weight = plain.weight
        outs = [fn(same, ids_a, same, ids_b), fn(plain, ids_a, tied, ids_b)]
        (outs[0].sum() + outs[1].sum()).backward()
        results.append([o.numpy() for o in outs] + [dense(same.weight.grad), dense(plain.weight.grad)])
    for fused, reference in zip(*results):
        np.testing.assert_allclose(fused, reference, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_tables_in_files_give_the_bits_of_tables_in_memory(rng, tmp_path):
    """Float32: the rows read through a file-backed table are multiplied by the same kernel."""
    case = Case(rng, (64,), (64, 6), {}, {}, dtype=np.float32)
    results = []
    for where in ("memory", "file"):
        a, b = case.layers(sparse=True)
        if where == "file":
            a.save(tmp_path / "a.safetensors")
            a = Embedding.open(tmp_path / "a.safetensors", writable=True)
        out = F.embedding_dot(a, case.ids_a, b, case.ids_b)
        out.backward(case.upstream)
        results.append([out.numpy(), dense(a.weight.grad), dense(b.weight.grad)])
    for in_memory, in_file in zip(*results):
        np.testing.assert_array_equal(in_memory, in_file)


# --- a property -------------------------------------------------------------------------------

@st.composite
def side_options(draw, rows):
    options = dict(padding_idx=draw(st.none() | st.integers(0, rows - 1)),
                   scale_grad_by_freq=draw(st.booleans()), sparse=draw(st.booleans()))
    norm = draw(st.sampled_from([None, "renorm", "clip"]))
    if norm is not None:
        options.update(max_norm=draw(st.floats(0.5, 3.0)), max_norm_mode=norm,
                       norm_type=draw(st.sampled_from([1.0, 2.0, float("inf")])))
    return options


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_property_matches_the_composition(data):
    same = data.draw(st.booleans())
    rows_a = data.draw(st.integers(1, 8))
    rows_b = rows_a if same else data.draw(st.integers(1, 8))
    dim = data.draw(st.integers(1, 5))
    shape_a = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4))
    k = data.draw(st.none() | st.integers(0, 4))
    shape_b = shape_a if k is None else shape_a + (k,)
    ids_a = data.draw(hnp.arrays(np.int64, shape_a, elements=st.integers(0, rows_a - 1)))
    ids_b = data.draw(hnp.arrays(np.int64, shape_b, elements=st.integers(0, rows_b - 1)))
    floats = st.floats(-3, 3, allow_subnormal=False)
    weights_a = data.draw(hnp.arrays(np.float64, (rows_a, dim), elements=floats))
    weights_b = weights_a if same else data.draw(hnp.arrays(np.float64, (rows_b, dim), elements=floats))
    upstream = data.draw(hnp.arrays(np.float64, shape_b, elements=floats))
    options_a = data.draw(side_options(rows_a))
    options_b = options_a if same else data.draw(side_options(rows_b))
    results = []
    for fn in (F.embedding_dot, composed):
        a = Embedding.from_pretrained(weights_a, freeze=False, **options_a)
        b = a if same else Embedding.from_pretrained(weights_b, freeze=False, **options_b)
        out = fn(a, ids_a, b, ids_b)
        out.backward(upstream)
        results.append((out, a, b))
    (fused, a, b), (expected, a2, b2) = results
    assert fused.shape == expected.shape == shape_b
    np.testing.assert_allclose(fused.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
    assert_same_gradient(a.weight.grad, a2.weight.grad, options_a["sparse"])
    assert_same_gradient(b.weight.grad, b2.weight.grad, options_b["sparse"])
    assert a.weight.numpy().tobytes() == a2.weight.numpy().tobytes()
    assert b.weight.numpy().tobytes() == b2.weight.numpy().tobytes()

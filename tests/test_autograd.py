"""SPEC §3, Tensor arithmetic with gradients: differential tests against torch.autograd.

Every case builds the same expression on float64 `et.Tensor`s and on float64 `torch.Tensor`s,
then compares the values and, after a backward pass with a random upstream gradient, the
gradient of every input (which must come back in that input's own shape).
"""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import embtable as et
from embtable.core import data_of, replace_data

RTOL = 1e-12
ATOL = 1e-13


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol)


def check(et_fn, torch_fn, *arrays, requires_grad=None, seed=0):
    """Run `et_fn` on et tensors and `torch_fn` on torch tensors built from `arrays` (float64);
    compare the results, backpropagate one random upstream gradient through both and compare
    every input's gradient. `requires_grad` picks which inputs track gradients (default: all).
    Returns the et inputs and output."""
    requires_grad = requires_grad or [True] * len(arrays)
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    ets = [et.Tensor(a, requires_grad=r) for a, r in zip(arrays, requires_grad)]
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=r) for a, r in zip(arrays, requires_grad)]
    out = et_fn(*ets)
    expected = torch_fn(*ts)
    assert isinstance(out, et.Tensor)
    assert out.shape == tuple(expected.shape)
    assert out.dtype is et.DType.F64
    close(out.numpy(), expected.detach().numpy())
    assert out.requires_grad
    upstream = np.asarray(np.random.default_rng(seed).standard_normal(tuple(expected.shape)),
                          dtype=np.float64)
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))
    for e, t, r in zip(ets, ts, requires_grad):
        if not r:
            assert e.grad is None
            continue
        assert isinstance(e.grad, et.Tensor), "a leaf that requires grad gets a Tensor .grad"
        assert e.grad.shape == e.shape, f"gradient of shape {e.grad.shape} for input {e.shape}"
        assert e.grad.dtype is et.DType.F64
        close(e.grad.numpy(), t.grad.numpy())
    return ets, out


def normal(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def away_from_zero(shape, seed=0):
    """Values with |v| in [0.5, 2]: safe divisors."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def positive(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


# --- binary operations with broadcasting -------------------------------------------------

BROADCAST_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 1), (1, 4)),
    ((4,), (2, 3, 4)),
    ((2, 3, 4), (4,)),
    ((2, 1, 4), (3, 1)),
    ((1,), (3, 2)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((), ()),
    ((), (4,)),
]

BINARY = {
    "add": (lambda a, b: a + b, normal, normal),
    "sub": (lambda a, b: a - b, normal, normal),
    "mul": (lambda a, b: a * b, normal, normal),
    "div": (lambda a, b: a / b, normal, away_from_zero),
    "pow": (lambda a, b: a ** b, positive, normal),
}


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_binary_op_broadcast_matches_torch(name, shapes):
    fn, make_a, make_b = BINARY[name]
    check(fn, fn, make_a(shapes[0], seed=1), make_b(shapes[1], seed=2))


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("which", [0, 1])
def test_binary_op_gradient_only_to_the_input_that_requires_it(name, which):
    fn, make_a, make_b = BINARY[name]
    flags = [which == 0, which == 1]
    check(fn, fn, make_a((3, 1), seed=3), make_b((1, 4), seed=4), requires_grad=flags)


def test_integer_power_of_negative_base_matches_torch():
    check(lambda a: a ** 2, lambda a: a ** 2, normal((3, 4), seed=5))
    check(lambda a: a ** 3, lambda a: a ** 3, normal((3, 4), seed=6))


def test_tensor_used_as_both_operands():
    check(lambda a: a * a, lambda a: a * a, normal((2, 3), seed=7))
    check(lambda a: a + a, lambda a: a + a, normal((2, 3), seed=8))
    check(lambda a: a / a, lambda a: a / a, away_from_zero((2, 3), seed=9))
    check(lambda a: a - a * a, lambda a: a - a * a, normal((2, 3), seed=10))


SCALAR_FORMS = {
    "scalar*t": (lambda t: 2.0 * t, normal),
    "t*scalar": (lambda t: t * -3.5, normal),
    "int*t": (lambda t: 3 * t, normal),
    "scalar+t": (lambda t: 2.5 + t, normal),
    "t+scalar": (lambda t: t + 1, normal),
    "scalar-t": (lambda t: 1 - t, normal),
    "t-scalar": (lambda t: t - 0.25, normal),
    "scalar/t": (lambda t: 3.0 / t, away_from_zero),
    "t/scalar": (lambda t: t / 4.0, normal),
    "scalar**t": (lambda t: 2.0 ** t, normal),
    "t**2": (lambda t: t ** 2, normal),
    "t**0.5": (lambda t: t ** 0.5, positive),
    "t**-1.5": (lambda t: t ** -1.5, positive),
    "mixed": (lambda t: (1 - 2.0 * t) / 3 + 0.5 ** t, normal),
}


@pytest.mark.parametrize("name", list(SCALAR_FORMS))
@pytest.mark.parametrize("shape", [(), (5,), (2, 3)], ids=str)
def test_python_scalar_operands_match_torch(name, shape):
    fn, make = SCALAR_FORMS[name]
    check(fn, fn, make(shape, seed=11))


def test_python_scalar_keeps_the_tensor_dtype():
    t = et.Tensor(np.ones(3, np.float32), requires_grad=True)
    for result in (2.0 * t, t * 2.0, 1 - t, t / 3.0, 2.0 ** t, t ** 2):
        assert result.dtype is et.DType.F32


# --- matmul --------------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((3,), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((2, 1, 2, 3), (4, 3, 2)),
    ((1, 2, 3), (4, 3, 2)),
    ((3,), (2, 3, 4)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_matches_torch(shapes):
    fn = lambda a, b: a @ b  # noqa: E731
    check(fn, fn, normal(shapes[0], seed=12), normal(shapes[1], seed=13))


@pytest.mark.parametrize("which", [0, 1])
def test_matmul_gradient_only_to_the_input_that_requires_it(which):
    fn = lambda a, b: a @ b  # noqa: E731
    check(fn, fn, normal((2, 1, 2, 3), seed=14), normal((4, 3, 2), seed=15),
          requires_grad=[which == 0, which == 1])


def test_matmul_shape_mismatch_raises_shape_error():
    a = et.Tensor(normal((2, 3)), requires_grad=True)
    with pytest.raises(et.ShapeError):
        a @ et.Tensor(normal((4, 2)))
    with pytest.raises(et.ShapeError):
        a @ et.Tensor(2.0)


# --- unary ---------------------------------------------------------------------------------

UNARY = {
    "neg": (lambda t: -t, normal),
    "exp": (lambda t: t.exp(), normal),
    "log": (lambda t: t.log(), positive),
    "tanh": (lambda t: t.tanh(), normal),
    "sigmoid": (lambda t: t.sigmoid(), normal),
    "relu": (lambda t: t.relu(), normal),
}


@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 4)], ids=str)
def test_unary_matches_torch(name, shape):
    fn, make = UNARY[name]
    check(fn, fn, make(shape, seed=16))


def test_relu_at_zero_and_negative():
    fn = lambda t: t.relu()  # noqa: E731
    _, out = check(fn, fn, np.array([-2.0, -0.0, 0.0, 1e-300, 3.0]))
    close(out.numpy(), [0.0, 0.0, 0.0, 1e-300, 3.0])


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_saturating_unary_with_large_inputs_does_not_overflow(name):
    fn, _ = UNARY[name]
    values = np.array([-1000.0, -745.0, -60.0, -50.0, 0.0, 50.0, 60.0, 745.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        (x,), out = check(fn, fn, values)
    assert np.all(np.isfinite(out.numpy()))
    assert np.all(np.isfinite(x.grad.numpy()))


def test_sigmoid_large_values_exact():
    x = et.Tensor([-1000.0, 1000.0], dtype=et.DType.F64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = x.sigmoid()
        y.sum().backward()
    assert y.tolist() == [0.0, 1.0]
    assert x.grad.tolist() == [0.0, 0.0]


def test_composite_expression_matches_torch():
    def fn(a, b, c):
        h = (a @ b).tanh() * c - (a @ b).sigmoid() / 2
        return (h.exp().sum(axis=0) + (h * h).mean()).relu()

    check(fn, lambda a, b, c: (lambda h: (h.exp().sum(dim=0) + (h * h).mean()).relu())(
        (a @ b).tanh() * c - (a @ b).sigmoid() / 2),
        normal((3, 4), seed=17), normal((4, 5), seed=18), normal((5,), seed=19))


# --- reductions ----------------------------------------------------------------------------

AXES = [None, 0, 1, 2, -1, -3, (0, 2), (-1, 0), (0, 1, 2), (1,)]


def _torch_dim(axis, ndim):
    return tuple(range(ndim)) if axis is None else axis


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean"])
def test_sum_mean_match_torch(name, axis, keepdims):
    check(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims),
          lambda t: getattr(t, name)(dim=_torch_dim(axis, 3), keepdim=keepdims),
          normal((2, 3, 4), seed=20))


@pytest.mark.parametrize("name", ["sum", "mean"])
def test_sum_mean_positional_and_default_arguments(name):
    check(lambda t: getattr(t, name)(), lambda t: getattr(t, name)(), normal((2, 3), seed=21))
    check(lambda t: getattr(t, name)(1), lambda t: getattr(t, name)(1), normal((2, 3), seed=22))
    check(lambda t: getattr(t, name)(0, True), lambda t: getattr(t, name)(0, True),
          normal((2, 3), seed=23))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
def test_max_matches_torch_amax(axis, keepdims):
    check(lambda t: t.max(axis=axis, keepdims=keepdims),
          lambda t: torch.amax(t, dim=_torch_dim(axis, 3), keepdim=keepdims),
          normal((2, 3, 4), seed=24))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
def test_max_with_ties_shares_gradient_like_torch_amax(axis, keepdims):
    values = np.random.default_rng(25).integers(0, 3, (2, 3, 4)).astype(np.float64)
    check(lambda t: t.max(axis=axis, keepdims=keepdims),
          lambda t: torch.amax(t, dim=_torch_dim(axis, 3), keepdim=keepdims), values)


def test_max_tie_explicit():
    x = et.Tensor([1.0, 3.0, 3.0, -1.0], dtype=et.DType.F64, requires_grad=True)
    y = x.max()
    assert y.shape == ()
    assert y.item() == 3.0
    y.backward()
    assert x.grad.tolist() == [0.0, 0.5, 0.5, 0.0]


def test_reductions_of_0d_tensor():
    for name in ("sum", "mean"):
        check(lambda t: getattr(t, name)(), lambda t: getattr(t, name)(), np.array(1.5))
    check(lambda t: t.max(), lambda t: torch.amax(t, dim=()), np.array(1.5))


@pytest.mark.parametrize("axis", [3, -4, (0, 0)], ids=str)
def test_reduction_with_a_bad_axis_raises_shape_error(axis):
    x = et.Tensor(normal((2, 3, 4)), requires_grad=True)
    with pytest.raises(et.ShapeError):
        x.sum(axis=axis)


# --- norm ----------------------------------------------------------------------------------

NORM_PS = [1, 2, 3, math.inf, 0.5]


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1), (1, 2), (-1, 0)], ids=str)
@pytest.mark.parametrize("p", NORM_PS, ids=str)
def test_norm_matches_torch_vector_norm(p, axis):
    check(lambda t: t.norm(p, axis),
          lambda t: torch.linalg.vector_norm(t, ord=p, dim=axis),
          away_from_zero((2, 3, 4), seed=26))


@pytest.mark.parametrize("p", NORM_PS, ids=str)
def test_norm_keyword_arguments_and_default(p):
    check(lambda t: t.norm(p=p, axis=-1),
          lambda t: torch.linalg.vector_norm(t, ord=p, dim=-1), normal((3, 4), seed=27))
    check(lambda t: t.norm(), lambda t: torch.linalg.vector_norm(t), normal((3, 4), seed=28))


@pytest.mark.parametrize("p", NORM_PS, ids=str)
def test_norm_with_zero_entries_and_a_zero_row_matches_torch(p):
    """Zero entries (and a whole zero row, norm 0) get gradient 0, as in PyTorch."""
    values = np.array([[0.0, 1.5, -2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, -1.0, 0.5, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the point is the result, not how it is reached
        (x,), _ = check(lambda t: t.norm(p, axis=1),
                        lambda t: torch.linalg.vector_norm(t, ord=p, dim=1), values)
    assert np.all(np.isfinite(x.grad.numpy()))


def test_inf_norm_ties_share_gradient_like_torch():
    (x,), _ = check(lambda t: t.norm(math.inf), lambda t: torch.linalg.vector_norm(t, ord=math.inf),
                    np.array([3.0, -3.0, 1.0, 2.0]))
    g = x.grad.numpy()
    assert g[0] == -g[1] != 0 and g[2] == g[3] == 0


def test_norm_rejects_non_positive_p():
    x = et.Tensor(normal((3,)), requires_grad=True)
    with pytest.raises(et.InvalidArgumentError):
        x.norm(0)
    with pytest.raises(et.InvalidArgumentError):
        x.norm(-1)


# --- shapes and indexing -------------------------------------------------------------------

TRANSPOSES = {
    "transpose()": (lambda t: t.transpose(), lambda t: t.permute(2, 1, 0)),
    ".T": (lambda t: t.T, lambda t: t.permute(2, 1, 0)),
    "transpose(0,1)": (lambda t: t.transpose(0, 1), lambda t: t.transpose(0, 1)),
    "transpose(1,2)": (lambda t: t.transpose(1, 2), lambda t: t.transpose(1, 2)),
    "transpose(-1,0)": (lambda t: t.transpose(-1, 0), lambda t: t.transpose(-1, 0)),
    "permute((1,0,2))": (lambda t: t.permute((1, 0, 2)), lambda t: t.permute(1, 0, 2)),
    "permute([2,0,1])": (lambda t: t.permute([2, 0, 1]), lambda t: t.permute(2, 0, 1)),
    "permute(2,0,1)": (lambda t: t.permute(2, 0, 1), lambda t: t.permute(2, 0, 1)),
    "permute(-1,0,1)": (lambda t: t.permute(-1, 0, 1), lambda t: t.permute(2, 0, 1)),
}


@pytest.mark.parametrize("name", list(TRANSPOSES))
def test_transpose_matches_torch(name):
    et_fn, torch_fn = TRANSPOSES[name]
    check(et_fn, torch_fn, normal((2, 3, 4), seed=29))


def test_matrix_transpose_matches_torch():
    check(lambda t: t.T, lambda t: t.T, normal((3, 5), seed=30))
    check(lambda t: t.transpose(), lambda t: t.t(), normal((3, 5), seed=31))
    check(lambda t: t.transpose(0, 1), lambda t: t.t(), normal((3, 5), seed=31))
    check(lambda a, b: a @ b.T, lambda a, b: a @ b.T, normal((2, 5), seed=32), normal((3, 5), seed=33))


@pytest.mark.parametrize("bad", [lambda x: x.transpose(0, 0, 1), lambda x: x.transpose(0, 3),
                                 lambda x: x.permute(0, 0, 1), lambda x: x.permute("a", 0, 1),
                                 lambda x: x.transpose(1)])
def test_transpose_with_bad_axes_raises_shape_error(bad):
    x = et.Tensor(normal((2, 3, 4)), requires_grad=True)
    with pytest.raises(et.ShapeError):
        bad(x)


INDEXING = {
    "t[1]": lambda t: t[1],
    "t[-1]": lambda t: t[-1],
    "t[1:3]": lambda t: t[1:3],
    "t[:, 1]": lambda t: t[:, 1],
    "t[None, ..., 0]": lambda t: t[None, ..., 0],
    "t[::2]": lambda t: t[::2],
    "t[1, :, 2:]": lambda t: t[1, :, 2:],
    "t[..., 1:3, None]": lambda t: t[..., 1:3, None],
    "t[-2:, -1, ::3]": lambda t: t[-2:, -1, ::3],
    "t[0, 1, 2]": lambda t: t[0, 1, 2],
}


@pytest.mark.parametrize("name", list(INDEXING))
def test_basic_indexing_matches_torch(name):
    fn = INDEXING[name]
    check(fn, fn, normal((4, 3, 5), seed=34))


def test_overlapping_slices_accumulate():
    fn = lambda t: t[1:3] * t[0:2] + t[2]  # noqa: E731
    check(fn, fn, normal((4, 3), seed=35))


RESHAPES = {
    "reshape(4, 6)": lambda t: t.reshape(4, 6),
    "reshape((2, -1))": lambda t: t.reshape((2, -1)),
    "reshape([-1])": lambda t: t.reshape([-1]),
    "reshape(-1, 2, 3)": lambda t: t.reshape(-1, 2, 3),
    "reshape(3, 1, 8)": lambda t: t.reshape(3, 1, 8),
}


@pytest.mark.parametrize("name", list(RESHAPES))
def test_reshape_matches_torch(name):
    fn = RESHAPES[name]
    check(fn, fn, normal((2, 3, 4), seed=36))


def test_reshape_then_reduce_matches_torch():
    fn = lambda t: (t.reshape(6, -1) * t.reshape(6, 4)).sum(1).reshape(2, 3)  # noqa: E731
    check(fn, fn, normal((2, 3, 4), seed=37))


# --- hypothesis: random broadcast-compatible shapes ----------------------------------------

@settings(max_examples=80, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
       op=st.sampled_from(["+", "*", "-"]),
       seed=st.integers(0, 2**32 - 1))
def test_broadcast_gradients_match_torch_property(shapes, op, seed):
    fn = {"+": lambda a, b: a + b, "*": lambda a, b: a * b, "-": lambda a, b: a - b}[op]
    a_shape, b_shape = shapes.input_shapes
    rng = np.random.default_rng(seed)
    ets, out = check(fn, fn, rng.standard_normal(a_shape), rng.standard_normal(b_shape), seed=seed)
    assert out.shape == shapes.result_shape
    assert ets[0].grad.shape == a_shape and ets[1].grad.shape == b_shape


@settings(max_examples=40, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       seed=st.integers(0, 2**32 - 1))
def test_broadcast_div_pow_match_torch_property(shapes, seed):
    a_shape, b_shape = shapes.input_shapes
    check(lambda a, b: a / b + a ** b, lambda a, b: a / b + a ** b,
          positive(a_shape, seed), away_from_zero(b_shape, seed + 1), seed=seed)


# --- the mechanism -------------------------------------------------------------------------

def test_gradients_accumulate_across_backward_calls():
    values = normal((2, 3), seed=40)
    x = et.Tensor(values, requires_grad=True)
    (x * x).sum().backward()
    close(x.grad.numpy(), 2 * values)
    (x * 3.0).sum().backward()
    close(x.grad.numpy(), 2 * values + 3)
    tx = torch.tensor(values, requires_grad=True)
    (tx * tx).sum().backward()
    (tx * 3.0).sum().backward()
    close(x.grad.numpy(), tx.grad.numpy())


def test_gradients_accumulate_on_the_same_graph_run_twice():
    x = et.Tensor(normal((3,), seed=41), requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    first = x.grad.numpy().copy()
    y.backward()
    close(x.grad.numpy(), 2 * first)


def test_grad_can_be_reset_to_none():
    x = et.Tensor(normal((3,), seed=42), requires_grad=True)
    (x * 2.0).sum().backward()
    x.grad = None
    (x * 5.0).sum().backward()
    assert x.grad.tolist() == [5.0, 5.0, 5.0]


def test_diamond_graph_sums_gradients():
    def fn(x):
        y = x * 2.0
        a = y.exp()
        b = y * y
        return (a + b + x).sum() + (a * b).mean()

    check(fn, fn, normal((3, 4), seed=43) * 0.5)


def test_shared_subexpression_used_in_many_places():
    def et_fn(x, w):
        h = (x @ w).tanh()
        return (h * h).sum(axis=1) + h.max(axis=1) - h.mean(axis=1) * h[:, 0]

    def torch_fn(x, w):
        h = (x @ w).tanh()
        return (h * h).sum(dim=1) + torch.amax(h, dim=1) - h.mean(dim=1) * h[:, 0]

    check(et_fn, torch_fn, normal((4, 3), seed=44), normal((3, 5), seed=45))


@pytest.mark.parametrize("form", ["ndarray", "Tensor", "list"])
def test_backward_with_explicit_grad_on_non_scalar(form):
    """grad= may be a NumPy array, an et.Tensor or nested lists; it is taken at the precision
    of the tensor it is the gradient of (a list of Python floats for an F64 tensor is not
    rounded to the default F32 first; torch likewise casts a gradient to the output dtype)."""
    values = normal((2, 3), seed=46)
    upstream = normal((2, 3), seed=47)
    grad = {"ndarray": upstream, "Tensor": et.Tensor(upstream), "list": upstream.tolist()}[form]
    x = et.Tensor(values, requires_grad=True)
    (x * x).backward(grad)
    assert x.grad.dtype is et.DType.F64
    close(x.grad.numpy(), 2 * values * upstream)


def test_backward_without_grad_on_one_element_non_0d_tensor():
    x = et.Tensor(normal((1, 1), seed=48), requires_grad=True)
    (x * 3.0).backward()
    assert x.grad.tolist() == [[3.0]]


def test_backward_without_grad_on_non_scalar_raises_shape_error():
    x = et.Tensor(normal((2, 3), seed=49), requires_grad=True)
    y = x * 2.0
    with pytest.raises(et.ShapeError):
        y.backward()
    with pytest.raises(ValueError):  # ShapeError is also a ValueError
        y.backward()
    assert x.grad is None  # nothing changed


@pytest.mark.parametrize("shape", [(3, 2), (1, 3), (6,), (2, 3, 1), ()], ids=str)
def test_backward_with_grad_of_wrong_shape_raises_shape_error(shape):
    x = et.Tensor(normal((2, 3), seed=50), requires_grad=True)
    y = x * 2.0
    with pytest.raises(et.ShapeError):
        y.backward(np.ones(shape))
    assert x.grad is None  # nothing changed
    y.backward(np.ones((2, 3)))
    assert x.grad.tolist() == [[2.0] * 3] * 2


def test_backward_on_tensor_that_does_not_require_grad_raises():
    x = et.Tensor(normal((3,), seed=51))
    with pytest.raises(et.InvalidArgumentError):
        x.sum().backward()
    with pytest.raises(et.InvalidArgumentError):
        x.backward()
    w = et.Tensor(normal((3,), seed=52), requires_grad=True)
    with et.no_grad():
        y = (w * 2.0).sum()
    with pytest.raises(et.InvalidArgumentError):
        y.backward()
    assert w.grad is None


# --- no_grad -------------------------------------------------------------------------------

def _records(x):
    """Whether an operation on `x` (which requires grad) records a graph right now."""
    y = x * 2.0
    return y.requires_grad and not y.is_leaf


def test_no_grad_context_manager_stops_recording_and_restores():
    x = et.Tensor(normal((3,), seed=53), requires_grad=True)
    assert _records(x)
    with et.no_grad():
        y = (x * 2.0 + 1.0).exp().sum()
        assert y.requires_grad is False
        assert y.is_leaf
        assert not _records(x)
    assert _records(x)
    close(y.item(), np.exp(x.numpy() * 2.0 + 1.0).sum())


def test_no_grad_restores_after_an_exception():
    x = et.Tensor(normal((3,), seed=54), requires_grad=True)
    with pytest.raises(RuntimeError, match="boom"):
        with et.no_grad():
            raise RuntimeError("boom")
    assert _records(x)


def test_no_grad_nested_restores_each_level():
    x = et.Tensor(normal((3,), seed=55), requires_grad=True)
    with et.no_grad():
        with et.no_grad():
            assert not _records(x)
        assert not _records(x)
    assert _records(x)


def test_no_grad_as_decorator():
    x = et.Tensor(normal((3,), seed=56), requires_grad=True)

    @et.no_grad()
    def double(t):
        return t * 2.0

    @et.no_grad()
    def fail(t):
        t * 2.0
        raise KeyError("inside")

    y = double(x)
    assert y.requires_grad is False
    close(y.numpy(), 2 * x.numpy())
    assert _records(x)
    with pytest.raises(KeyError):
        fail(x)
    assert _records(x)
    assert double(x).requires_grad is False  # the decorator works on every call
    assert _records(x)


def test_no_grad_decorator_on_a_recursive_function_restores():
    x = et.Tensor(normal((3,), seed=57), requires_grad=True)

    @et.no_grad()
    def nested(depth, t):
        return t * 2.0 if depth == 0 else nested(depth - 1, t)

    try:
        assert nested(2, x).requires_grad is False
        assert _records(x), "grad mode must be back on after a recursive no_grad function"
    finally:
        import embtable.core.autograd as _autograd  # undo a broken restore for the other tests
        _autograd._mode.enabled = True


# --- requires_grad, detach, leaves -----------------------------------------------------------

def test_requires_grad_propagation():
    a = et.Tensor(normal((2, 3), seed=58))
    b = et.Tensor(normal((2, 3), seed=59))
    assert a.requires_grad is False
    for result in (a + b, a * b, a @ b.T, (a - 1.0).exp().sum(), -a, a[0], a.reshape(-1), a.T,
                   a.max(axis=0), a.norm(), 2.0 * a):
        assert result.requires_grad is False
        assert result.is_leaf
    w = et.Tensor(normal((2, 3), seed=60), requires_grad=True)
    mixed = a * w + b
    assert mixed.requires_grad is True
    assert not mixed.is_leaf
    mixed.sum().backward()
    assert a.grad is None and b.grad is None
    close(w.grad.numpy(), a.numpy())


def test_requires_grad_constructor_and_setter():
    x = et.Tensor([1.0, 2.0])
    assert x.requires_grad is False
    x.requires_grad = True
    assert x.requires_grad is True
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    x.requires_grad = False
    assert (x * 2.0).requires_grad is False


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(et.DTypeError):
        et.Tensor([1, 2, 3], requires_grad=True)
    t = et.Tensor([1, 2, 3])
    with pytest.raises(et.DTypeError):
        t.requires_grad = True


def test_is_leaf():
    x = et.Tensor(normal((3,), seed=61), requires_grad=True)
    c = et.Tensor(normal((3,), seed=62))
    assert x.is_leaf and c.is_leaf
    y = x * c
    assert not y.is_leaf
    assert y.detach().is_leaf


def test_non_leaf_tensors_get_no_grad():
    x = et.Tensor(normal((3,), seed=63), requires_grad=True)
    y = x * 2.0
    z = y.exp()
    z.sum().backward()
    assert y.grad is None and z.grad is None
    close(x.grad.numpy(), 2.0 * np.exp(2.0 * x.numpy()))


def test_setting_requires_grad_on_non_leaf_raises():
    x = et.Tensor(normal((3,), seed=64), requires_grad=True)
    y = x * 2.0
    with pytest.raises(et.Error):
        y.requires_grad = False
    with pytest.raises(et.Error):
        y.requires_grad = True
    assert y.requires_grad is True  # unchanged
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_detach():
    x = et.Tensor(normal((2, 3), seed=65), requires_grad=True)
    y = x.exp()
    d = y.detach()
    assert isinstance(d, et.Tensor)
    assert d.requires_grad is False
    assert d.is_leaf
    assert d.shape == y.shape and d.dtype is y.dtype
    close(d.numpy(), y.numpy())
    assert (d * 2.0).requires_grad is False
    # gradient does not flow through the detached branch
    (x * d).sum().backward()
    close(x.grad.numpy(), d.numpy())
    # a detached tensor can become a new leaf
    d.requires_grad = True
    (d * 3.0).sum().backward()
    assert np.all(d.grad.numpy() == 3.0)


# --- dtypes of gradients -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [et.DType.F16, et.DType.BF16, et.DType.F32, et.DType.F64],
                         ids=lambda d: d.name)
def test_leaf_grad_has_the_leaf_dtype(dtype):
    values = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -3.0]])
    x = et.Tensor(values, dtype=dtype, requires_grad=True)
    assert x.dtype is dtype
    y = (x * x * 0.5 + 2.0 * x).sum()
    y.backward()
    assert isinstance(x.grad, et.Tensor)
    assert x.grad.dtype is dtype
    assert x.grad.shape == x.shape
    # x + 2 for these values is exact in every float dtype
    close(np.asarray(x.grad.numpy(), dtype=np.float64), values + 2.0, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [et.DType.F16, et.DType.F32], ids=lambda d: d.name)
def test_leaf_grad_dtype_with_mixed_precision_graph(dtype):
    x = et.Tensor([1.0, 2.0, 3.0], dtype=dtype, requires_grad=True)
    w = et.Tensor([0.5, 0.25, 2.0], dtype=et.DType.F64, requires_grad=True)
    (x * w).sum().backward()
    assert x.grad.dtype is dtype
    assert w.grad.dtype is et.DType.F64
    assert x.grad.tolist() == [0.5, 0.25, 2.0]
    assert w.grad.tolist() == [1.0, 2.0, 3.0]


def test_f32_gradients_match_torch_at_f32_precision():
    a = normal((3, 4), seed=66).astype(np.float32)
    b = normal((4, 2), seed=67).astype(np.float32)
    ea, eb = et.Tensor(a, requires_grad=True), et.Tensor(b, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    out = (ea @ eb).tanh().sum()
    (ta @ tb).tanh().sum().backward()
    out.backward()
    assert ea.grad.dtype is et.DType.F32 and eb.grad.dtype is et.DType.F32
    close(ea.grad.numpy(), ta.grad.numpy(), rtol=1e-5, atol=1e-6)
    close(eb.grad.numpy(), tb.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_numpy_values_on_the_left_keep_the_graph():
    x = et.Tensor([1.0, 2.0], dtype=et.DType.F64, requires_grad=True)
    y = np.float64(3.0) * x + np.array([1.0, 1.0])
    assert isinstance(y, et.Tensor) and y.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


# --- in-place changes, failed backwards, 0-d results ----------------------------------------

def test_backward_refuses_a_tensor_modified_in_place_since_the_forward():
    emb = et.nn.Embedding(4, 2, max_norm=0.1, dtype=et.DType.F64)
    h = et.Tensor([[1.0, 1.0]], dtype=et.DType.F64, requires_grad=True)
    logits = h @ emb.weight.T  # matmul reads the weight in its backward
    emb([0])  # renorms row 0 in place
    with pytest.raises(et.ModifiedTensorError, match="modified in place"):
        logits.sum().backward()
    assert h.grad is None and emb.weight.grad is None


def test_an_optimizer_step_between_forward_and_backward_is_caught():
    w = et.Tensor(np.ones((2, 2)), requires_grad=True)
    x = et.Tensor(np.ones((1, 2)), requires_grad=True)
    out = (x @ w).sum()
    w.grad = et.Tensor(np.ones((2, 2)))
    et.optim.SGD([w], lr=0.1).step()
    with pytest.raises(et.ModifiedTensorError):
        out.backward()


def test_a_lookup_does_not_need_the_table_values_in_its_backward():
    emb = et.nn.Embedding(4, 2, max_norm=0.1, dtype=et.DType.F64)
    first = emb([0, 1])
    second = emb([0, 2])  # renorms rows the first lookup returned: its backward is unaffected
    (first.sum() + second.sum()).backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy(), [[2, 2], [1, 1], [1, 1], [0, 0]])


def test_a_backward_that_raises_changes_no_gradient():
    a = et.Tensor([[1.0], [2.0]], requires_grad=True)
    b = et.Tensor([[3.0, 4.0]], requires_grad=True)
    out = (a * b).sum()
    with pytest.raises(et.ShapeError):
        b.grad = et.Tensor([[1.0, 1.0, 1.0]])
    w = et.Tensor([[1.0, 1.0]], requires_grad=True)
    stale = (a * w).sum()
    replace_data(w, data_of(w))  # as an optimizer step would
    with pytest.raises(et.ModifiedTensorError):
        (out + stale).backward()
    assert a.grad is None and b.grad is None and w.grad is None


@pytest.mark.parametrize("value, error", [
    (et.Tensor([1.0, 2.0, 3.0]), et.ShapeError),
    (et.Tensor([1.0, 2.0], dtype=et.DType.F64), et.DTypeError),
    (np.ones(2, np.float32), et.InvalidArgumentError),
])
def test_grad_assignment_is_checked(value, error):
    t = et.Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(error):
        t.grad = value
    assert t.grad is None


def test_zero_d_results_are_arrays_for_numpy_and_torch():
    x = et.Tensor([1.0, 2.0], requires_grad=True)
    for result in (x.sum(), x.mean(), x.max(), x[0], et.nn.functional.mse_loss(x, [0.0, 0.0])):
        assert result.shape == ()
        assert np.asarray(result).shape == ()
        assert torch.from_dlpack(result.detach()).item() == result.item()


# --- dtypes of results, half precision, edge cases ------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: et.Tensor([1, 2]) * 0.5, lambda: et.Tensor([1, 2]) / 2, lambda: et.Tensor([1, 2]) / et.Tensor([2, 2]),
    lambda: et.Tensor([1, 2]).exp(), lambda: et.Tensor([1, 2]).tanh(), lambda: et.Tensor([1, 2]).norm(),
    lambda: et.Tensor([1, 2]).mean(), lambda: et.Tensor([1.0, 2.0]) + np.float64(1),
    lambda: et.Tensor([1.0, 2.0]) * et.Tensor(2.0, dtype=et.DType.F64),
])
def test_result_dtypes_follow_torch(make):
    assert make().dtype is et.DType.F32


def test_integer_sigmoid_is_a_float():
    np.testing.assert_allclose(et.Tensor([1]).sigmoid().numpy(), [0.7310586], rtol=1e-6)


@pytest.mark.parametrize("dtype", [et.DType.BF16, et.DType.F16])
def test_half_precision_reductions_accumulate_in_f32(dtype):
    x = et.Tensor(np.full(1000, 0.1), dtype=dtype)
    exact_sum = 1000 * float(np.float32(x.numpy()[0]))
    assert x.sum().dtype is dtype
    assert abs(x.sum().item() - exact_sum) / exact_sum < 1e-2
    assert abs(x.mean().item() - exact_sum / 1000) < 1e-3
    assert abs(x.norm().item() - np.sqrt(1000) * 0.1) < 0.05
    assert et.Tensor([300.0], dtype=dtype).norm().item() == 300.0
    logits = et.Tensor(np.zeros((1, 1000)), dtype=dtype)
    assert abs(et.nn.functional.cross_entropy(logits, [3]).item() - np.log(1000)) < 0.05


def test_power_zero_has_zero_gradient_at_zero():
    x = et.Tensor([0.0, 2.0], dtype=et.DType.F64, requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_max_of_an_empty_tensor_over_a_non_empty_axis():
    assert et.Tensor(np.zeros((0, 3))).max(axis=1).shape == (0,)
    with pytest.raises(et.ShapeError):
        et.Tensor(np.zeros((0, 3))).max(axis=0)


@pytest.mark.parametrize("bad", [
    lambda x: x + et.Tensor(np.ones(5)), lambda x: x.sum(axis=1.5), lambda x: x.sum(axis=2),
    lambda x: et.nn.functional.log_softmax(x, axis=5),
])
def test_shape_errors_are_embtable_errors(bad):
    with pytest.raises(et.ShapeError):
        bad(et.Tensor(np.ones((2, 3)), requires_grad=True))


def test_an_integer_copy_records_no_gradient():
    x = et.Tensor([1.5, 2.5], requires_grad=True)
    assert not x.to(dtype=et.DType.I64).requires_grad
    assert x.to(dtype=et.DType.F64).requires_grad

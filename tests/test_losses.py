"""SPEC §3, `et.nn.functional` losses and `linear` / `et.nn.Linear`, against
torch.nn.functional in float64 (values and gradients)."""

import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import embtable as et

F = et.nn.functional

RTOL = 1e-12
ATOL = 1e-13


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol)


def normal(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def pair(values, requires_grad=True):
    values = np.asarray(values, dtype=np.float64)
    return (et.Tensor(values, requires_grad=requires_grad),
            torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad))


def backward_both(out, expected, seed=99):
    """Backpropagate one random upstream gradient through both results."""
    upstream = np.asarray(np.random.default_rng(seed).standard_normal(tuple(expected.shape)),
                          dtype=np.float64)
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))


def same_loss_and_grads(out, expected, *pairs):
    """The same loss value, then after a plain backward the same gradient for each pair."""
    close(out.item(), expected.item())
    out.backward()
    expected.backward()
    for e, t in pairs:
        assert_grad(e, t)


def assert_grad(e, t):
    assert isinstance(e.grad, et.Tensor)
    assert e.grad.shape == e.shape
    assert e.grad.dtype is e.dtype
    close(e.grad.numpy(), t.grad.numpy())


# --- log_softmax ---------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [-1, 0, 1, 2, -2, -3])
def test_log_softmax_matches_torch(axis):
    ex, tx = pair(normal((3, 4, 5), seed=1, scale=3.0))
    out = F.log_softmax(ex, axis=axis)
    expected = torch.log_softmax(tx, dim=axis)
    assert out.shape == (3, 4, 5) and out.dtype is et.DType.F64
    close(out.numpy(), expected.detach().numpy())
    backward_both(out, expected)
    assert_grad(ex, tx)


def test_log_softmax_default_axis_is_last():
    ex, tx = pair(normal((4, 6), seed=2))
    out = F.log_softmax(ex)
    expected = torch.log_softmax(tx, dim=-1)
    close(out.numpy(), expected.detach().numpy())
    backward_both(out, expected)
    assert_grad(ex, tx)


def test_log_softmax_positional_axis():
    ex, tx = pair(normal((4, 6), seed=3))
    out = F.log_softmax(ex, 0)
    expected = torch.log_softmax(tx, dim=0)
    close(out.numpy(), expected.detach().numpy())
    backward_both(out, expected)
    assert_grad(ex, tx)


def test_log_softmax_of_1d_tensor():
    ex, tx = pair(normal((7,), seed=4))
    out = F.log_softmax(ex)
    expected = torch.log_softmax(tx, dim=0)
    close(out.numpy(), expected.detach().numpy())
    backward_both(out, expected)
    assert_grad(ex, tx)


def test_log_softmax_is_stable_for_large_values():
    values = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4 + 1, -1e4 + 2], [800.0, 800.0, 799.0]])
    ex, tx = pair(values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.log_softmax(ex, axis=1)
        expected = torch.log_softmax(tx, dim=1)
        close(out.numpy(), expected.detach().numpy())
        backward_both(out, expected)
    assert np.all(np.isfinite(ex.grad.numpy()))
    assert_grad(ex, tx)


def test_log_softmax_inside_a_graph():
    ex, tx = pair(normal((3, 4), seed=5))
    ew, tw = pair(normal((4, 4), seed=6))
    out = (F.log_softmax(ex @ ew, axis=-1) * ex).sum()
    expected = (torch.log_softmax(tx @ tw, dim=-1) * tx).sum()
    close(out.item(), expected.item())
    backward_both(out, expected)
    assert_grad(ex, tx)
    assert_grad(ew, tw)


def test_log_softmax_rejects_integer_input():
    with pytest.raises(et.DTypeError):
        F.log_softmax(et.Tensor([[1, 2, 3]]))


# --- cross_entropy -------------------------------------------------------------------------

@pytest.mark.parametrize("n, c", [(1, 2), (5, 4), (8, 10), (3, 1)])
def test_cross_entropy_matches_torch(n, c):
    ex, tx = pair(normal((n, c), seed=7, scale=2.0))
    targets = np.random.default_rng(8).integers(0, c, n)
    out = F.cross_entropy(ex, et.Tensor(targets))
    expected = TF.cross_entropy(tx, torch.tensor(targets))
    assert out.shape == ()
    assert out.dtype is et.DType.F64
    close(out.item(), expected.item())
    backward_both(out, expected)
    assert_grad(ex, tx)


@pytest.mark.parametrize("form", ["et I64", "et I32", "numpy int64", "numpy int32", "list"])
def test_cross_entropy_accepts_integer_targets_in_several_forms(form):
    targets = [2, 0, 3, 3, 1]
    given = {"et I64": et.Tensor(targets), "et I32": et.Tensor(targets, dtype=et.DType.I32),
             "numpy int64": np.array(targets, np.int64), "numpy int32": np.array(targets, np.int32),
             "list": targets}[form]
    ex, tx = pair(normal((5, 4), seed=9))
    out = F.cross_entropy(ex, given)
    expected = TF.cross_entropy(tx, torch.tensor(targets))
    same_loss_and_grads(out, expected, (ex, tx))


def test_cross_entropy_is_stable_for_large_logits():
    values = np.array([[1000.0, -1000.0, 0.0], [-800.0, -800.0, 800.0], [50.0, 50.0, 50.0]])
    targets = [1, 2, 0]
    ex, tx = pair(values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.cross_entropy(ex, targets)
        expected = TF.cross_entropy(tx, torch.tensor(targets))
        close(out.item(), expected.item())
        backward_both(out, expected)
    assert np.isfinite(out.item())
    assert_grad(ex, tx)


def test_cross_entropy_inside_a_graph_accumulates():
    ex, tx = pair(normal((4, 3), seed=10))
    ew, tw = pair(normal((3, 5), seed=11))
    targets = [4, 0, 2, 2]
    out = F.cross_entropy((ex @ ew).tanh() * 3.0, targets) + F.cross_entropy(ex @ ew, targets) * 0.5
    expected = (TF.cross_entropy((tx @ tw).tanh() * 3.0, torch.tensor(targets))
                + TF.cross_entropy(tx @ tw, torch.tensor(targets)) * 0.5)
    same_loss_and_grads(out, expected, (ex, tx), (ew, tw))
    # a second backward adds up, as in PyTorch
    F.cross_entropy(ex @ ew, targets).backward()
    TF.cross_entropy(tx @ tw, torch.tensor(targets)).backward()
    assert_grad(ex, tx)
    assert_grad(ew, tw)


def test_cross_entropy_without_grad():
    ex, tx = pair(normal((3, 4), seed=12), requires_grad=False)
    out = F.cross_entropy(ex, [0, 1, 3])
    assert out.requires_grad is False
    close(out.item(), TF.cross_entropy(tx, torch.tensor([0, 1, 3])).item())


@pytest.mark.parametrize("targets", [
    [0.0, 1.0, 2.0],
    np.array([0.0, 1.0, 2.0]),
    np.array([0, 1, 2], np.float32),
], ids=["float list", "float64 array", "float32 array"])
def test_cross_entropy_float_targets_raise_dtype_error(targets):
    ex = et.Tensor(normal((3, 4), seed=13), requires_grad=True)
    with pytest.raises(et.DTypeError):
        F.cross_entropy(ex, targets)
    with pytest.raises(TypeError):  # DTypeError is also a TypeError
        F.cross_entropy(ex, et.Tensor(np.asarray(targets, dtype=np.float64)))
    assert ex.grad is None


@pytest.mark.parametrize("bad", [4, 17, -1, -5])
def test_cross_entropy_target_out_of_range_raises_and_names_the_value(bad):
    ex = et.Tensor(normal((3, 4), seed=14), requires_grad=True)
    before = ex.numpy().copy()
    with pytest.raises(et.IndexOutOfRangeError) as caught:
        F.cross_entropy(ex, [0, bad, 2])
    assert isinstance(caught.value, IndexError)
    assert re.search(rf"(?<![\d-]){re.escape(str(bad))}(?!\d)", str(caught.value)), str(caught.value)
    assert ex.grad is None
    assert np.array_equal(ex.numpy(), before)


@pytest.mark.parametrize("logits_shape, targets_shape", [
    ((4, 3), (3,)),
    ((4, 3), (5,)),
    ((4, 3), (4, 1)),
    ((4, 3), ()),
    ((4,), (4,)),
    ((2, 4, 3), (2, 4)),
], ids=str)
def test_cross_entropy_mismatched_shapes_raise_shape_error(logits_shape, targets_shape):
    ex = et.Tensor(normal(logits_shape, seed=15), requires_grad=True)
    targets = et.Tensor(np.zeros(targets_shape, np.int64))
    with pytest.raises(et.ShapeError):
        F.cross_entropy(ex, targets)
    assert ex.grad is None


@pytest.mark.parametrize("dtype", [et.DType.I64, et.DType.I32, et.DType.U8, et.DType.BOOL],
                         ids=lambda d: d.name)
def test_cross_entropy_integer_logits_raise_dtype_error(dtype):
    logits = et.Tensor(np.ones((3, 4), np.int64), dtype=dtype)
    with pytest.raises(et.DTypeError):
        F.cross_entropy(logits, [0, 1, 2])


def test_cross_entropy_f32_logits():
    values = normal((4, 5), seed=16).astype(np.float32)
    ex = et.Tensor(values, requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)
    out = F.cross_entropy(ex, [1, 4, 0, 2])
    expected = TF.cross_entropy(tx, torch.tensor([1, 4, 0, 2]))
    assert out.dtype is et.DType.F32
    close(out.item(), expected.item(), rtol=1e-5, atol=1e-6)
    out.backward()
    expected.backward()
    assert ex.grad.dtype is et.DType.F32
    close(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


# --- binary_cross_entropy_with_logits ------------------------------------------------------

def _probabilities(shape, seed):
    return np.random.default_rng(seed).uniform(0.0, 1.0, shape)


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2), ()], ids=str)
def test_bce_with_logits_matches_torch(shape):
    ex, tx = pair(normal(shape, seed=17, scale=3.0))
    et_t, torch_t = pair(_probabilities(shape, 18), requires_grad=False)
    out = F.binary_cross_entropy_with_logits(ex, et_t)
    expected = TF.binary_cross_entropy_with_logits(tx, torch_t)
    assert out.shape == ()
    assert out.dtype is et.DType.F64
    close(out.item(), expected.item())
    backward_both(out, expected)
    assert_grad(ex, tx)
    assert et_t.grad is None


def test_bce_with_logits_is_stable_for_large_logits():
    logits = np.array([-1000.0, -50.0, -30.0, -1.0, 0.0, 1.0, 30.0, 50.0, 1000.0])
    targets = np.array([0.0, 1.0, 0.0, 0.3, 0.5, 1.0, 0.0, 1.0, 1.0])
    ex, tx = pair(logits)
    et_t, torch_t = pair(targets, requires_grad=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.binary_cross_entropy_with_logits(ex, et_t)
        expected = TF.binary_cross_entropy_with_logits(tx, torch_t)
        close(out.item(), expected.item())
        backward_both(out, expected)
    assert np.isfinite(out.item())
    assert np.all(np.isfinite(ex.grad.numpy()))
    assert_grad(ex, tx)


@pytest.mark.parametrize("logit, target, loss", [(50.0, 1.0, 0.0), (-50.0, 0.0, 0.0),
                                                 (50.0, 0.0, 50.0), (-50.0, 1.0, 50.0)])
def test_bce_with_logits_extreme_single_values(logit, target, loss):
    x = et.Tensor([logit], dtype=et.DType.F64, requires_grad=True)
    out = F.binary_cross_entropy_with_logits(x, et.Tensor([target], dtype=et.DType.F64))
    close(out.item(), loss + np.log1p(np.exp(-50.0)), rtol=1e-12, atol=1e-15)


def test_bce_with_logits_gradient_to_targets():
    ex, tx = pair(np.array([[-50.0, -2.0, 0.5], [0.0, 3.0, 50.0]]))
    et_t, torch_t = pair(_probabilities((2, 3), 19))
    out = F.binary_cross_entropy_with_logits(ex, et_t)
    expected = TF.binary_cross_entropy_with_logits(tx, torch_t)
    close(out.item(), expected.item())
    backward_both(out, expected)
    assert_grad(ex, tx)
    assert_grad(et_t, torch_t)


def test_bce_with_logits_gradient_to_targets_only():
    ex, tx = pair(normal((4,), seed=20), requires_grad=False)
    et_t, torch_t = pair(_probabilities((4,), 21))
    out = F.binary_cross_entropy_with_logits(ex, et_t)
    expected = TF.binary_cross_entropy_with_logits(tx, torch_t)
    assert out.requires_grad
    backward_both(out, expected)
    assert ex.grad is None
    assert_grad(et_t, torch_t)


def test_bce_with_logits_targets_from_a_graph():
    ex, tx = pair(normal((3, 2), seed=22))
    ey, ty = pair(normal((3, 2), seed=23))
    out = F.binary_cross_entropy_with_logits(ex * 2.0, ey.sigmoid())
    expected = TF.binary_cross_entropy_with_logits(tx * 2.0, ty.sigmoid())
    close(out.item(), expected.item())
    backward_both(out, expected)
    assert_grad(ex, tx)
    assert_grad(ey, ty)


@pytest.mark.parametrize("form", ["numpy", "list"])
def test_bce_with_logits_accepts_array_targets(form):
    targets = np.array([0.0, 1.0, 0.25])
    ex, tx = pair(np.array([0.3, -1.2, 2.0]))
    out = F.binary_cross_entropy_with_logits(ex, targets if form == "numpy" else targets.tolist())
    expected = TF.binary_cross_entropy_with_logits(tx, torch.from_numpy(targets))
    same_loss_and_grads(out, expected, (ex, tx))


def test_bce_with_logits_mismatched_shapes_raise_shape_error():
    ex = et.Tensor(normal((3, 4), seed=24), requires_grad=True)
    for shape in [(4,), (3, 1), (4, 3), (3, 4, 1)]:
        with pytest.raises(et.ShapeError):
            F.binary_cross_entropy_with_logits(ex, et.Tensor(np.zeros(shape)))
    assert ex.grad is None


def test_bce_with_logits_integer_logits_raise_dtype_error():
    with pytest.raises(et.DTypeError):
        F.binary_cross_entropy_with_logits(et.Tensor([1, 0, 1]), et.Tensor([1.0, 0.0, 1.0]))


# --- mse_loss ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2), ()], ids=str)
@pytest.mark.parametrize("b_requires_grad", [False, True])
def test_mse_loss_matches_torch(shape, b_requires_grad):
    ea, ta = pair(normal(shape, seed=25))
    eb, tb = pair(normal(shape, seed=26), requires_grad=b_requires_grad)
    out = F.mse_loss(ea, eb)
    expected = TF.mse_loss(ta, tb)
    assert out.shape == ()
    assert out.dtype is et.DType.F64
    close(out.item(), expected.item())
    backward_both(out, expected)
    assert_grad(ea, ta)
    if b_requires_grad:
        assert_grad(eb, tb)
    else:
        assert eb.grad is None


def test_mse_loss_accepts_array_target():
    target = normal((2, 3), seed=27)
    ea, ta = pair(normal((2, 3), seed=28))
    out = F.mse_loss(ea, target)
    expected = TF.mse_loss(ta, torch.from_numpy(target))
    same_loss_and_grads(out, expected, (ea, ta))


def test_mse_loss_mismatched_shapes_raise_shape_error():
    ea = et.Tensor(normal((3, 4), seed=29), requires_grad=True)
    for shape in [(4,), (3, 1), (4, 3), (1, 3, 4), ()]:
        with pytest.raises(et.ShapeError):
            F.mse_loss(ea, et.Tensor(np.zeros(shape)))
    assert ea.grad is None


def test_mse_loss_integer_input_raises_dtype_error():
    with pytest.raises(et.DTypeError):
        F.mse_loss(et.Tensor([1, 2, 3]), et.Tensor([1.0, 2.0, 3.0]))


# --- linear / Linear -----------------------------------------------------------------------

@pytest.mark.parametrize("x_shape", [(5, 3), (2, 5, 3), (3,)], ids=str)
@pytest.mark.parametrize("with_bias", [True, False])
def test_functional_linear_matches_torch(x_shape, with_bias):
    ex, tx = pair(normal(x_shape, seed=30))
    ew, tw = pair(normal((4, 3), seed=31))
    eb, tb = pair(normal((4,), seed=32)) if with_bias else (None, None)
    out = F.linear(ex, ew, eb)
    expected = TF.linear(tx, tw, tb)
    assert out.shape == tuple(expected.shape)
    close(out.numpy(), expected.detach().numpy())
    backward_both(out, expected)
    assert_grad(ex, tx)
    assert_grad(ew, tw)
    if with_bias:
        assert_grad(eb, tb)


def test_functional_linear_input_without_grad():
    ex, tx = pair(normal((5, 3), seed=33), requires_grad=False)
    ew, tw = pair(normal((2, 3), seed=34))
    eb, tb = pair(normal((2,), seed=35))
    out = F.linear(ex, ew, eb)
    expected = TF.linear(tx, tw, tb)
    backward_both(out, expected)
    assert ex.grad is None
    assert_grad(ew, tw)
    assert_grad(eb, tb)


def test_functional_linear_shape_mismatch_raises_shape_error():
    ew = et.Tensor(normal((4, 3), seed=36), requires_grad=True)
    with pytest.raises(et.ShapeError):
        F.linear(et.Tensor(normal((5, 2), seed=37)), ew)


def _et_linear_like_torch(torch_layer, bias):
    layer = et.nn.Linear(torch_layer.in_features, torch_layer.out_features, bias=bias,
                         dtype=et.DType.F64)
    assert layer.weight.shape == tuple(torch_layer.weight.shape)
    state = {"weight": torch_layer.weight.detach().numpy().copy()}
    if bias:
        state["bias"] = torch_layer.bias.detach().numpy().copy()
    layer.load_state_dict(state)
    close(layer.weight.numpy(), torch_layer.weight.detach().numpy(), rtol=0, atol=0)
    return layer


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape", [(6, 3), (2, 6, 3)], ids=str)
def test_nn_linear_gradients_match_torch(bias, x_shape):
    torch.manual_seed(0)
    torch_layer = torch.nn.Linear(3, 4, bias=bias, dtype=torch.float64)
    layer = _et_linear_like_torch(torch_layer, bias)
    assert len(layer.parameters()) == (2 if bias else 1)
    if not bias:
        assert layer.bias is None

    ex, tx = pair(normal(x_shape, seed=38))
    target = normal(x_shape[:-1] + (4,), seed=39)
    out = F.mse_loss(layer(ex).tanh(), target)
    expected = TF.mse_loss(torch_layer(tx).tanh(), torch.from_numpy(target))
    same_loss_and_grads(out, expected, (ex, tx))
    assert_grad(layer.weight, torch_layer.weight)
    if bias:
        assert_grad(layer.bias, torch_layer.bias)


def test_nn_linear_classifier_with_cross_entropy_matches_torch():
    torch.manual_seed(1)
    t1 = torch.nn.Linear(5, 8, dtype=torch.float64)
    t2 = torch.nn.Linear(8, 3, dtype=torch.float64)
    l1, l2 = _et_linear_like_torch(t1, True), _et_linear_like_torch(t2, True)
    ex, tx = pair(normal((7, 5), seed=40))
    targets = [0, 2, 1, 1, 0, 2, 2]
    out = F.cross_entropy(l2(l1(ex).relu()), targets)
    expected = TF.cross_entropy(t2(t1(tx).relu()), torch.tensor(targets))
    same_loss_and_grads(out, expected, (ex, tx))
    for mine, theirs in [(l1.weight, t1.weight), (l1.bias, t1.bias),
                         (l2.weight, t2.weight), (l2.bias, t2.bias)]:
        assert_grad(mine, theirs)


def test_nn_linear_default_dtype_and_grad_dtype():
    layer = et.nn.Linear(3, 2)
    assert layer.weight.dtype is et.DType.F32 and layer.bias.dtype is et.DType.F32
    assert layer.weight.requires_grad and layer.bias.requires_grad
    x = et.Tensor(np.ones((4, 3), np.float32))
    layer(x).sum().backward()
    assert layer.weight.grad.dtype is et.DType.F32
    assert layer.bias.grad.tolist() == [4.0, 4.0]
    close(layer.weight.grad.numpy(), np.full((2, 3), 4.0), rtol=0, atol=0)

"""SPEC §3, "What a PyTorch user reaches for": each name against PyTorch on random inputs,
values and gradients in float64 to 1e-12. The ops are written once and run on both
libraries, which spell them alike (`M` is `torch` or `embtable`)."""

import numpy as np
import pytest
import torch

import embtable as et

RNG = np.random.default_rng(7)
A = RNG.standard_normal((3, 4))
B = RNG.standard_normal((3, 4))
TIED = np.round(RNG.standard_normal((3, 4)), 0)  # ties and zeros, for comparisons and maxima
POSITIVE = RNG.random((3, 4)) + 0.1


def _as_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    if isinstance(value, et.Tensor):
        return value.numpy()
    return np.asarray(value)


def _outputs(value):
    """The tensors and values of a (nested) tuple of results, in order."""
    return [leaf for item in value for leaf in _outputs(item)] if isinstance(value, tuple) else [value]


def check(op, *arrays, grad=True):
    """Run `op` on both libraries with float64 copies of `arrays`; compare the outputs and,
    where `grad`, the gradients of a random weighting of the float outputs."""
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=grad) for a in arrays]
    ours = [et.Tensor(a, dtype=et.DType.F64, requires_grad=grad) for a in arrays]
    out_theirs, out_ours = _outputs(op(torch, *theirs)), _outputs(op(et, *ours))
    assert len(out_theirs) == len(out_ours)
    for t, e in zip(out_theirs, out_ours):
        assert str(e.dtype.numpy if isinstance(e, et.Tensor) else type(e)) == \
            str(_as_numpy(t).dtype if isinstance(t, torch.Tensor) else type(t)), (t, e)
        np.testing.assert_allclose(_as_numpy(e), _as_numpy(t), rtol=1e-12, atol=1e-12)
    floats = [(t, e) for t, e in zip(out_theirs, out_ours) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not grad or not floats:
        return
    loss_theirs = sum((t * torch.tensor(w)).sum() for (t, _), w in zip(floats, _weights(floats)))
    loss_ours = sum((e * w).sum() for (_, e), w in zip(floats, _weights(floats)))
    loss_theirs.backward()
    loss_ours.backward()
    for t, e in zip(theirs, ours):
        expected = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        actual = np.zeros(e.shape) if e.grad is None else e.grad.numpy()
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def _weights(pairs):
    rng = np.random.default_rng(11)
    return [rng.standard_normal(tuple(t.shape)) for t, _ in pairs]


# --- comparisons, logic, where --------------------------------------------------------------

@pytest.mark.parametrize("op", [
    lambda M, a, b: (a == b, a != b, a < b, a <= b, a > b, a >= b),
    lambda M, a, b: (a == 0, a != 0.0, 0 < a, a >= 1),
    lambda M, a, b: ((a > 0) & (b > 0), (a > 0) | (b > 0), (a > 0) ^ (b > 0), ~(a > 0), True & (a > 0),
                     False | (b > 0)),
], ids=["tensors", "scalars", "logic"])
def test_comparisons_are_element_wise_bool_tensors(op):
    check(op, TIED, np.round(B, 0), grad=False)


def test_a_padding_mask_multiplies_element_wise():
    """The regression: ``ids != 0`` once compared identity and returned True, so the mask
    silently kept the padding rows."""
    ids = np.array([[1, 0, 3], [0, 0, 2]])
    weight = RNG.standard_normal((4, 5))
    emb = et.nn.Embedding.from_pretrained(weight)
    mask = et.Tensor(ids) != 0
    assert mask.dtype is et.DType.BOOL and mask.tolist() == [[True, False, True], [False, False, True]]
    ours = (emb(ids) * mask.unsqueeze(-1)).sum(1)
    theirs = (torch.tensor(weight)[torch.tensor(ids)] * (torch.tensor(ids) != 0).unsqueeze(-1)).sum(1)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_comparing_with_other_objects_is_python_equality():
    t = et.Tensor([1.0])
    assert (t == None) is False and (t != "a") is True  # noqa: E711
    twins = {t: 1, et.Tensor([1.0]): 2}  # hashed by identity, as torch tensors: equal values, two keys
    assert len(twins) == 2 and twins[t] == 1


@pytest.mark.parametrize("op", [
    lambda M, a, b: M.where(a > 0, a, b),
    lambda M, a, b: M.where(a > b, a * 2, 0.5),
    lambda M, a, b: M.where(b[0] > 0, a, b[1]),  # broadcast
], ids=["tensors", "scalar", "broadcast"])
def test_where_passes_each_gradient_to_its_source(op):
    check(op, A, B)


def test_one_element_tensors_become_python_values():
    assert bool(et.Tensor([0.5])) is True and bool(et.Tensor(0)) is False
    assert float(et.Tensor([[2.5]])) == 2.5 and int(et.Tensor(7.9)) == 7
    assert f"{et.Tensor([0.123456]):.3f}" == "0.123" and f"{et.Tensor(2.5)}" == f"{torch.tensor(2.5)}"
    assert list(range(et.Tensor(3))) == [0, 1, 2] and [10, 11][et.Tensor([1])] == 11
    assert "Tensor(" in f"{et.Tensor([1.0, 2.0])}"
    for larger in (et.Tensor([1.0, 2.0]), et.Tensor(np.zeros((0,)))):
        for convert in (bool, float, int, lambda t: format(t, ".2f")):
            with pytest.raises(et.ShapeError, match=r"exactly one element.*shape"):
                convert(larger)
    with pytest.raises(TypeError, match="integer"):
        [0][et.Tensor([0.0])]


# --- reductions and element-wise math -------------------------------------------------------

@pytest.mark.parametrize("op", [
    lambda M, a: a.sum(dim=1, keepdim=True),
    lambda M, a: a.mean(dim=(0, 1)),
    lambda M, a: a.norm(dim=1),
    lambda M, a: a.max(dim=1),
    lambda M, a: a.min(dim=0, keepdim=True),
    lambda M, a: tuple(a.max(dim=-1)),
    lambda M, a: a.amax(dim=1),
    lambda M, a: a.amin(dim=(0, 1)),
    lambda M, a: (a.argmax(dim=1), a.argmin(dim=0, keepdim=True), a.argmax(), a.argmin()),
    lambda M, a: a.topk(2, dim=1),
    lambda M, a: a.topk(3, dim=0, largest=False),
    lambda M, a: a.max(),
], ids=["sum", "mean", "norm", "max-dim", "min-dim-keep", "max-tuple", "amax", "amin", "arg", "topk",
        "topk-smallest", "max-all"])
def test_reductions_take_dim_and_keepdim(op):
    check(op, A)


def test_maxima_with_ties_match_torch():
    check(lambda M, a: (a.max(dim=1), a.min(dim=0), a.amax(dim=1), a.argmax(dim=1)), TIED)


def test_numpy_forms_still_hold():
    t = et.Tensor(A)
    np.testing.assert_array_equal(t.max(1).numpy(), A.max(1))
    np.testing.assert_array_equal(t.min(axis=0, keepdims=True).numpy(), A.min(0, keepdims=True))
    with pytest.raises(et.InvalidArgumentError, match="not both"):
        t.sum(axis=0, dim=1)


@pytest.mark.parametrize("op", [
    lambda M, a: (a.abs(), abs(a)),
    lambda M, a: a.clamp(-0.3, 0.4),
    lambda M, a: (a.clamp(min=0.1), a.clamp(max=-0.2), a.clip(-1, 1)),
    lambda M, a: (a.softmax(1), a.softmax(dim=0)),
    lambda M, a: (M.nn.functional.softmax(a, dim=-1), M.nn.functional.relu(a)),
], ids=["abs", "clamp", "clamp-one-side", "softmax", "functional"])
def test_element_wise_math(op):
    check(op, A)


def test_sqrt():
    check(lambda M, a: a.sqrt(), POSITIVE)


def test_clamp_needs_a_bound():
    with pytest.raises(et.InvalidArgumentError, match="min or max"):
        et.Tensor(A).clamp()


# --- shapes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [
    lambda M, a: (a.view(4, 3), a.view(-1), a.view(2, -1, 2)),
    lambda M, a: (a.unsqueeze(0), a.unsqueeze(-1), a.unsqueeze(1)),
    lambda M, a: (a.unsqueeze(1).squeeze(), a.unsqueeze(0).squeeze(0), a.squeeze(1)),
    lambda M, a: (a.view(3, 2, 2).flatten(), a.view(3, 2, 2).flatten(1), a.view(3, 2, 2).flatten(0, 1)),
    lambda M, a, b: (M.cat([a, b], dim=0), M.cat([a, b * 2, a], dim=1), M.cat((a,), dim=-1)),
    lambda M, a, b: (M.stack([a, b]), M.stack([a, b], dim=2), M.stack([a, b], dim=-1)),
], ids=["view", "unsqueeze", "squeeze", "flatten", "cat", "stack"])
def test_shapes(op):
    arguments = (A, B)[:op.__code__.co_argcount - 1]
    check(op, *arguments)


def test_size_and_dim():
    t, r = et.Tensor(A), torch.tensor(A)
    assert t.size() == tuple(r.size()) and t.size(1) == r.size(1) and t.size(-1) == 4 and t.dim() == r.dim() == 2


def test_cat_and_stack_refuse_what_does_not_fit():
    a, b = et.Tensor(A), et.Tensor(np.zeros((2, 3)))
    with pytest.raises(et.ShapeError, match="one shape"):
        et.cat([a, b], dim=0)
    with pytest.raises(et.ShapeError, match="one shape"):
        et.stack([a, b])
    with pytest.raises(et.InvalidArgumentError, match="non-empty"):
        et.cat([])


# --- indexing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [
    lambda M, a: a[[0, 2, 2]],
    lambda M, a: a[M.tensor([2, 0]) if M is torch else M.Tensor([2, 0])],
    lambda M, a: a[a > 0],
    lambda M, a: a[:, [1, 0, 1]],
    lambda M, a: a[np.array([[0, 1], [2, 2]])],
    lambda M, a: a[[0, 2], [3, 3]],
    lambda M, a: a[1:, [0, 0]],
    lambda M, a: a[np.array([True, False, True])],
    lambda M, a: a[..., 1],
], ids=["list", "tensor", "mask", "columns", "2-d", "pairs", "mixed", "numpy-mask", "basic"])
def test_advanced_indexing_scatters_gradients_back(op):
    check(op, A)


def test_bad_indices_are_refused():
    t = et.Tensor(A)
    with pytest.raises(et.InvalidArgumentError, match="index"):
        t[[0.5, 1.0]]
    with pytest.raises(et.InvalidArgumentError, match="index"):
        t["a"]
    with pytest.raises(et.InvalidArgumentError, match="bool index"):
        t[True]
    with pytest.raises(et.IndexOutOfRangeError):
        t[[0, 3]]
    before = t.numpy()
    with pytest.raises(et.IndexOutOfRangeError):
        t[[0, 3]] = 1.0
    with pytest.raises(et.ShapeError, match="broadcast"):
        t[[0, 1]] = np.ones(3)
    assert t.numpy().tobytes() == before.tobytes()


def test_keys_that_do_not_fit_are_shape_errors_and_0d_arrays_index_as_ints():
    t = et.Tensor(A.copy())
    for key in ((Ellipsis, Ellipsis), (0, 0, 0)):
        with pytest.raises(et.ShapeError):
            t[key]
    t[np.array(1)].fill_(5.0)  # a view, as t[1], on both backends
    assert (t.numpy()[1] == 5.0).all()
    t[0] = np.ones((1, 4))  # leading size-1 axes drop, as in NumPy and PyTorch
    theirs = torch.tensor(A.copy())
    theirs[0] = torch.ones((1, 4))
    assert (t.numpy()[0] == 1).all() and (theirs.numpy()[0] == 1).all()


def test_integer_index_tensors_of_any_width_index_alike():
    check(lambda M, a: (a[(M.tensor if M is torch else M.Tensor)(np.array([2, 0], np.uint8)).long()],
                        a[(M.tensor if M is torch else M.Tensor)(1)]), A)
    t = et.Tensor(A)
    assert t[et.Tensor(np.array([2, 0], np.uint8))].numpy().tobytes() == A[[2, 0]].tobytes()


def test_an_index_tensor_changed_before_the_backward_is_caught():
    t = et.Tensor(A, requires_grad=True)
    index = et.Tensor([0, 2])
    picked = t[index].sum()
    index[0] = 1
    with pytest.raises(et.ModifiedTensorError):
        picked.backward()


# --- in place -----------------------------------------------------------------------------------

def test_in_place_changes_match_torch():
    ours, theirs = et.Tensor(A.copy()), torch.tensor(A.copy())
    for t in (ours, theirs):
        t[0] = 1.5
        t[[1, 2], 3] = -1.0
        t[t < -1.2] = 0
        t[2, :2] = t[1, :2]
        t[1:] = t[:-1] if isinstance(t, et.Tensor) else t[:-1].clone()  # overlapping (torch refuses it)
        t[0, 1].fill_(9)  # a view on both libraries, as on both backends
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(ours.clone().zero_().numpy(), np.zeros((3, 4)))
    np.testing.assert_array_equal(ours.clone().fill_(2).numpy(), np.full((3, 4), 2.0))
    np.testing.assert_array_equal(et.Tensor(np.zeros((3, 4))).copy_(et.Tensor(B[0])).numpy(), np.tile(B[0], (3, 1)))


def test_weights_change_in_place_under_no_grad_and_a_pending_backward_refuses():
    emb = et.nn.Embedding(5, 3)
    with pytest.raises(et.InvalidArgumentError, match="no_grad"):
        emb.weight[3] = 0
    before = emb.weight.numpy()
    with et.no_grad():
        emb.weight[3] = 0
    assert (emb.weight.numpy()[3] == 0).all() and (emb.weight.numpy()[[0, 1, 2, 4]] == before[[0, 1, 2, 4]]).all()
    weighted = (emb(et.Tensor([1])) * emb.weight[1]).sum()
    with et.no_grad():
        emb.weight.fill_(0.5)
    with pytest.raises(et.ModifiedTensorError):
        weighted.backward()


def test_assigning_a_value_that_requires_grad_is_refused():
    w = et.Tensor([1.0, 2.0], requires_grad=True)
    out = et.Tensor(np.zeros(3))
    for change in (lambda: out.__setitem__(0, w.sum()), lambda: out.fill_(w.sum()), lambda: out.copy_(w.sum())):
        with pytest.raises(et.InvalidArgumentError, match="gradient"):
            change()
    assert (out.numpy() == 0).all()
    out[0] = w.sum().detach()
    assert out.tolist() == [3.0, 0.0, 0.0]
    with pytest.raises(et.InvalidArgumentError, match="number"):
        out.fill_([1.0, 2.0])


def test_results_of_comparisons_and_arg_reductions_are_arrays():
    t = et.Tensor(A)
    for result in (t.argmax(), t.argmin(), t[0, 0] > 0, et.Tensor(1.0) == 1, ~(t[0, 0] > 0)):
        assert result.ndim == 0 and np.asarray(result).shape == () and result.numpy().ndim == 0
    assert et.Tensor(np.zeros((0, 3))).argmax(dim=1).shape == (0,)
    assert torch.zeros(0, 3).argmax(dim=1).shape == (0,)
    with pytest.raises(et.ShapeError, match="empty"):
        et.Tensor(np.zeros((3, 0))).argmax(dim=1)


@pytest.mark.parametrize("op", [lambda x: x.exp(), lambda x: x.sqrt(), lambda x: x.softmax(0),
                                lambda x: 2.0 ** x, lambda x: x.max(), lambda x: x.amax(dim=0), lambda x: x.norm()],
                         ids=["exp", "sqrt", "softmax", "power", "max", "amax", "norm"])
def test_an_output_changed_before_the_backward_that_reads_it_is_caught(op):
    x = et.Tensor(POSITIVE[0], requires_grad=True)
    out = op(x)
    with et.no_grad():
        out.fill_(100.0)
    with pytest.raises(et.ModifiedTensorError):
        (out + 1).sum().backward()


def test_a_backward_that_reads_only_the_output_ignores_a_changed_input():
    x = et.Tensor(POSITIVE[0], requires_grad=True)
    theirs = torch.tensor(POSITIVE[0], requires_grad=True)
    out, expected = x.exp(), theirs.exp()
    with et.no_grad():
        x.fill_(0.0)
    with torch.no_grad():
        theirs.fill_(0.0)
    out.sum().backward()
    expected.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)


def test_copy_refuses_a_shape_that_does_not_broadcast():
    t = et.Tensor(np.zeros((3, 4)))
    with pytest.raises(et.ShapeError, match="broadcast"):
        t.copy_(et.Tensor(np.zeros(3)))
    assert (t.numpy() == 0).all()


# --- casts and copies ---------------------------------------------------------------------------

def test_casts_clone_and_moves():
    check(lambda M, a: (a.float().double(), a.clone() * 2), A)
    check(lambda M, a: a.half().float(), A, grad=False)  # torch rounds the gradient to F16 as well
    t = et.Tensor(A)
    assert t.long().dtype is et.DType.I64 and t.int().dtype is et.DType.I32 and t.bool().dtype is et.DType.BOOL
    assert t.bfloat16().dtype is et.DType.BF16 and t.double() is t and t.cpu() is t
    moved = t.to(torch.device("cpu"), torch.float32)
    assert moved.dtype is et.DType.F32 and moved.device == et.Device.CPU
    assert t.requires_grad_() is t and t.requires_grad


# --- layers ---------------------------------------------------------------------------------------

def test_sequential_relu_dropout_match_torch():
    et.manual_seed(0)
    ours = et.nn.Sequential(et.nn.Linear(4, 3, dtype=et.DType.F64), et.nn.ReLU(), et.nn.Dropout(0.5),
                            et.nn.Linear(3, 2, dtype=et.DType.F64))
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                 torch.nn.Linear(3, 2)).double()
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.eval()
    theirs.eval()
    check(lambda M, x: (ours if M is et else theirs)(x), A)
    assert len(ours) == 4 and isinstance(ours[1], et.nn.ReLU)


def test_dropout_zeroes_at_rate_p_and_scales_the_rest():
    x = et.Tensor(np.ones(20000))
    et.manual_seed(3)
    out = et.nn.functional.dropout(x, 0.3).numpy()
    et.manual_seed(3)
    again = et.nn.Dropout(0.3)(x).numpy()
    np.testing.assert_array_equal(out, again)
    assert abs((out == 0).mean() - 0.3) < 0.02 and np.allclose(out[out != 0], 1 / 0.7)
    assert et.nn.Dropout(0.3).eval()(x) is x
    with pytest.raises(et.InvalidArgumentError, match=r"\[0, 1\]"):
        et.nn.Dropout(1.5)


@pytest.mark.parametrize("norm_type, max_norm", [(2.0, 0.5), (1.0, 0.5), (float("inf"), 0.1), (2.0, 100.0)])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    weight, other = RNG.standard_normal((6, 3)), RNG.standard_normal((3, 2))
    ids = np.array([1, 4, 4])
    ours = et.nn.Embedding.from_pretrained(weight, freeze=False, sparse=True)  # torch clips dense ones only
    theirs = torch.nn.Embedding.from_pretrained(torch.tensor(weight), freeze=False)
    w_ours, w_theirs = et.Tensor(other, requires_grad=True), torch.tensor(other, requires_grad=True)
    (ours(ids) @ w_ours).sum().backward()
    (theirs(torch.tensor(ids)) @ w_theirs).sum().backward()
    total_ours = et.nn.utils.clip_grad_norm_([ours.weight, w_ours], max_norm, norm_type)
    total_theirs = torch.nn.utils.clip_grad_norm_([theirs.weight, w_theirs], max_norm, norm_type)
    assert float(total_ours) == pytest.approx(float(total_theirs), rel=1e-12)
    np.testing.assert_allclose(ours.weight.grad.to_dense().numpy(), theirs.weight.grad.numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(w_ours.grad.numpy(), w_theirs.grad.numpy(), rtol=1e-12)


def test_a_layer_repr_lists_its_children():
    class Tower(et.nn.Layer):
        def __init__(self):
            self.user = et.nn.Embedding(10, 4)
            self.mlp = et.nn.Sequential(et.nn.Linear(4, 2), et.nn.ReLU())

    assert repr(Tower()) == ("Tower(\n  (user): Embedding(10, 4)\n  (mlp): Sequential(\n"
                             "    (0): Linear(4, 2, bias=True)\n    (1): ReLU()\n  )\n)")


# --- arrays where tensors are expected --------------------------------------------------------

def test_arrays_and_lists_are_accepted_where_tensors_are():
    linear = et.nn.Linear(4, 2)
    np.testing.assert_allclose(linear(A).numpy(), linear(et.Tensor(A, dtype=et.DType.F32)).numpy())
    targets = np.array([0, 1, 1])
    logits = RNG.standard_normal((3, 2))
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(targets)).item()
    assert et.nn.functional.cross_entropy(logits, targets).item() == pytest.approx(expected, rel=1e-12)
    assert et.nn.functional.cross_entropy(logits.tolist(), targets.tolist()).item() == pytest.approx(expected, 1e-6)
    assert et.nn.functional.mse_loss([1.0, 2.0], [1.0, 4.0]).item() == pytest.approx(2.0)
    np.testing.assert_allclose(et.nn.functional.softmax(A, dim=1).numpy(),
                               torch.softmax(torch.tensor(A), 1).numpy(), rtol=1e-12)
    assert et.cat([A, et.Tensor(B)], dim=1).shape == (3, 8) and et.stack([[1, 2], [3, 4]]).shape == (2, 2)


def test_an_optimizer_given_a_layer_says_to_pass_its_parameters():
    with pytest.raises(et.InvalidArgumentError, match=r"model\.parameters\(\)"):
        et.optim.Adam(et.nn.Linear(2, 2))
    with pytest.raises(et.InvalidArgumentError, match=r"\[tensor\]"):
        et.optim.SGD(et.Tensor([1.0], requires_grad=True), lr=0.1)

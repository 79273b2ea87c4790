"""Optimizers against torch.optim in float64: dense step for step, and row-sparse (lazy)
updates against SparseAdam / sparse Adagrad / sparse SGD; the sparse weight-decay rule;
atomic failure; state dicts."""

import copy

import numpy as np
import pytest
import torch

import embtable as et
from embtable.backends.numpy_backend import NumpyBackend
from embtable.optim import SGD, Adagrad, Adam, AdamW, RowWiseAdagrad

SHAPES = [(7, 4), (4,), ()]


@pytest.fixture(params=["fused", "reference"], autouse=True)
def update_path(request, monkeypatch):
    """Every test runs twice: with the backend's fused kernels, and with the optimizers'
    reference rules (the path other backends and half-precision parameters take)."""
    if request.param == "reference":
        monkeypatch.setattr(NumpyBackend, "fused_step", lambda *args: False)
    return request.param

DENSE_CASES = [
    (SGD, dict(lr=0.1), torch.optim.SGD),
    (SGD, dict(lr=0.1, momentum=0.9), torch.optim.SGD),
    (SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.1), torch.optim.SGD),
    (Adam, dict(), torch.optim.Adam),
    (Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), torch.optim.Adam),
    (AdamW, dict(), torch.optim.AdamW),
    (AdamW, dict(lr=0.02, weight_decay=0.3), torch.optim.AdamW),
    (Adagrad, dict(), torch.optim.Adagrad),
    (Adagrad, dict(lr=0.1, eps=1e-6, weight_decay=0.2), torch.optim.Adagrad),
]


def make_params(rng):
    values = [rng.standard_normal(shape) for shape in SHAPES]
    ours = [et.Tensor(v, requires_grad=True) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    return ours, theirs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ours_cls, kwargs, torch_cls", DENSE_CASES)
def test_dense_steps_over_many_blocks_match_torch(ours_cls, kwargs, torch_cls, dtype, rng):
    """A parameter of several dense blocks and a tail (the fused kernels split dense
    updates into blocks), in float32 and float64."""
    value = rng.standard_normal((3, 5000)).astype(dtype)
    ours, theirs = et.Tensor(value, requires_grad=True), torch.tensor(value, requires_grad=True)
    opt, reference = ours_cls([ours], **kwargs), torch_cls([theirs], **kwargs)
    for _ in range(3):
        g = rng.standard_normal(value.shape).astype(dtype)
        ours.grad, theirs.grad = et.Tensor(g), torch.tensor(g)
        opt.step()
        reference.step()
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), **tolerance)


@pytest.mark.parametrize("ours_cls, kwargs, torch_cls", DENSE_CASES)
def test_dense_steps_match_torch(ours_cls, kwargs, torch_cls, rng):
    ours, theirs = make_params(rng)
    opt = ours_cls(ours, **kwargs)
    reference = torch_cls(theirs, **kwargs)
    for _ in range(6):
        for a, b in zip(ours, theirs):
            g = rng.standard_normal(a.shape)
            a.grad = et.Tensor(g)
            b.grad = torch.tensor(g)
        opt.step()
        reference.step()
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_step_skips_parameters_without_gradient(rng):
    ours, _ = make_params(rng)
    before = [p.numpy() for p in ours]
    ours[0].grad = et.Tensor(np.ones(ours[0].shape))
    Adam(ours).step()
    assert not np.array_equal(ours[0].numpy(), before[0])
    assert all(np.array_equal(p.numpy(), b) for p, b in zip(ours[1:], before[1:]))


def test_zero_grad():
    p = et.Tensor([1.0, 2.0], requires_grad=True)
    p.grad = et.Tensor([1.0, 1.0])
    opt = SGD([p], lr=0.1)
    opt.zero_grad()
    assert p.grad is None


# --- row-sparse -----------------------------------------------------------------------------

ROWS, DIM = 20, 3
STEP_ROWS = [[1, 4, 5], [4, 9], [0, 1, 19], [5], [1, 4, 9, 12]]  # row 2 never touched


def sparse_grads(rng):
    return [(np.array(rows), rng.standard_normal((len(rows), DIM))) for rows in STEP_ROWS]


def ours_sparse(rows, values):
    return et.RowSparseGrad(et.Tensor(rows), et.Tensor(values), (ROWS, DIM))


SPARSE_CASES = [
    (Adam, dict(lr=0.05), torch.optim.SparseAdam, dict(lr=0.05)),
    (Adam, dict(lr=0.01, betas=(0.8, 0.95), eps=1e-5), torch.optim.SparseAdam,
     dict(lr=0.01, betas=(0.8, 0.95), eps=1e-5)),
    (Adagrad, dict(lr=0.1), torch.optim.Adagrad, dict(lr=0.1)),
    (SGD, dict(lr=0.1), torch.optim.SGD, dict(lr=0.1)),
]


@pytest.mark.parametrize("ours_cls, kwargs, torch_cls, torch_kwargs", SPARSE_CASES)
def test_sparse_steps_match_torch(ours_cls, kwargs, torch_cls, torch_kwargs, rng):
    start = rng.standard_normal((ROWS, DIM))
    ours = et.Tensor(start, requires_grad=True)
    theirs = torch.tensor(start, requires_grad=True)
    opt, reference = ours_cls([ours], **kwargs), torch_cls([theirs], **torch_kwargs)
    for rows, values in sparse_grads(rng):
        ours.grad = ours_sparse(rows, values)
        theirs.grad = torch.sparse_coo_tensor(torch.from_numpy(rows)[None], torch.from_numpy(values), (ROWS, DIM),
                                              check_invariants=True)
        opt.step()
        reference.step()
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    untouched = sorted(set(range(ROWS)) - set(sum(STEP_ROWS, [])))
    assert untouched and ours.numpy()[untouched].tobytes() == start[untouched].tobytes()


@pytest.mark.parametrize("ours_cls, kwargs", [
    (Adam, dict(lr=0.05, weight_decay=0.1)), (AdamW, dict(lr=0.05, weight_decay=0.1)),
    (Adagrad, dict(lr=0.1, weight_decay=0.1)), (SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
])
def test_sparse_weight_decay_rule(ours_cls, kwargs, rng):
    """Documented rule: decay (and momentum) act on the rows present in a step only, exactly as
    the dense rule would on those rows; absent rows neither move nor decay."""
    start = rng.standard_normal((ROWS, DIM))
    ours = et.Tensor(start, requires_grad=True)
    opt = ours_cls([ours], **kwargs)
    expected = start.copy()
    lr, wd = kwargs["lr"], kwargs["weight_decay"]
    m, v, total, buf = (np.zeros((ROWS, DIM)) for _ in range(4))
    for step, (rows, values) in enumerate(sparse_grads(rng), start=1):
        ours.grad = ours_sparse(rows, values)
        opt.step()
        p = expected[rows]
        if ours_cls is AdamW:
            p = p * (1 - lr * wd)
            g = values
        else:
            g = values + wd * p
        if ours_cls in (Adam, AdamW):  # SparseAdam's formula on the present rows
            m[rows] += 0.1 * (g - m[rows])
            v[rows] += 0.001 * (g * g - v[rows])
            size = lr * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
            p = p - size * m[rows] / (np.sqrt(v[rows]) + 1e-8)
        elif ours_cls is Adagrad:
            total[rows] += g * g
            p = p - lr * g / (np.sqrt(total[rows]) + 1e-10)
        else:
            buf[rows] = 0.9 * buf[rows] + g
            p = p - lr * buf[rows]
        expected[rows] = p
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12, atol=1e-14)
    assert ours.numpy()[2].tobytes() == start[2].tobytes()


def test_sparse_step_from_a_real_backward_matches_sparse_adam(rng):
    weights = rng.standard_normal((30, 4))
    emb = et.nn.Embedding.from_pretrained(weights, freeze=False, sparse=True)
    reference = torch.nn.Embedding.from_pretrained(torch.tensor(weights), freeze=False, sparse=True)
    opt, torch_opt = Adam(emb.parameters(), lr=0.1), torch.optim.SparseAdam(reference.parameters(), lr=0.1)
    for _ in range(4):
        indices = rng.integers(0, 15, size=(6, 5))
        target = rng.standard_normal((6, 5, 4))
        opt.zero_grad()
        torch_opt.zero_grad()
        et.nn.functional.mse_loss(emb(indices), target).backward()
        torch.nn.functional.mse_loss(reference(torch.from_numpy(indices)), torch.tensor(target)).backward()
        opt.step()
        torch_opt.step()
    np.testing.assert_allclose(emb.weight.numpy(), reference.weight.detach().numpy(), rtol=1e-10)
    assert emb.weight.numpy()[15:].tobytes() == weights[15:].tobytes()


# --- failures change nothing, state dicts ---------------------------------------------------

def snapshot(params, opt):
    return [p.numpy().tobytes() for p in params], copy.deepcopy(opt.state)


def same_state(a, b):
    assert a[0] == b[0]
    assert len(a[1]) == len(b[1])
    for x, y in zip(a[1], b[1]):
        assert x.keys() == y.keys()
        for k in x:
            assert np.asarray(x[k]).tobytes() == np.asarray(y[k]).tobytes()


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, Adagrad, RowWiseAdagrad])
@pytest.mark.parametrize("bad", ["shape", "dtype", "sparse_order", "sparse_range", "sparse_values", "type"])
def test_a_bad_gradient_changes_nothing(cls, bad, rng):
    params = [et.Tensor(rng.standard_normal((5, 3)), requires_grad=True) for _ in range(2)]
    opt = cls(params, lr=0.1, **({"momentum": 0.9} if cls is SGD else {}))
    for p in params:
        p.grad = et.Tensor(rng.standard_normal(p.shape))
    opt.step()  # state exists now
    before = snapshot(params, opt)
    params[0].grad = et.Tensor(rng.standard_normal((5, 3)))  # a good one, listed first
    bad_grad = {
        "shape": et.Tensor(rng.standard_normal((3, 5))),
        "dtype": et.Tensor(rng.standard_normal((5, 3)).astype(np.float32)),
        "sparse_order": et.RowSparseGrad(et.Tensor([3, 1]), et.Tensor(np.ones((2, 3))), (5, 3)),
        "sparse_range": et.RowSparseGrad(et.Tensor([1, 5]), et.Tensor(np.ones((2, 3))), (5, 3)),
        "sparse_values": et.RowSparseGrad(et.Tensor([1, 2]), et.Tensor(np.ones((2, 4))), (5, 3)),
        "type": np.ones((5, 3)),
    }[bad]
    with pytest.raises((et.ShapeError, et.DTypeError, et.InvalidArgumentError)):
        params[1].grad = bad_grad  # refused here when it does not fit the parameter at all,
        opt.step()  # else by the step, before any update
    same_state(before, snapshot(params, opt))


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, Adagrad, RowWiseAdagrad])
def test_state_dict_round_trip(cls, rng):
    start = rng.standard_normal((6, 2))
    a = et.Tensor(start, requires_grad=True)
    kwargs = {"lr": 0.1, **({"momentum": 0.9} if cls is SGD else {})}
    opt_a = cls([a], **kwargs)
    grads = [rng.standard_normal((6, 2)) for _ in range(4)]
    for g in grads[:2]:
        a.grad = et.Tensor(g)
        opt_a.step()
    b = et.Tensor(a.numpy(), requires_grad=True)
    opt_b = cls([b], lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.lr == 0.1
    for g in grads[2:]:
        a.grad, b.grad = et.Tensor(g), et.Tensor(g)
        opt_a.step()
        opt_b.step()
    assert a.numpy().tobytes() == b.numpy().tobytes()


def test_load_state_dict_rejects_mismatch_and_changes_nothing(rng):
    p = et.Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    opt = Adam([p])
    p.grad = et.Tensor(np.ones((4, 2)))
    opt.step()
    saved = opt.state_dict()
    saved["state"][0]["exp_avg"] = et.Tensor(np.ones((3, 2)))
    before = snapshot([p], opt)
    with pytest.raises(et.ShapeError):
        opt.load_state_dict(saved)
    with pytest.raises(et.InvalidArgumentError):
        opt.load_state_dict({"state": {}, "param_groups": [{"lr": 1.0, "params": [0, 1]}]})
    same_state(before, snapshot([p], opt))


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=-1), lambda p: Adam(p, betas=(1.0, 0.9)), lambda p: Adam(p, eps=-1),
    lambda p: Adagrad(p, weight_decay=-0.1), lambda p: AdamW([]), lambda p: SGD(p + p, lr=0.1),
])
def test_bad_hyper_parameters(make):
    with pytest.raises(et.InvalidArgumentError):
        make([et.Tensor([1.0], requires_grad=True)])


def test_half_precision_parameters_keep_f32_state():
    p = et.Tensor(np.ones((3, 2)), dtype=et.DType.BF16, requires_grad=True)
    opt = Adam([p], lr=0.1)
    p.grad = et.Tensor(np.ones((3, 2)), dtype=et.DType.BF16)
    opt.step()
    assert p.dtype is et.DType.BF16
    assert et.Tensor(opt.state[0]["exp_avg"]).dtype is et.DType.F32
    np.testing.assert_allclose(p.numpy().astype(np.float32), 0.9, rtol=1e-2)


@pytest.mark.parametrize("change", [
    lambda d: d["param_groups"][0].update(lr="0.1"), lambda d: d["param_groups"][0].update(lr=-5.0),
    lambda d: d["param_groups"][0].update(momentum=(7.0, -1.0)),
    lambda d: d["state"].update({0: {"x": np.zeros((4, 2))}}), lambda d: d["state"].update({0: [1, 2]}),
    lambda d: d["state"][0].update(step=-1), lambda d: d["state"].update({5: {}}),
])
def test_load_state_dict_checks_like_the_constructor(change, rng):
    p = et.Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = et.Tensor(np.ones((4, 2)))
    opt.step()
    saved = opt.state_dict()
    change(saved)
    before = snapshot([p], opt)
    with pytest.raises(et.InvalidArgumentError):
        opt.load_state_dict(saved)
    same_state(before, snapshot([p], opt))
    assert (opt.lr, opt.momentum) == (0.1, 0.9)


def test_loaded_column_major_state_still_updates(rng):
    p = et.Tensor(np.ones((3, 4)), requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.5)
    saved = opt.state_dict()
    saved["state"][0] = {"momentum_buffer": np.asfortranarray(np.ones((3, 4))), "step": 1}
    opt.load_state_dict(saved)
    for _ in range(2):
        p.grad = et.Tensor(np.ones((3, 4)))
        opt.step()
    np.testing.assert_allclose(opt.state[0]["momentum_buffer"], 1.75)  # 0.5 * (0.5 + 1) + 1
    np.testing.assert_allclose(p.numpy(), 1 - 0.1 * (1.5 + 1.75))


# --- RowWiseAdagrad: SPEC §6 against a float64 NumPy reference ------------------------------

def rowwise_adagrad_reference(weight, steps, lr, eps):
    """SPEC §6 in float64: per present row, ``s += mean(g ** 2)``, ``w -= lr * g / (sqrt(s) + eps)``."""
    weight, total = weight.astype(np.float64).copy(), np.zeros(weight.shape[0])
    for rows, values in steps:
        total[rows] += (values ** 2).mean(axis=1)
        weight[rows] -= lr * values / (np.sqrt(total[rows])[:, None] + eps)
    return weight, total


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_rowwise_adagrad_matches_the_spec(sparse, rng):
    start = rng.standard_normal((ROWS, DIM))
    steps = [(rows, values) for rows, values in sparse_grads(rng)]
    if not sparse:  # every row present, some with a zero gradient
        steps = [(np.arange(ROWS), np.where(rng.random((ROWS, 1)) < 0.3, 0.0, rng.standard_normal((ROWS, DIM))))
                 for _ in range(4)]
    table = et.Tensor(start, requires_grad=True)
    opt = RowWiseAdagrad([table], lr=0.3, eps=1e-6)
    for rows, values in steps:
        table.grad = ours_sparse(rows, values) if sparse else et.Tensor(values)
        opt.step()
    expected, total = rowwise_adagrad_reference(start, steps, 0.3, 1e-6)
    np.testing.assert_allclose(table.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert opt.state[0]["sum"].shape == (ROWS,)
    np.testing.assert_allclose(opt.state[0]["sum"].numpy(), total, rtol=1e-12, atol=1e-14)
    if sparse:
        untouched = np.setdiff1d(np.arange(ROWS), np.concatenate([rows for rows, _ in steps]))
        assert untouched.size and (table.numpy()[untouched] == start[untouched]).all()


def test_rowwise_adagrad_trains_a_sparse_table_from_a_backward(rng):
    emb = et.nn.Embedding.from_pretrained(rng.standard_normal((50, 4)), freeze=False, sparse=True)
    opt = RowWiseAdagrad(emb.parameters(), lr=1.0)
    target = rng.standard_normal((8, 4))
    ids = rng.choice(50, 8, replace=False)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = ((emb(ids) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_rowwise_adagrad_takes_tables_only():
    with pytest.raises(et.ShapeError, match="2-D"):
        RowWiseAdagrad([et.Tensor(np.zeros(3), requires_grad=True)])

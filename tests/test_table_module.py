"""SPEC §13: embtable tables inside PyTorch models through `embtable.torch.TableModule`:
outputs and table gradients bit for bit those of the layer called from embtable, close to
torch's own modules, and a DLRM-style model training both ways."""

import numpy as np
import pytest
import torch

import embtable as et
from embtable.nn import functional as F
from embtable.torch import TableModule
from helpers import auc

ROWS, DIM = 20, 6


def layer_and_inputs(kind, sparse, rng):
    weight = rng.standard_normal((ROWS, DIM))
    ids = rng.integers(0, ROWS, 30)
    if kind == "embedding":
        return et.nn.Embedding.from_pretrained(weight, freeze=False, sparse=sparse, padding_idx=2), (ids,), None
    mode = kind.split("-")[1]
    layer = et.nn.EmbeddingBag.from_pretrained(weight, freeze=False, sparse=sparse, mode=mode, padding_idx=2)
    offsets = np.array([0, 4, 4, 11, 20])
    weights = rng.standard_normal(30) if mode == "sum" else None
    return layer, (ids, offsets), weights


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("kind", ["embedding", "bag-sum", "bag-mean", "bag-max"])
def test_outputs_and_gradients_equal_embtables_bit_for_bit(kind, sparse, rng):
    layer, inputs, weights = layer_and_inputs(kind, sparse, rng)
    twin, _, _ = layer_and_inputs(kind, sparse, np.random.default_rng(0))
    twin.load_state_dict(layer.state_dict())
    upstream = rng.standard_normal((len(inputs[-1]), DIM))

    ours_weights = None if weights is None else et.Tensor(weights, requires_grad=True, dtype=et.DType.F64)
    ours = twin(*inputs, *([ours_weights] if weights is not None else []))
    ours.backward(et.Tensor(upstream))

    module = TableModule(layer)
    torch_weights = None if weights is None else torch.tensor(weights, requires_grad=True)
    torch_inputs = [torch.from_numpy(a) for a in inputs]
    out = module(*torch_inputs, **({} if weights is None else {"per_sample_weights": torch_weights}))
    out.backward(torch.tensor(upstream))

    assert out.detach().numpy().tobytes() == ours.numpy().tobytes()
    grad, expected = layer.weight.grad, twin.weight.grad
    assert type(grad) is type(expected)
    dense = (lambda g: g.to_dense().numpy()) if sparse else (lambda g: g.numpy())
    assert dense(grad).tobytes() == dense(expected).tobytes()
    if weights is not None:
        assert torch_weights.grad.numpy().tobytes() == ours_weights.grad.numpy().tobytes()

    expected = torch_lookup(kind, torch.tensor(twin.weight.numpy()), inputs, torch_weights)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def torch_lookup(kind, table, inputs, weights):
    """The same lookup by torch's own functions."""
    ids = torch.from_numpy(inputs[0])
    if kind == "embedding":
        return torch.nn.functional.embedding(ids, table).numpy()
    return torch.nn.functional.embedding_bag(ids, table, torch.from_numpy(inputs[1]), mode=kind.split("-")[1],
                                             padding_idx=2, per_sample_weights=None if weights is None
                                             else weights.detach()).numpy()


def test_no_torch_parameters_and_a_shared_state_dict():
    layer = et.nn.Embedding(10, 4)
    module = TableModule(layer)
    assert list(module.parameters()) == []
    state = module.state_dict()
    assert list(state) == ["weight"]
    with et.no_grad():
        layer.weight[3] = 7.0
    assert (state["weight"][3] == 7.0).all()  # the same memory
    module.load_state_dict({"weight": torch.zeros(10, 4)})
    assert (layer.weight.numpy() == 0).all()
    with pytest.raises(RuntimeError, match="weight"):
        module.load_state_dict({})


def test_a_retained_graph_runs_backward_twice_and_strict_loads_check_keys(rng):
    layer = et.nn.EmbeddingBag.from_pretrained(rng.standard_normal((6, 2)), freeze=False, mode="sum")
    module = TableModule(layer)
    weights = torch.tensor(rng.standard_normal(4), requires_grad=True)
    out = module(torch.tensor([1, 2, 2, 5]), torch.tensor([0, 2]), per_sample_weights=weights).sum()
    out.backward(retain_graph=True)
    first_weights, first_table = weights.grad.clone(), layer.weight.grad.numpy().copy()
    out.backward()
    np.testing.assert_allclose(weights.grad.numpy(), 2 * first_weights.numpy())
    np.testing.assert_allclose(layer.weight.grad.numpy(), 2 * first_table)
    with pytest.raises(RuntimeError, match="Unexpected"):
        module.load_state_dict({"weight": torch.zeros(6, 2), "bias": torch.zeros(2)})
    module.load_state_dict({"weight": torch.zeros(6, 2), "bias": torch.zeros(2)}, strict=False)
    assert (layer.weight.numpy() == 0).all()


def test_inside_torch_no_grad_and_with_a_frozen_table():
    frozen = TableModule(et.nn.Embedding.from_pretrained(np.eye(4)))
    assert not frozen(torch.tensor([1, 2])).requires_grad
    module = TableModule(et.nn.Embedding(4, 2))
    with torch.no_grad():
        out = module(torch.tensor([1, 2]))
    assert not out.requires_grad and module.layer.weight.grad is None


def test_errors_are_embtables():
    module = TableModule(et.nn.Embedding(5, 2))
    with pytest.raises(et.IndexOutOfRangeError):
        module(torch.tensor([1, 5]))
    with pytest.raises(et.InvalidArgumentError, match="EmbeddingBag"):
        module(torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(et.InvalidArgumentError, match="Embedding or EmbeddingBag"):
        TableModule(et.nn.Linear(2, 2))


# --- a DLRM-style model, in embtable and in PyTorch --------------------------------------------

ITEMS, GROUPS, WIDTH = 300, 4, 16


def click_log(rng, count, group_of):
    """Users of a taste group click items of that group; a pair is positive when the
    candidate is of the user's group: (history ids, offsets, candidate ids, labels)."""
    members = [np.flatnonzero(group_of == g) for g in range(GROUPS)]
    taste = rng.integers(0, GROUPS, count)
    lengths = rng.integers(3, 10, count)
    history = np.concatenate([rng.choice(members[t], n) for t, n in zip(taste, lengths)])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    liked = np.array([rng.choice(members[t]) for t in taste])
    candidate = np.where(rng.random(count) < 0.5, liked, rng.integers(0, ITEMS, count))
    return history, offsets, candidate, (group_of[candidate] == taste).astype(np.float32)


def tables():
    return (et.nn.EmbeddingBag(ITEMS, WIDTH, mode="mean", sparse=True),
            et.nn.EmbeddingBag(ITEMS, WIDTH, mode="sum", sparse=True))


class EmbtableDLRM(et.nn.Layer):
    def __init__(self):
        self.history, self.candidate = tables()
        self.mlp = et.nn.Sequential(et.nn.Linear(2 * WIDTH, 32), et.nn.ReLU(), et.nn.Linear(32, 16), et.nn.ReLU(),
                                    et.nn.Linear(16, 1))

    def forward(self, history, offsets, candidate):
        pooled = et.cat([self.history(history, offsets), self.candidate(candidate.reshape(-1, 1))], dim=1)
        return self.mlp(pooled).reshape(-1)


class TorchDLRM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        history, candidate = tables()
        self.history, self.candidate = TableModule(history), TableModule(candidate)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(2 * WIDTH, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16),
                                       torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def forward(self, history, offsets, candidate):
        pooled = torch.cat([self.history(history, offsets), self.candidate(candidate.reshape(-1, 1))], dim=1)
        return self.mlp(pooled).reshape(-1)


def test_a_dlrm_model_trains_in_embtable_and_in_pytorch():
    rng = np.random.default_rng(4)
    group_of = rng.integers(0, GROUPS, ITEMS)
    et.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = EmbtableDLRM(), TorchDLRM()
    optimizers = [et.optim.Adam(ours.parameters(), lr=0.02),
                  et.optim.Adam([theirs.history.layer.weight, theirs.candidate.layer.weight], lr=0.02),
                  torch.optim.Adam(theirs.mlp.parameters(), lr=0.02)]
    assert len(list(theirs.parameters())) == 6  # the MLP's only
    for _ in range(150):
        history, offsets, candidate, label = click_log(rng, 256, group_of)
        for optimizer in optimizers:
            optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(ours(history, offsets, candidate), label).backward()
        as_torch = [torch.from_numpy(a) for a in (history, offsets, candidate)]
        torch.nn.functional.binary_cross_entropy_with_logits(theirs(*as_torch), torch.from_numpy(label)).backward()
        for optimizer in optimizers:
            optimizer.step()
    history, offsets, candidate, label = click_log(rng, 2000, group_of)
    with et.no_grad(), torch.no_grad():
        assert auc(ours(history, offsets, candidate).numpy(), label) > 0.8
        assert auc(theirs(*[torch.from_numpy(a) for a in (history, offsets, candidate)]).numpy(), label) > 0.8

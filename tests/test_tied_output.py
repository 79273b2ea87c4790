"""SPEC §9, tied output: ``Embedding.as_linear(x) == x @ weight.T`` with its gradient, alone
and summed with a sparse table's lookup gradient, against torch in float64; a tiny
tied-embedding language model trains."""

import numpy as np
import pytest
import torch

import embtable as et
from embtable.nn import Embedding


@pytest.mark.parametrize("sparse", [False, True])
def test_as_linear_and_lookup_share_one_gradient(sparse, rng):
    weight = rng.standard_normal((9, 4))
    emb = Embedding.from_pretrained(weight, freeze=False, padding_idx=2, sparse=sparse)
    theirs = torch.nn.Embedding.from_pretrained(torch.tensor(weight), freeze=False, padding_idx=2)
    ids = rng.integers(0, 9, (3, 2))
    hidden = emb(ids).mean(axis=1)
    logits = emb.as_linear(hidden)
    assert logits.shape == (3, 9)
    their_logits = theirs(torch.tensor(ids)).mean(1) @ theirs.weight.T
    np.testing.assert_allclose(logits.numpy(), their_logits.detach().numpy(), rtol=1e-12)
    upstream = rng.standard_normal((3, 9))
    logits.backward(upstream)
    their_logits.backward(torch.tensor(upstream))
    assert isinstance(emb.weight.grad, et.Tensor)  # the dense part makes the sum dense
    np.testing.assert_allclose(emb.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert np.any(emb.weight.grad.numpy()[2] != 0)  # as_linear reaches the padding row


def test_as_linear_takes_arrays_and_checks_them():
    emb = Embedding(5, 3)
    np.testing.assert_allclose(emb.as_linear(np.ones((2, 3), np.float32)).numpy(),
                               np.ones((2, 3)) @ emb.weight.numpy().T, rtol=1e-6, atol=1e-6)
    with pytest.raises(et.ShapeError, match=r"\[\.\.\., 3\]"):
        emb.as_linear(np.ones((2, 4), np.float32))
    with pytest.raises(et.DTypeError, match="F32, got F64"):
        emb.as_linear(np.ones((2, 3)))


def test_a_tied_language_model_trains():
    """Predict each token from the two before it (embedded, concatenated, one linear layer)
    through the shared table: the tokens follow a fixed successor rule."""
    rng = np.random.default_rng(0)
    vocabulary = 12
    successor = rng.permutation(vocabulary)
    tokens = rng.integers(0, vocabulary, 600)
    tokens[2::3] = successor[tokens[1::3]]  # every third token follows the one before it
    context, target = np.stack([tokens[0::3], tokens[1::3]], axis=1), tokens[2::3]
    et.manual_seed(0)
    emb = Embedding(vocabulary, 16, sparse=True)
    mix = et.nn.Linear(32, 16)
    optimizer = et.optim.Adam(emb.parameters() + mix.parameters(), lr=0.05)
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        hidden = mix(emb(context).reshape(len(target), 32))
        loss = et.nn.functional.cross_entropy(emb.as_linear(hidden), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

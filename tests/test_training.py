"""Training end to end: a finite-difference check of a composed model, and a small
bag-of-embeddings classifier that learns."""

import numpy as np
import pytest

import embtable as et
from embtable.core import data_of
from embtable.nn import Embedding, Layer, Linear
from embtable.nn import functional as F


class BagOfEmbeddings(Layer):
    """Embedding -> mean over the bag -> Linear: a text classifier in three lines."""

    def __init__(self, vocabulary, dim, classes, *, dtype=None, **options):
        self.embedding = Embedding(vocabulary, dim, dtype=dtype, **options)
        self.classify = Linear(dim, classes, dtype=dtype)

    def forward(self, bags):
        return self.classify(self.embedding(bags).mean(axis=1))


@pytest.mark.parametrize("options", [
    {}, {"sparse": True}, {"max_norm": 0.4, "max_norm_mode": "clip"},
    {"max_norm": 0.4, "max_norm_mode": "clip", "norm_type": 3.0},
])
def test_finite_difference_gradient_of_composed_model(options, rng):
    """The true gradient (padding and frequency scaling deliberately change it, so they are
    left out; clip mode is differentiated exactly)."""
    et.manual_seed(1)
    model = BagOfEmbeddings(9, 4, 3, dtype=et.DType.F64, **options)
    bags = rng.integers(0, 9, size=(5, 6))
    targets = rng.integers(0, 3, size=5)

    def loss() -> float:
        with et.no_grad():
            return F.cross_entropy(model(bags), targets).item()

    F.cross_entropy(model(bags), targets).backward()
    for name, param in model.named_parameters():
        grad = param.grad
        analytic = (grad.to_dense() if isinstance(grad, et.RowSparseGrad) else grad).numpy()
        numeric = np.zeros(param.shape)
        for position in np.ndindex(param.shape):
            original = float(param.numpy()[position])
            data_of(param)[position] = original + 1e-6
            above = loss()
            data_of(param)[position] = original - 1e-6
            below = loss()
            data_of(param)[position] = original
            numeric[position] = (above - below) / 2e-6
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9, err_msg=name)


def synthetic_topics(rng, samples, vocabulary=60, classes=3, length=8):
    """Each class draws most words from its own third of the vocabulary."""
    labels = rng.integers(0, classes, size=samples)
    band = vocabulary // classes
    own = rng.integers(0, band, size=(samples, length)) + labels[:, None] * band
    noise = rng.integers(0, vocabulary, size=(samples, length))
    bags = np.where(rng.random((samples, length)) < 0.7, own, noise)
    return bags, labels


@pytest.mark.parametrize("sparse, make_optimizer", [
    (False, lambda p: et.optim.Adam(p, lr=0.05)),
    (True, lambda p: et.optim.Adam(p, lr=0.05)),
    (True, lambda p: et.optim.Adagrad(p, lr=0.3)),
    (False, lambda p: et.optim.SGD(p, lr=0.5, momentum=0.9)),
    (True, lambda p: et.optim.AdamW(p, lr=0.05)),
])
def test_bag_of_embeddings_classifier_learns(sparse, make_optimizer, rng):
    et.manual_seed(0)
    bags, labels = synthetic_topics(rng, 600)
    model = BagOfEmbeddings(60, 16, 3, sparse=sparse)
    optimizer = make_optimizer(model.parameters())
    losses = []
    for epoch in range(15):
        for start in range(0, len(bags), 50):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(bags[start:start + 50]), labels[start:start + 50])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert np.mean(losses[-12:]) < 0.5 * np.mean(losses[:12])
    test_bags, test_labels = synthetic_topics(rng, 300)
    with et.no_grad():
        predicted = model(test_bags).numpy().argmax(axis=1)
    assert (predicted == test_labels).mean() > 0.9

"""Training end to end: a finite-difference check of a composed model, and a small
bag-of-embeddings classifier that learns."""

import numpy as np
import pytest

import embtable as et
from embtable.core import data_of
from embtable.nn import Embedding, Layer, Linear
from embtable.nn import functional as F
from helpers import auc


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


class PooledClassifier(Layer):
    """A fastText-style classifier: variable-length bags of word ids, one EmbeddingBag."""

    def __init__(self, vocabulary, dim, classes, mode):
        self.words = et.nn.EmbeddingBag(vocabulary, dim, mode=mode, sparse=True, padding_idx=0)
        self.out = Linear(dim, classes)

    def forward(self, ids, offsets):
        return self.out(self.words(ids, offsets))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_bag_of_words_classifier_with_embedding_bag_learns(mode, rng):
    et.manual_seed(1)
    bags, labels = synthetic_topics(rng, 600)
    bags[:, 5:][rng.random((600, 3)) < 0.5] = 0  # padding: bags of 5 to 8 words
    model = PooledClassifier(60, 16, 3, mode)
    optimizer = et.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for epoch in range(10):
        for start in range(0, 600, 50):
            batch = bags[start:start + 50]
            lengths = np.full(len(batch), batch.shape[1])
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # 1-D ids with offsets
            optimizer.zero_grad()
            loss = F.cross_entropy(model(batch.reshape(-1), offsets), labels[start:start + 50])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert np.mean(losses[-12:]) < 0.5 * np.mean(losses[:12])


class TwoTower(Layer):
    """A recommender with two tables: a user is the mean of the items they clicked, an item
    its own row; the score is their dot product."""

    def __init__(self, items, dim):
        self.history = et.nn.EmbeddingBag(items, dim, mode="mean", sparse=True)
        self.items = Embedding(items, dim, sparse=True)

    def forward(self, clicked, candidates):
        return (self.history(clicked) * self.items(candidates)).sum(axis=1)


def test_two_table_recommender_ranks_held_out_pairs():
    rng = np.random.default_rng(5)
    items, users, groups = 200, 400, 5
    group_of_item = rng.integers(0, groups, items)
    taste = rng.integers(0, groups, users)

    def liked(user_taste, count):  # items of the user's group
        pool = [np.flatnonzero(group_of_item == g) for g in range(groups)]
        return np.stack([rng.choice(pool[t], count) for t in user_taste])

    clicked = liked(taste, 6)
    def pairs(count):
        who = rng.integers(0, users, count)
        positive = rng.random(count) < 0.5
        candidate = np.where(positive, liked(taste[who], 1)[:, 0], rng.integers(0, items, count))
        label = (group_of_item[candidate] == taste[who]).astype(np.float32)
        return who, candidate, label

    et.manual_seed(2)
    model = TwoTower(items, 16)
    optimizer = et.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        who, candidate, label = pairs(256)
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(clicked[who], candidate), label)
        loss.backward()
        optimizer.step()
    who, candidate, label = pairs(2000)
    with et.no_grad():
        scores = model(clicked[who], candidate).numpy()
    assert auc(scores, label) > 0.8

"""Helpers shared by the tests."""

import numpy as np


def auc(scores, labels):
    """The probability that a positive pair scores above a negative one."""
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels.sum()
    return (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * (len(labels) - positives))

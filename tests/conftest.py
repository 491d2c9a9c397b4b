"""Shared fixtures: small generated sequence data, fast to fit."""

import numpy as np
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng():
    return np.random.RandomState(0)


def make_classification_sequences(n_samples=80, n_timesteps=15, n_features=3, seed=0):
    """Two classes told apart by the sign of the sum of feature 0."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, n_timesteps, n_features)).astype(np.float32)
    y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    return X, y


def make_ragged_sequences(
    n_samples=60, min_length=3, max_length=30, n_features=2, seed=0
):
    """Sequences of varied length; the label is the sign of the mean of feature 0."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(min_length, max_length + 1, size=n_samples)
    X = [rng.normal(size=(n, n_features)).astype(np.float32) for n in lengths]
    y = np.array([int(x[:, 0].mean() > 0) for x in X])
    return X, y


@pytest.fixture
def sequences_3d():
    return make_classification_sequences()


@pytest.fixture
def ragged():
    return make_ragged_sequences()

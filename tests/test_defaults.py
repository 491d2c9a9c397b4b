"""The "auto" defaults resolve inside fit, from the data's size."""

import numpy as np
import pytest

import sklstm._base
from sklstm import LSTMClassifier, LSTMRegressor


def make_classification_sequences(n_samples, n_timesteps, n_features=2):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n_samples, n_timesteps, n_features)).astype(np.float32)
    return X, np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")


def _small(estimator, **params):
    settings = dict(hidden_size=4, conv_filters=(4,), conv_kernel_size=3, max_epochs=2)
    settings.update(params)
    return estimator(random_state=0, **settings)


@pytest.mark.parametrize("n_samples, expected", [(40, 16), (300, 18), (2000, 64)])
def test_auto_batch_size_follows_training_size(n_samples, expected):
    X, y = make_classification_sequences(n_samples=n_samples, n_timesteps=4)
    model = _small(LSTMClassifier).fit(X, y)
    assert model.net_.batch_size == expected
    assert model.batch_size == "auto"


@pytest.mark.parametrize("n_samples, on", [(30, False), (60, True)])
def test_auto_early_stopping_needs_enough_sequences(n_samples, on):
    X, _ = make_classification_sequences(n_samples=n_samples, n_timesteps=4)
    y = X[:, :, 0].sum(axis=1)
    model = _small(LSTMRegressor, early_stopping="auto").fit(X, y)
    assert (model.validation_scores_ is not None) == on
    assert model.early_stopping == "auto"


def test_regressor_partial_fit_ignores_auto_early_stopping():
    X, _ = make_classification_sequences(n_samples=60, n_timesteps=4)
    y = X[:, :, 0].sum(axis=1)
    model = _small(LSTMRegressor)
    model.partial_fit(X, y).partial_fit(X, y)
    assert model.n_iter_ == 2
    assert model.validation_scores_ is None


def test_sequence_norm_sees_shape_not_scale():
    # Same shapes at scales 1 and 1000: "replace" makes them indistinguishable.
    rng = np.random.RandomState(0)
    base = rng.normal(size=(20, 8, 1)).astype(np.float32)
    X = np.concatenate([base, 1000 * base])
    y = np.repeat(["small", "large"], 20)
    model = _small(LSTMClassifier, sequence_norm="replace", standardize=False)
    model.fit(X, y)
    np.testing.assert_allclose(
        model.predict_proba(X[:20]), model.predict_proba(X[20:]), atol=1e-5
    )


@pytest.mark.parametrize(
    "n_train, expected", [(10, 300), (36, 167), (64, 125), (65, 100), (5000, 100)]
)
def test_auto_max_epochs_gives_small_data_more_epochs(n_train, expected):
    assert LSTMClassifier()._resolve_max_epochs(n_train) == expected
    assert LSTMClassifier(max_epochs=7)._resolve_max_epochs(n_train) == 7
    # Short sequences, within the budget: the same.
    if n_train * 20 * expected <= sklstm._base._AUTO_WORK:
        assert LSTMClassifier()._resolve_max_epochs(n_train, 20 * n_train) == expected


@pytest.mark.parametrize(
    "n_train, length, expected",
    [
        (50, 150, 188),  # 750 optimiser steps of 4 batches
        (36, 251, 419),  # 1255 steps of 3 batches (the most: 753)
        (10, 251, 753),  # 1255 steps of 1 batch, capped at 300 x 2.51
        (200, 427, 58),  # 5,000,000 sequence steps / 85,400 per epoch
        (5000, 20, 50),  # 100,000 sequence steps per epoch
        (5000, 2000, 10),  # the floor
    ],
)
def test_auto_max_epochs_trains_long_sequences_longer_within_a_budget(
    n_train, length, expected
):
    epochs = LSTMClassifier()._resolve_max_epochs(n_train, n_train * length)
    assert epochs == expected
    assert LSTMClassifier(max_epochs=7)._resolve_max_epochs(n_train, 10**9) == 7


@pytest.mark.parametrize(
    "stride, full_resolution_convs, expected",
    [
        (1, False, 34),  # 5,000,000 / 146,000 sequence steps per epoch
        (3, False, 85),  # each step counts 0.1 + 0.9 / 3 of one: 58,400
        (4, False, 105),  # 0.1 + 0.9 / 4: 47,450 per epoch
        (3, True, 51),  # convolutions on every step: 1/2 + 1/2 / 3
        (4, True, 54),  # 1/2 + 1/2 / 4: 91,250 per epoch
    ],
)
def test_the_budget_counts_strided_steps_for_less(
    stride, full_resolution_convs, expected
):
    # 100 sequences of 1,460 steps: at stride 3 the recurrent layers and the
    # later convolutions step through a third of them, the first
    # convolution through all.
    epochs = LSTMClassifier()._resolve_max_epochs(
        100, 146_000, stride, full_resolution_convs
    )
    assert epochs == expected


@pytest.mark.parametrize(
    "placement, expected",
    [
        # An epoch counts 24,000 x (0.1 + 0.9 / 3) = 9,600 steps.
        ("parallel", 5),
        # The convolutions read every step: 24,000 x (1/2 + 1/6) = 16,000.
        ("before", 3),
    ],
)
def test_fit_budgets_with_the_stride_it_chose(monkeypatch, placement, expected):
    # 20 sequences of 1,200 steps: recurrent_stride="auto" reads 3 at a time.
    monkeypatch.setattr(sklstm._base, "_AUTO_WORK", 48_000)
    monkeypatch.setattr(sklstm._base, "_AUTO_FLOOR_EPOCHS", 1)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 1200, 1)).astype(np.float32)
    y = np.arange(20) % 2
    clf = LSTMClassifier(
        hidden_size=4, conv_filters=(4,), conv_placement=placement, random_state=0
    ).fit(X, y)
    assert clf.net_.module_.recurrent_stride == 3
    assert clf.n_iter_ == expected  # 2 if every step counted in full

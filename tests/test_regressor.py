"""LSTMRegressor: target shapes, scaling, per-step regression."""

import numpy as np
import pytest

from sklstm import LSTMRegressor

from .conftest import make_ragged_sequences

FAST = dict(hidden_size=16, max_epochs=3, random_state=0)


def _data(n_samples=80, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 12, 2)).astype(np.float32)
    y = X[:, -4:, 0].sum(axis=1)
    return X, y


def test_1d_target_gives_1d_predictions():
    X, y = _data()
    assert LSTMRegressor(**FAST).fit(X, y).predict(X).shape == (80,)


def test_2d_target_gives_2d_predictions_even_with_one_column():
    X, y = _data()
    reg = LSTMRegressor(**FAST).fit(X, np.c_[y, -y, 2 * y])
    assert reg.predict(X).shape == (80, 3)
    assert reg.n_outputs_ == 3
    column = LSTMRegressor(**FAST).fit(X, y[:, None])
    assert column.predict(X).shape == (80, 1)


def test_learns_and_predicts_on_the_scale_of_the_targets():
    X, y = _data(n_samples=200)
    far_away = 1000 + 50 * y
    # The split alone: "auto" would train four more networks to calibrate
    # intervals this test does not read.
    reg = LSTMRegressor(
        hidden_size=32, max_epochs=40, calibration="split", random_state=0
    )
    reg.fit(X, far_away)
    assert reg.score(X, far_away) > 0.8
    assert abs(reg.predict(X).mean() - far_away.mean()) < 10


def test_same_seed_gives_identical_predictions():
    X, y = _data()
    first = LSTMRegressor(**FAST).fit(X, y).predict(X)
    second = LSTMRegressor(**FAST).fit(X, y).predict(X)
    np.testing.assert_array_equal(first, second)


def test_ragged_regression():
    X, _ = make_ragged_sequences()
    y = np.array([x[:, 0].sum() for x in X])
    reg = LSTMRegressor(**FAST).fit(X, y)
    assert reg.predict(X).shape == (len(X),)


def test_sequence_mode_one_value_per_step_ragged_in_ragged_out():
    X, _ = make_ragged_sequences(n_samples=50, min_length=3, max_length=15)
    y = [np.cumsum(x[:, 0]) for x in X]  # running sum: needs memory
    reg = LSTMRegressor(
        hidden_size=32,
        max_epochs=40,
        lr=0.01,
        random_state=0,
        output_mode="sequence",
        # Intervals play no part here; spare the four calibration networks.
        calibration="split",
    ).fit(X, y)
    predicted = reg.predict(X)
    assert isinstance(predicted, list)
    assert [p.shape for p in predicted] == [(len(x),) for x in X]
    assert reg.score(X, y) > 0.8


def test_sequence_mode_vector_per_step():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 6, 2))
    y = np.stack([X[:, :, 0], X[:, :, 1] * 2], axis=-1)
    reg = LSTMRegressor(**FAST, output_mode="sequence").fit(X, y)
    assert reg.predict(X).shape == (30, 6, 2)
    ragged_y = [row for row in y]
    assert LSTMRegressor(**FAST, output_mode="sequence").fit(list(X), ragged_y).predict(
        list(X)
    )[0].shape == (6, 2)


def test_sequence_mode_rejects_mismatched_steps():
    X, _ = make_ragged_sequences(n_samples=5)
    y = [x[:, 0] for x in X]
    y[2] = y[2][:1]
    with pytest.raises(ValueError, match=r"y\[2\] has 1 steps"):
        LSTMRegressor(**FAST, output_mode="sequence").fit(X, y)


def test_non_finite_targets_are_rejected():
    X, y = _data()
    y[3] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        LSTMRegressor(**FAST).fit(X, y)


def test_partial_fit_continues_on_new_batches():
    X, y = _data()
    reg = LSTMRegressor(**FAST)
    reg.partial_fit(X[:40], y[:40])
    reg.partial_fit(X[40:], y[40:])
    assert reg.n_iter_ == 2
    with pytest.raises(ValueError, match="outputs"):
        reg.partial_fit(X, np.c_[y, y])


def test_sequence_mode_score_checks_step_counts():
    X, _ = make_ragged_sequences(n_samples=6, min_length=3, max_length=8)
    y = [x[:, 0] for x in X]
    reg = LSTMRegressor(**FAST, output_mode="sequence").fit(X, y)
    shorter = [t[:-1] for t in y]
    with pytest.raises(ValueError, match=r"y\[0\] has"):
        reg.score(X, shorter)
    with pytest.raises(ValueError, match="6 sequences but y has 5"):
        reg.score(X, y[:5])


def _training_rows(monkeypatch):
    """The rows each fit trains on (its validation split excluded)."""
    seen = []
    original = LSTMRegressor._split

    def spy(self, *args, **kwargs):
        train_rows, valid_rows = original(self, *args, **kwargs)
        seen.append(train_rows)
        return train_rows, valid_rows

    monkeypatch.setattr(LSTMRegressor, "_split", spy)
    return seen


def test_predictions_are_centred_on_the_training_rows(monkeypatch):
    # Stopped after one epoch, the network has not settled its output bias;
    # fit then moves it so that the weighted mean error on the rows it
    # trained on is zero per output, as a fitted intercept would. (The
    # shrinking that follows, tested below, is left out here.)
    monkeypatch.setattr(LSTMRegressor, "_shrink", lambda self, *args: None)
    seen = _training_rows(monkeypatch)
    X, y = _data(n_samples=120)
    targets = np.c_[y, 5 - 3 * y]
    weights = np.random.RandomState(1).uniform(0.2, 3.0, size=len(y))
    reg = LSTMRegressor(
        **dict(FAST, max_epochs=1), early_stopping=True, validation_fraction=0.25
    ).fit(X, targets, sample_weight=weights)
    train_rows = seen[-1]
    assert len(train_rows) == 90
    errors = targets[train_rows] - reg.predict(X[train_rows])
    mean_error = weights[train_rows] @ errors / weights[train_rows].sum()
    assert (np.abs(mean_error) < 1e-4 * targets.std(axis=0)).all()
    # The held-out rows took no part: their mean error is not forced to 0.
    valid_rows = np.setdiff1d(np.arange(len(y)), train_rows)
    held_out = (targets[valid_rows] - reg.predict(X[valid_rows])).mean(axis=0)
    assert np.abs(held_out).max() > 1e-3


@pytest.mark.parametrize(
    "factor, share",
    [(-1.0, 0.0), (0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (2.5, 1.0)],
)
def test_held_out_rows_shrink_each_output_towards_the_mean(factor, share):
    # Held-out truths that follow the network's deviations from the mean
    # of all targets by ``factor`` keep that share of them: none where they
    # point the wrong way or not at all, never more than all. The other
    # output's truths follow it exactly and keep all of theirs.
    X, y = _data()
    reg = LSTMRegressor(**FAST, early_stopping=False).fit(X, np.c_[y, -y])
    sequences = reg._validated_sequences(X)
    before = reg._outputs_of(reg.net_, sequences)[:, :2]
    mean = np.array([0.3, before[:, 1].mean()])
    held_out = np.arange(20, 50)
    first = np.empty(80)
    first[held_out] = mean[0] + factor * (before[held_out, 0] - mean[0])
    # The other rows bring the mean of all 80 targets to ``mean[0]``.
    others = np.setdiff1d(np.arange(80), held_out)
    first[others] = (80 * mean[0] - first[held_out].sum()) / len(others)
    targets = np.c_[first, before[:, 1]]
    reg._shrink(reg.net_, sequences, targets, np.ones(80), held_out)
    after = reg._outputs_of(reg.net_, sequences)[:, :2]
    expected = mean[0] + share * (before[:, 0] - mean[0])
    np.testing.assert_allclose(after[:, 0], expected, atol=1e-5)
    np.testing.assert_allclose(after[:, 1], before[:, 1], atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_never_worse_than_the_training_mean_on_the_held_out_rows(monkeypatch, seed):
    # Targets that are noise: whatever the network learned from the
    # sequences, on the rows it held out it ends no worse than predicting
    # the mean of all the targets it was given.
    seen = _training_rows(monkeypatch)
    X, _ = _data(n_samples=100, seed=seed)
    y = np.random.RandomState(seed + 10).normal(size=100)
    reg = LSTMRegressor(
        **dict(FAST, max_epochs=8, random_state=seed),
        early_stopping=True,
        calibration="split",
    ).fit(X, y)
    train_rows = seen[-1]
    valid_rows = np.setdiff1d(np.arange(100), train_rows)
    truths = y[valid_rows]
    network = np.sum((truths - reg.predict(X[valid_rows])) ** 2)
    mean = np.sum((truths - y.mean()) ** 2)
    assert network <= mean * (1 + 1e-5)


def test_per_step_predictions_never_worse_than_the_weighted_mean(monkeypatch):
    # The same per step, with weights: on the held-out sequences' steps,
    # weighted, no worse than the weighted mean of every step's target.
    seen = _training_rows(monkeypatch)
    X, _ = make_ragged_sequences(n_samples=80, min_length=4, max_length=12)
    rng = np.random.RandomState(3)
    y = [rng.normal(size=len(x)) for x in X]
    weights = rng.uniform(0.2, 3.0, size=len(X))
    reg = LSTMRegressor(
        **FAST, output_mode="sequence", early_stopping=True, calibration="split"
    ).fit(X, y, sample_weight=weights)
    valid_rows = np.setdiff1d(np.arange(len(X)), seen[-1])
    step_weights = np.concatenate(
        [np.full(len(x), w) for x, w in zip(X, weights, strict=True)]
    )
    mean = step_weights @ np.concatenate(y) / step_weights.sum()
    predictions = reg.predict([X[row] for row in valid_rows])
    truths = [y[row] for row in valid_rows]
    row_weights = weights[valid_rows]
    network = sum(
        w * np.sum((t - p) ** 2)
        for w, t, p in zip(row_weights, truths, predictions, strict=True)
    )
    baseline = sum(
        w * np.sum((t - mean) ** 2) for w, t in zip(row_weights, truths, strict=True)
    )
    assert network <= baseline * (1 + 1e-5)


def test_per_step_predictions_are_centred_over_the_steps():
    X, _ = make_ragged_sequences(n_samples=60, min_length=4, max_length=12)
    y = [2.0 + np.cumsum(x[:, 0]) for x in X]
    reg = LSTMRegressor(
        **dict(FAST, max_epochs=1), output_mode="sequence", early_stopping=False
    ).fit(X, y)
    errors = np.concatenate(y) - np.concatenate(reg.predict(X))
    assert abs(errors.mean()) < 1e-4 * np.concatenate(y).std()


def test_partial_fit_does_not_centre(monkeypatch):
    calls = []
    monkeypatch.setattr(LSTMRegressor, "_centre", lambda self, *a: calls.append(1))
    X, y = _data()
    reg = LSTMRegressor(calibration="split", **FAST)
    reg.partial_fit(X, y).partial_fit(X, y)
    assert calls == []
    reg.fit(X, y)
    assert calls == [1]

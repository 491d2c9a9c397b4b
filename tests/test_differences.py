"""``differences``: each numeric feature's centred change as extra channels."""

import io

import numpy as np
import pytest
import torch

import sklstm
from sklstm import LSTMClassifier, LSTMRegressor
from sklstm._network import _centred_changes
from sklstm._sequences import difference_scale, to_sequences

from .conftest import make_ragged_sequences

TINY = dict(hidden_size=6, max_epochs=2, random_state=0, device="cpu")


def _half_span(estimator):
    return estimator.net_.module_.differences


def _changes(series, half_span):
    """The centred change of one (steps, features) sequence, in numpy."""
    padded = np.pad(series, ((half_span, half_span), (0, 0)), mode="edge")
    return (padded[2 * half_span :] - padded[: -2 * half_span]) / (2 * half_span)


def _series(n_samples=8, n_timesteps=100, n_features=1, seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n_samples, n_timesteps, n_features)).cumsum(axis=1)


LABELS = np.arange(8) % 2


@pytest.mark.parametrize(
    ("data", "params", "expected"),
    [
        ("univariate, 100 steps", {}, 3),
        ("univariate, 99 steps", {}, 0),
        ("two features, 100 steps", {}, 0),
        ("univariate, ragged", {}, 0),
        ("table of 120 columns", {}, 3),
        ("univariate, 501 steps", {}, 0),
        ("univariate, 501 steps", {"recurrent_stride": 1}, 3),
        ("univariate, 100 steps", {"output_mode": "sequence"}, 0),
        ("univariate, 99 steps", {"differences": 2}, 2),
        ("univariate, 100 steps", {"differences": 0}, 0),
    ],
)
def test_auto_gives_univariate_long_equal_series_differences(data, params, expected):
    X = {
        "univariate, 100 steps": _series(),
        "univariate, 99 steps": _series(n_timesteps=99),
        "two features, 100 steps": _series(n_features=2),
        "univariate, ragged": [
            x[: 100 + i] for i, x in enumerate(_series(n_timesteps=110))
        ],
        "table of 120 columns": _series(n_timesteps=120)[..., 0],
        "univariate, 501 steps": _series(n_timesteps=501),
    }[data]
    y = LABELS
    if params.get("output_mode") == "sequence":
        y = np.repeat(LABELS[:, None], 100, axis=1)
    clf = LSTMClassifier(**TINY, **params).fit(X, y)
    assert _half_span(clf) == expected
    # One change channel per numeric feature when on.
    assert hasattr(clf.net_.module_, "difference_scale") == bool(expected)


@pytest.mark.parametrize(
    ("n_timesteps", "n_features", "expected"), [(60, 1, 3), (59, 1, 0), (60, 2, 0)]
)
def test_the_regressor_gives_them_from_60_steps(n_timesteps, n_features, expected):
    X = _series(n_timesteps=n_timesteps, n_features=n_features)
    y = X[:, -1, 0]
    assert _half_span(LSTMRegressor(**TINY).fit(X, y)) == expected
    # The classifier waits for 100 steps.
    assert _half_span(LSTMClassifier(**TINY).fit(X, LABELS)) == 0


def test_changes_of_a_ragged_batch_are_each_sequences_own():
    rng = np.random.RandomState(0)
    lengths = [9, 1, 5, 2]
    sequences = [rng.normal(size=(n, 2)).astype(np.float32) for n in lengths]
    batch = torch.zeros(len(lengths), 9, 2)
    for row, series in enumerate(sequences):
        batch[row, : len(series)] = torch.from_numpy(series)
    lengths = torch.tensor(lengths)
    mask = torch.arange(9)[None, :] < lengths[:, None]
    changes = _centred_changes(batch, lengths, mask, 2).numpy()
    for row, series in enumerate(sequences):
        n = len(series)
        np.testing.assert_allclose(changes[row, :n], _changes(series, 2), rtol=1e-6)
        # Padding stays zero.
        assert not changes[row, n:].any()
    # A batch of full rows takes the padding path and gives the same.
    full = batch[:1]
    np.testing.assert_allclose(
        _centred_changes(full, None, None, 2).numpy()[0],
        _changes(sequences[0], 2),
        rtol=1e-6,
    )


def test_the_changes_enter_at_unit_scale():
    X = _series(n_samples=20) * 50 + 7
    sequences = to_sequences(X)
    clf = LSTMClassifier(**TINY, differences=2).fit(X, np.arange(20) % 2)
    mean = X.reshape(-1, 1).mean(axis=0)
    scale = X.reshape(-1, 1).std(axis=0)
    changes = np.concatenate([_changes((x - mean) / scale, 2) for x in X])
    expected = np.sqrt(np.mean(changes**2, axis=0))
    np.testing.assert_allclose(
        clf.net_.module_.difference_scale.numpy(), expected, rtol=1e-4
    )
    np.testing.assert_allclose(
        difference_scale(sequences, 2, mean, scale), expected, rtol=1e-6
    )


def test_the_scale_reads_an_even_sample_of_many_sequences(monkeypatch):
    X = _series(n_samples=9, n_timesteps=12, n_features=2)
    X[::2] *= 10  # every other sequence changes ten times as fast
    monkeypatch.setattr(sklstm._sequences, "DIFFERENCE_SCALE_SEQUENCES", 3)
    # Rows 0, 4 and 8: all of the fast ones.
    sampled = difference_scale(to_sequences(X), 1)
    expected = difference_scale(to_sequences(X[[0, 4, 8]]), 1)
    np.testing.assert_allclose(sampled, expected)
    monkeypatch.setattr(sklstm._sequences, "DIFFERENCE_SCALE_SEQUENCES", 1000)
    assert (difference_scale(to_sequences(X), 1) < sampled).all()


def test_a_constant_feature_keeps_scale_one():
    X = _series(n_timesteps=10, n_features=2)
    X[..., 1] = 4.0
    assert difference_scale(to_sequences(X), 1)[1] == 1.0


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padding_changes_no_prediction(pooling):
    X, y = make_ragged_sequences(n_samples=30, max_length=20)
    clf = LSTMClassifier(**TINY, differences=2, pooling=pooling).fit(X, y)
    together = clf.predict_proba(X)
    alone = np.vstack([clf.predict_proba([x]) for x in X])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_missing_values_are_read_at_the_mean():
    X = _series(n_timesteps=30)
    X[1, 4:9, 0] = np.nan
    clf = LSTMClassifier(**TINY, differences=2).fit(X, LABELS)
    assert np.isfinite(clf.net_.module_.difference_scale.numpy()).all()
    assert np.isfinite(clf.predict_proba(X)).all()


def test_save_and_load_keep_the_changes():
    X = _series()
    clf = LSTMClassifier(**TINY).fit(X, LABELS)
    assert _half_span(clf) == 3
    file = io.BytesIO()
    clf.save(file)
    file.seek(0)
    loaded = sklstm.load(file)
    assert _half_span(loaded) == 3
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_a_warm_start_with_other_differences_trains_a_new_network():
    X = _series(n_timesteps=20)
    clf = LSTMClassifier(**TINY, differences=1, warm_start=True).fit(X, LABELS)
    clf.fit(X, LABELS)  # the same: continues quietly
    assert clf.n_iter_ == 4
    clf.set_params(differences=2)
    with pytest.warns(UserWarning, match=r"differences \(1 -> 2\) changed"):
        clf.fit(X, LABELS)
    assert _half_span(clf) == 2
    assert clf.n_iter_ == 2


@pytest.mark.parametrize("value", [-1, 1.5, "yes", True])
def test_bad_values_are_refused(value):
    clf = LSTMClassifier(**TINY, differences=value)
    with pytest.raises((ValueError, TypeError), match="differences"):
        clf.fit(_series(n_timesteps=5), LABELS)
    assert not hasattr(clf, "net_")


def test_the_forecasters_networks_have_none():
    from sklstm.forecasting import LSTMForecaster

    assert "differences" not in LSTMForecaster().get_params()
    # Windows of 60 steps would get them from the regressor's "auto".
    series = np.sin(np.arange(200) / 5.0)
    forecaster = LSTMForecaster(window_length=60, horizon=1, n_networks=1, **TINY)
    forecaster.fit(series)
    assert forecaster.regressor_.differences == 0
    assert _half_span(forecaster.regressor_) == 0


def test_data_on_disk_gets_the_same_changes(tmp_path):
    X = _series(n_samples=12, n_timesteps=100).astype(np.float32)
    path = tmp_path / "X.dat"
    written = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    written[:] = X
    written.flush()
    on_disk = np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)
    y = np.arange(12) % 2
    streamed = LSTMClassifier(**TINY).fit(on_disk, y)
    in_memory = LSTMClassifier(**TINY).fit(X, y)
    assert _half_span(streamed) == _half_span(in_memory) == 3
    np.testing.assert_array_equal(
        streamed.net_.module_.difference_scale.numpy(),
        in_memory.net_.module_.difference_scale.numpy(),
    )


def test_a_network_pickled_before_differences_still_predicts():
    X = _series(n_timesteps=20)
    clf = LSTMClassifier(**TINY).fit(X, LABELS)
    expected = clf.predict_proba(X)
    # What unpickling a network saved before the attribute existed gives.
    del clf.net_.module_.__dict__["differences"]
    np.testing.assert_array_equal(clf.predict_proba(X), expected)

"""What fit and predict print at each verbose level."""

import numpy as np
import pytest

from sklstm import LSTMClassifier, LSTMRegressor

from .conftest import make_classification_sequences

TINY = dict(hidden_size=4, max_epochs=3, batch_size=16, random_state=0)


@pytest.fixture
def data():
    return make_classification_sequences(n_samples=30, n_timesteps=5, n_features=2)


def _progress_callback(estimator):
    return dict(estimator.net_.callbacks_)["progress"]


@pytest.mark.parametrize("Estimator", [LSTMClassifier, LSTMRegressor])
def test_verbose_0_is_silent(Estimator, data, capfd):
    X, y = data
    if Estimator is LSTMRegressor:
        y = X[:, -1, 0]
    estimator = Estimator(verbose=0, early_stopping=True, **TINY).fit(X, y)
    estimator.predict(X)
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


@pytest.mark.parametrize("stops_early", [False, True])
def test_verbose_2_prints_one_line_per_epoch(stops_early, data, capfd):
    X, y = data
    # tol=1: no epoch improves enough, so training stops once patience ends.
    stopping = dict(n_iter_no_change=1, tol=1.0) if stops_early else {}
    clf = LSTMClassifier(verbose=2, early_stopping=True, **stopping, **TINY).fit(X, y)
    assert (clf.n_iter_ < TINY["max_epochs"]) == stops_early
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert len(lines) == clf.n_iter_
    for epoch, line in enumerate(lines, start=1):
        assert line.split()[:2] == ["epoch", str(epoch)]
        assert "train_loss=" in line
        assert "valid_score=" in line
    assert err == ""


def test_predict_prints_nothing_even_when_verbose(data, capfd):
    X, y = data
    for verbose in (1, 2):
        clf = LSTMClassifier(verbose=verbose, **TINY).fit(X, y)
        capfd.readouterr()
        clf.predict_proba(np.concatenate([X] * 20))
        assert capfd.readouterr() == ("", "")


def test_verbose_1_shows_a_bar_with_loss(data, capfd):
    X, y = data
    clf = LSTMClassifier(verbose=1, early_stopping=True, **TINY).fit(X, y)
    out, err = capfd.readouterr()
    assert out == ""
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert f"{clf.n_iter_}/{TINY['max_epochs']}" in final
    assert "train_loss=" in final
    assert "valid_score=" in final
    assert not hasattr(_progress_callback(clf), "bar_")  # closed


def test_verbose_1_bar_closes_when_stopping_early(data, capfd):
    X, y = data
    # No improvement can beat tol=1: training stops after patience runs out.
    clf = LSTMClassifier(
        verbose=1,
        early_stopping=True,
        n_iter_no_change=1,
        tol=1.0,
        **{**TINY, "max_epochs": 50},
    ).fit(X, y)
    assert clf.n_iter_ < 50
    _, err = capfd.readouterr()
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert f"{clf.n_iter_}/50" in final
    assert "stopped early" in final
    assert not hasattr(_progress_callback(clf), "bar_")


def test_verbose_1_partial_fit_bar_spans_one_epoch(data, capfd):
    X, y = data
    clf = LSTMClassifier(verbose=1, **TINY)
    clf.partial_fit(X, y, classes=np.unique(y))
    clf.partial_fit(X, y)
    _, err = capfd.readouterr()
    finals = [line for line in err.replace("\r", "\n").splitlines() if "1/1" in line]
    assert finals
    assert f"/{TINY['max_epochs']}" not in err

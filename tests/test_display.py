"""HistoryDisplay: training loss and validation score per epoch."""

import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from sklstm import HistoryDisplay, LSTMClassifier, LSTMRegressor

from .conftest import make_classification_sequences

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TINY = dict(hidden_size=4, batch_size=16, random_state=0)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def stopped_early():
    X, y = make_classification_sequences(n_samples=40, n_timesteps=5, n_features=2)
    return LSTMClassifier(
        max_epochs=30, early_stopping=True, n_iter_no_change=3, **TINY
    ).fit(X, y)


def test_from_estimator_draws_both_curves(stopped_early):
    display = HistoryDisplay.from_estimator(stopped_early)
    assert isinstance(display, HistoryDisplay)
    epochs = np.arange(1, stopped_early.n_iter_ + 1)
    np.testing.assert_array_equal(display.line_loss_.get_xdata(), epochs)
    np.testing.assert_allclose(
        display.line_loss_.get_ydata(), stopped_early.loss_curve_
    )
    np.testing.assert_allclose(
        display.line_score_.get_ydata(), stopped_early.validation_scores_
    )
    assert display.ax_score_ is not display.ax_
    assert display.ax_score_.get_shared_x_axes().joined(display.ax_, display.ax_score_)
    assert display.figure_ is display.ax_.figure
    assert display.ax_.get_xlabel() == "epoch"


def test_best_epoch_is_the_one_early_stopping_kept(stopped_early):
    display = HistoryDisplay.from_estimator(stopped_early)
    stopper = dict(stopped_early.net_.callbacks_)["early_stopping"]
    assert display.best_epoch == stopper.best_epoch_
    assert list(display.best_line_.get_xdata()) == [display.best_epoch] * 2
    legend = [text.get_text() for text in display.ax_.get_legend().get_texts()]
    assert f"best epoch ({display.best_epoch})" in legend


def test_without_validation_only_the_loss(sequences_3d):
    X, _ = sequences_3d
    reg = LSTMRegressor(max_epochs=3, early_stopping=False, **TINY).fit(X, X[:, -1, 0])
    display = HistoryDisplay.from_estimator(reg)
    assert display.line_score_ is None
    assert display.ax_score_ is None
    assert display.best_line_ is None
    assert len(display.line_loss_.get_ydata()) == 3


def test_plot_on_given_axes():
    _, (left, right) = plt.subplots(1, 2)
    display = HistoryDisplay([0.9, 0.5, 0.4]).plot(ax=right)
    assert display.ax_ is right
    assert display.figure_ is right.figure
    assert not left.lines


def test_default_best_epoch_is_highest_score():
    display = HistoryDisplay(
        [3.0, 2.0, 1.0, 0.5], validation_scores=[0.1, 0.8, 0.4, 0.7]
    )
    display.plot()
    assert display.best_epoch == 2


def test_explicit_best_epoch_and_styles():
    display = HistoryDisplay([3.0, 2.0, 1.0], validation_scores=[0.1, 0.2, 0.3])
    display.best_epoch = 1
    display.plot(loss_kwargs={"color": "black"}, score_kwargs={"linestyle": ":"})
    assert list(display.best_line_.get_xdata()) == [1, 1]
    assert display.line_loss_.get_color() == "black"
    assert display.line_score_.get_linestyle() == ":"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(loss_curve=[]), "non-empty"),
        (dict(loss_curve=[1.0, 2.0], validation_scores=[0.5]), "one score per epoch"),
        (dict(loss_curve=[1.0, 2.0], best_epoch=3), "outside the 2 epochs"),
    ],
)
def test_invalid_curves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HistoryDisplay(**kwargs).plot()


def test_unfitted_estimator():
    with pytest.raises(NotFittedError):
        HistoryDisplay.from_estimator(LSTMClassifier())


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"sklstm\[plot\]"):
        HistoryDisplay([1.0, 0.5]).plot()

"""LSTMRegressor's calibrated intervals: predict_interval, predict_quantiles."""

import io
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import sklstm
from sklstm import LSTMRegressor
from sklstm._conformal import (
    MAX_STORED_SCORES,
    calibration_from,
    half_widths,
    stored_ranks,
    too_few_scores,
)

from .conftest import make_ragged_sequences

TINY = dict(
    hidden_size=8, conv_filters=None, max_epochs=4, early_stopping=True, random_state=0
)
# Small and quick to train, yet it learns the generated data below.
QUICK = dict(
    hidden_size=16,
    conv_filters=None,
    lr=0.01,
    max_epochs=60,
    early_stopping=True,
    random_state=0,
)


def _regression_data(n_samples=50, n_outputs=None, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 6, 2)).astype(np.float32)
    y = X[:, -1, 0] + 0.3 * rng.normal(size=n_samples)
    if n_outputs is not None:
        y = np.stack([y * (i + 1) for i in range(n_outputs)], axis=1)
    return X, y


def _heteroscedastic(n_samples, seed):
    """Targets whose noise is 10 times larger where feature 1 ends above 0."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 6, 2)).astype(np.float32)
    noise = np.where(X[:, -1, 1] > 0, 1.0, 0.1)
    return X, X[:, -1, 0] + noise * rng.normal(size=n_samples), noise


@pytest.fixture(scope="module", params=["constant", "adaptive"])
def fitted(request):
    X, y = _regression_data()
    return LSTMRegressor(interval_width=request.param, **TINY).fit(X, y), X


# ---------------------------------------------------------------------------
# Shapes: predict's, plus a last axis
def test_shapes_for_one_output(fitted):
    reg, X = fitted
    assert reg.predict_interval(X).shape == (50, 2)
    assert reg.predict_quantiles(X).shape == (50, 3)
    assert reg.predict_quantiles(X, quantiles=[0.1, 0.2, 0.7, 0.8]).shape == (50, 4)
    assert reg.predict_quantiles(X, quantiles=0.9).shape == (50, 1)


@pytest.mark.parametrize("interval_width", ["constant", "adaptive"])
def test_shapes_for_several_outputs(interval_width):
    X, y = _regression_data(n_outputs=3)
    reg = LSTMRegressor(interval_width=interval_width, **TINY).fit(X, y)
    assert reg.predict_interval(X).shape == (50, 3, 2)
    assert reg.predict_quantiles(X, quantiles=[0.25, 0.75]).shape == (50, 3, 2)
    one_column = LSTMRegressor(**TINY).fit(X, y[:, :1])
    assert one_column.predict_interval(X).shape == (50, 1, 2)


def test_shapes_per_step():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(50, 7, 2))
    y = X[:, :, 0] + 0.1 * rng.normal(size=(50, 7))
    reg = LSTMRegressor(output_mode="sequence", **TINY).fit(X, y)
    assert reg.predict_interval(X).shape == (50, 7, 2)
    assert reg.predict_quantiles(X).shape == (50, 7, 3)
    both = np.stack([y, -y], axis=-1)
    reg = LSTMRegressor(output_mode="sequence", interval_width="adaptive", **TINY)
    reg.fit(X, both)
    assert reg.predict_interval(X).shape == (50, 7, 2, 2)


@pytest.mark.parametrize("calibration", ["split", "cross"])
def test_ragged_in_ragged_out_and_only_real_steps_calibrate(calibration):
    X, _ = make_ragged_sequences(n_samples=40, min_length=2, max_length=12)
    y = [x[:, 0] for x in X]
    reg = LSTMRegressor(output_mode="sequence", calibration=calibration, **TINY)
    reg.fit(X, y)
    intervals = reg.predict_interval(X)
    assert isinstance(intervals, list)
    assert [i.shape for i in intervals] == [(len(x), 2) for x in X]
    quantiles = reg.predict_quantiles(X, quantiles=[0.1, 0.5, 0.9])
    assert [q.shape for q in quantiles] == [(len(x), 3) for x in X]
    # One score per real step of the held-out sequences, none for padding:
    # the validation split's, or with five networks' folds every sequence's.
    sequences = reg._validated_sequences(X)
    _, valid_rows = reg._split(None, sequences, reg._seed, True)
    held_out = valid_rows if calibration == "split" else range(len(X))
    assert reg._calibration["size"] == sum(len(X[row]) for row in held_out)


# ---------------------------------------------------------------------------
# What the bounds are
def test_bounds_surround_the_prediction(fitted):
    reg, X = fitted
    prediction = reg.predict(X)
    lower, upper = reg.predict_interval(X, coverage=0.8).T
    assert (lower <= prediction).all() and (prediction <= upper).all()
    assert (lower < upper).all()
    quantiles = reg.predict_quantiles(X, quantiles=[0.05, 0.3, 0.5, 0.7, 0.95])
    assert (np.diff(quantiles, axis=-1) >= 0).all()
    np.testing.assert_array_equal(quantiles[:, 2], prediction)


def test_quantiles_are_the_ends_of_intervals(fitted):
    reg, X = fitted
    np.testing.assert_allclose(
        reg.predict_quantiles(X, quantiles=[0.1, 0.9]), reg.predict_interval(X, 0.8)
    )


def test_higher_coverage_gives_wider_intervals(fitted):
    reg, X = fitted
    widths = [np.diff(reg.predict_interval(X, c), axis=-1) for c in (0.5, 0.7, 0.9)]
    assert (widths[0] <= widths[1]).all() and (widths[1] <= widths[2]).all()
    assert widths[0].mean() < widths[2].mean()


@pytest.mark.parametrize("interval_width", ["constant", "adaptive"])
def test_coverage_near_nominal_on_held_out_data(interval_width):
    X, y, _ = _heteroscedastic(300, seed=0)
    X_test, y_test, _ = _heteroscedastic(1000, seed=1)
    reg = LSTMRegressor(interval_width=interval_width, **QUICK).fit(X, y)
    lower, upper = reg.predict_interval(X_test, coverage=0.9).T
    coverage = np.mean((lower <= y_test) & (y_test <= upper))
    assert 0.8 <= coverage <= 0.98


def test_adaptive_intervals_are_narrower_where_noise_is_lower():
    X, y, _ = _heteroscedastic(300, seed=0)
    X_test, _, noise = _heteroscedastic(1000, seed=1)
    # The widths' shape, not their calibration, is under test: the split's
    # 60 sequences calibrate without the four further networks.
    quick_split = dict(QUICK, calibration="split")
    adaptive = LSTMRegressor(interval_width="adaptive", **quick_split).fit(X, y)
    width = np.diff(adaptive.predict_interval(X_test), axis=-1)[:, 0]
    quiet, noisy = width[noise < 0.5].mean(), width[noise > 0.5].mean()
    assert quiet < 0.7 * noisy
    constant = LSTMRegressor(**quick_split).fit(X, y)
    width = np.diff(constant.predict_interval(X_test), axis=-1)[:, 0]
    np.testing.assert_allclose(width, width[0])
    # The point predictions do not suffer from learning the scales.
    assert adaptive.score(X_test, _heteroscedastic(1000, seed=1)[1]) > 0.9 * (
        constant.score(X_test, _heteroscedastic(1000, seed=1)[1])
    )


def test_each_output_is_calibrated_on_its_own():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 5, 1)).astype(np.float32)
    signal = X[:, -1, 0]
    y = np.stack([signal + 0.1 * rng.normal(size=200), signal + rng.normal(size=200)])
    reg = LSTMRegressor(calibration="split", **QUICK).fit(X, y.T)
    width = np.diff(reg.predict_interval(X[:5]), axis=-1)[0, :, 0]
    assert width[0] < 0.5 * width[1]


# ---------------------------------------------------------------------------
# Calibration state: kept, saved, recomputed, dropped
def test_save_load_and_pickle_keep_the_calibration(fitted, tmp_path):
    reg, X = fitted
    path = tmp_path / "model.sklstm"
    reg.save(path)
    for again in (sklstm.load(path), pickle.loads(pickle.dumps(reg))):
        assert again._calibration["size"] == reg._calibration["size"]
        np.testing.assert_array_equal(
            again._calibration["scores"], reg._calibration["scores"]
        )
        np.testing.assert_array_equal(
            again.predict_interval(X, 0.7), reg.predict_interval(X, 0.7)
        )
        np.testing.assert_array_equal(
            again.predict_quantiles(X), reg.predict_quantiles(X)
        )


def test_refits_recalibrate_and_partial_fit_uncalibrates():
    X, y = _regression_data(n_samples=60)
    reg = LSTMRegressor(warm_start=True, **TINY).fit(X, y)
    assert reg._calibration["size"] == 60  # five networks held out all
    # Warm start: trains on and calibrates on this fit's split alone, as
    # networks trained afresh would not err as the continued one does.
    reg.fit(X, y)
    assert reg.n_iter_ == 2 * TINY["max_epochs"]
    assert reg._calibration["size"] == 12
    reg.partial_fit(X, y)
    with pytest.raises(ValueError, match="partial_fit has trained it since"):
        reg.predict_interval(X)
    reg.set_params(warm_start=False, early_stopping=False).fit(X, y)
    with pytest.raises(ValueError, match="early_stopping=True"):
        reg.predict_quantiles(X)


# ---------------------------------------------------------------------------
# Cross-conformal calibration: more networks hold out the rest of the data
def test_small_sets_calibrate_on_every_sequence_and_predict_alike():
    X, y = _regression_data(n_samples=60)
    split = LSTMRegressor(calibration="split", **TINY).fit(X, y)
    auto = LSTMRegressor(**TINY).fit(X, y)
    assert split._calibration["size"] == 12
    assert auto._calibration["size"] == 60
    # The kept network is the one fit trained either way; only the
    # calibration differs.
    np.testing.assert_array_equal(auto.predict(X), split.predict(X))
    assert auto.loss_curve_ == split.loss_curve_
    np.testing.assert_allclose(
        auto.predict_interval(X).mean(axis=1),
        split.predict_interval(X).mean(axis=1),
        atol=1e-12,
    )
    # The fit's own validation errors are among the pooled ones.
    assert np.isin(split._calibration["scores"], auto._calibration["scores"]).all()
    # Reproducible from random_state, calibration included.
    again = LSTMRegressor(**TINY).fit(X, y)
    np.testing.assert_array_equal(
        again._calibration["scores"], auto._calibration["scores"]
    )
    # 60 scores reach coverages the split's 12 cannot.
    assert auto.predict_interval(X, coverage=0.95).shape == (60, 2)
    with pytest.raises(ValueError, match="needs at least 19"):
        split.predict_interval(X, coverage=0.95)


def test_auto_keeps_the_split_when_it_holds_enough(monkeypatch):
    from sklstm import _intervals

    monkeypatch.setattr(_intervals, "AUTO_CROSS_MAX_SCORES", 12)
    X, y = _regression_data(n_samples=60)
    assert LSTMRegressor(**TINY).fit(X, y)._calibration["size"] == 12
    monkeypatch.setattr(_intervals, "AUTO_CROSS_MAX_SCORES", 13)
    assert LSTMRegressor(**TINY).fit(X, y)._calibration["size"] == 60
    # "cross" trains the further networks whatever the split holds.
    monkeypatch.setattr(_intervals, "AUTO_CROSS_MAX_SCORES", 0)
    reg = LSTMRegressor(calibration="cross", **TINY).fit(X, y)
    assert reg._calibration["size"] == 60


def test_auto_keeps_the_split_when_five_fits_could_break_the_budget(monkeypatch):
    from sklstm import _intervals

    X, y = _regression_data(n_samples=60)
    # Each network may go through 4 epochs of 48 sequences of 6 steps: five
    # of them, 5,760 steps.
    work = TINY["max_epochs"] * 48 * 6
    monkeypatch.setattr(_intervals, "_AUTO_WORK", 5 * work - 1)
    assert LSTMRegressor(**TINY).fit(X, y)._calibration["size"] == 12
    cross = LSTMRegressor(calibration="cross", **TINY).fit(X, y)
    assert cross._calibration["size"] == 60
    monkeypatch.setattr(_intervals, "_AUTO_WORK", 5 * work)
    assert LSTMRegressor(**TINY).fit(X, y)._calibration["size"] == 60


@pytest.mark.parametrize(
    "n_samples, fraction, n_networks, n_held_out",
    [
        (60, 0.2, 5, 60),  # four folds of the split's 12: every row once
        (74, 0.2, 5, 74),  # 15 and 59 rows: folds of 14-15, every row once
        (60, 0.1, 5, 30),  # at most four further networks, 6 rows each
        (60, 0.4, 2, 48),  # 36 training rows: one fold of the split's 24
        (60, 0.6, 1, 36),  # 24 training rows: no fold as large as the split
    ],
)
def test_folds_are_disjoint_and_about_as_large_as_the_split(
    n_samples, fraction, n_networks, n_held_out
):
    X, y = _regression_data(n_samples=n_samples)
    reg = LSTMRegressor(calibration="cross", validation_fraction=fraction, **TINY)
    reg.fit(X, y)
    sequences = reg._validated_sequences(X)
    train_rows, valid_rows = reg._split(None, sequences, reg._seed, True)
    folds = reg._calibration_folds(
        sequences, (train_rows, valid_rows), reg._seed, (0, 0)
    )
    assert len(folds) == n_networks - 1
    every = np.concatenate([valid_rows] + [held_out for _, _, held_out in folds])
    assert len(np.unique(every)) == len(every) == n_held_out
    for _, rows, held_out in folds:
        # Each trains on all the other sequences, about as many as the
        # fit's own network.
        assert abs(len(rows) - len(train_rows)) <= 1
        np.testing.assert_array_equal(np.union1d(rows, held_out), np.arange(n_samples))
    assert len({seed for seed, _, _ in folds} | {reg._seed}) == n_networks
    assert reg._calibration["size"] == n_held_out


def test_further_networks_train_without_callbacks_or_output(capsys):
    from skorch.callbacks import Callback

    class CountTrainings(Callback):
        trainings = 0

        def on_train_begin(self, net, **kwargs):
            type(self).trainings += 1

    X, y = _regression_data(n_samples=60)
    reg = LSTMRegressor(callbacks=[CountTrainings()], verbose=1, **TINY).fit(X, y)
    assert reg._calibration["size"] == 60
    assert CountTrainings.trainings == 1
    assert capsys.readouterr().err.count("4/4 [") == 1  # one progress bar


def test_interrupted_further_networks_leave_the_split_calibration(monkeypatch):
    X, y = _regression_data(n_samples=60)
    split = LSTMRegressor(calibration="split", **TINY).fit(X, y)
    original = LSTMRegressor._train_checked
    calls = []

    def interrupted_third(self, net, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, net, *args)

    monkeypatch.setattr(LSTMRegressor, "_train_checked", interrupted_third)
    reg = LSTMRegressor(**TINY)
    with pytest.warns(RuntimeWarning, match="interrupted after 1 of 4.*split alone"):
        reg.fit(X, y)
    np.testing.assert_array_equal(
        reg._calibration["scores"], split._calibration["scores"]
    )
    np.testing.assert_array_equal(reg.predict(X), split.predict(X))


def test_unknown_calibration_is_refused():
    X, y = _regression_data()
    with pytest.raises(ValueError, match="calibration.*'cross'"):
        LSTMRegressor(calibration="jackknife", **TINY).fit(X, y)


def test_changing_interval_width_builds_a_new_network():
    X, y = _regression_data()
    reg = LSTMRegressor(**TINY).fit(X, y)
    reg.set_params(interval_width="adaptive")
    assert reg._fitted_interval_width == "constant"
    # Prediction follows the fitted network, not the changed parameter.
    assert reg.predict_interval(X).shape == (50, 2)
    with pytest.raises(ValueError, match="cannot be saved.*interval_width"):
        reg.save(io.BytesIO())
    reg.fit(X, y)
    assert reg._fitted_interval_width == "adaptive"
    assert reg.net_.module_.scale_head is not None
    reg.set_params(warm_start=True, interval_width="constant")
    with pytest.warns(UserWarning, match="interval_width"):
        reg.fit(X, y)
    assert reg.net_.module_.scale_head is None
    assert reg.n_iter_ == TINY["max_epochs"]
    clone(reg).fit(X, y).predict_interval(X)


def test_stored_scores_are_capped_and_never_undercover():
    rng = np.random.RandomState(0)
    for size in (7, MAX_STORED_SCORES, MAX_STORED_SCORES + 1, 12_345):
        scores = rng.exponential(size=(size, 2))
        calibration = calibration_from(scores)
        assert calibration["size"] == size
        assert calibration["scores"].shape == (min(size, MAX_STORED_SCORES), 2)
        ordered = np.sort(scores, axis=0)
        ranks = stored_ranks(size)
        for coverage in (0.01, 0.5, 0.9, 0.95, 0.999):
            if too_few_scores(coverage, size):
                continue
            exact_rank = int(np.ceil((size + 1) * coverage - 1e-9))
            (width,) = half_widths(calibration, [coverage])
            used_rank = ranks[np.searchsorted(ranks, exact_rank)]
            np.testing.assert_array_equal(width, ordered[used_rank - 1])
            assert exact_rank <= used_rank
            assert (used_rank - exact_rank) / (size + 1) <= 1 / MAX_STORED_SCORES


def test_finite_sample_rank():
    # 9 scores give a 90% interval (the largest score), 8 do not.
    assert not too_few_scores(0.9, 9)
    assert too_few_scores(0.9, 8)
    calibration = calibration_from(np.arange(1.0, 10.0)[:, None])
    np.testing.assert_array_equal(
        half_widths(calibration, [0.9, 0.5, 0.0]).ravel(), [9, 5, 0]
    )


# ---------------------------------------------------------------------------
# Errors: what is wrong and what to do
def test_not_fitted_comes_first():
    X, _ = _regression_data()
    with pytest.raises(NotFittedError):
        LSTMRegressor().predict_interval(X, coverage="nonsense")
    with pytest.raises(NotFittedError):
        LSTMRegressor().predict_quantiles(X, quantiles="nonsense")


def test_without_a_validation_split_the_error_says_how_to_get_one():
    X, y = _regression_data(n_samples=30)
    reg = LSTMRegressor(hidden_size=4, max_epochs=2, random_state=0).fit(X, y)
    assert reg.validation_scores_ is None  # "auto": too few sequences
    for method in (reg.predict_interval, reg.predict_quantiles):
        with pytest.raises(ValueError, match="no calibration.*early_stopping=True"):
            method(X)
    reg.predict(X)


def test_too_small_a_validation_split_names_the_coverage_it_can_give():
    X, y = _regression_data(n_samples=30)
    reg = LSTMRegressor(validation_fraction=0.2, calibration="split", **TINY)
    reg.fit(X, y)
    assert reg._calibration["size"] == 6
    with pytest.raises(
        ValueError,
        match=r"0.9 needs at least 9 validation sequences.*held out 6.*'cross'",
    ):
        reg.predict_interval(X, coverage=0.9)
    with pytest.raises(ValueError, match="up to 0.8571.*validation_fraction"):
        reg.predict_quantiles(X, quantiles=[0.01, 0.5])
    assert reg.predict_interval(X, coverage=0.85).shape == (30, 2)


@pytest.mark.parametrize("coverage", [0, 1, 1.5, -0.1, float("nan"), float("inf")])
def test_coverage_outside_the_unit_interval(fitted, coverage):
    reg, X = fitted
    with pytest.raises(ValueError, match=r"not in \(0, 1\).*coverage=0.9"):
        reg.predict_interval(X, coverage=coverage)


@pytest.mark.parametrize("coverage", [True, "0.9", [0.8, 0.9], None])
def test_coverage_that_is_not_a_number(fitted, coverage):
    reg, X = fitted
    with pytest.raises(TypeError, match="coverage must be a number"):
        reg.predict_interval(X, coverage=coverage)


@pytest.mark.parametrize(
    "quantiles, error, pattern",
    [
        ([0.0, 0.5], ValueError, r"outside \(0, 1\)"),
        ([0.5, 1.0], ValueError, r"outside \(0, 1\)"),
        ([float("nan")], ValueError, r"outside \(0, 1\) or NaN"),
        ([], ValueError, "non-empty"),
        ([[0.1, 0.9]], ValueError, "1-D"),
        ("0.5", TypeError, "must be numbers"),
        ([True], TypeError, "must be numbers"),
        ([0.1, None], TypeError, "must be numbers"),
    ],
)
def test_invalid_quantiles(fitted, quantiles, error, pattern):
    reg, X = fitted
    with pytest.raises(error, match=pattern):
        reg.predict_quantiles(X, quantiles=quantiles)


def test_quantiles_in_any_order_come_back_in_that_order(fitted):
    reg, X = fitted
    ordered = reg.predict_quantiles(X, quantiles=[0.1, 0.5, 0.9])
    shuffled = reg.predict_quantiles(X, quantiles=[0.9, 0.1, 0.5, 0.1])
    np.testing.assert_array_equal(shuffled, ordered[:, [2, 0, 1, 0]])


def test_interval_width_is_validated():
    X, y = _regression_data()
    with pytest.raises(ValueError, match="interval_width"):
        LSTMRegressor(interval_width="wide").fit(X, y)


def test_no_warnings_from_a_calibrated_fit():
    X, y = _regression_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LSTMRegressor(interval_width="adaptive", **TINY).fit(X, y).predict_interval(X)

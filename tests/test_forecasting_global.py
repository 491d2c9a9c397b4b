"""LSTMForecaster on lists of series, new contexts, and forecast intervals."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sklstm.forecasting import LSTMForecaster

SMALL = dict(hidden_size=8, max_epochs=20, random_state=0)
TINY = dict(hidden_size=4, max_epochs=2, random_state=0)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Tiny networks: extra intra-op threads only wait on each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def growing(n_timesteps, level=1.0, period=12, noise=0.02, seed=0):
    """A positive seasonal series around ``level``, growing slowly."""
    rng = np.random.RandomState(seed)
    t = np.arange(n_timesteps)
    shape = 1 + 0.004 * t + 0.1 * np.sin(2 * np.pi * t / period)
    return level * shape * np.exp(noise * rng.normal(size=n_timesteps))


def wandering(n_timesteps, scale=1.0, seed=0):
    """A series of both signs: a sine plus noise, times ``scale``."""
    rng = np.random.RandomState(seed)
    t = np.arange(n_timesteps)
    return scale * (np.sin(2 * np.pi * t / 12) + 0.1 * rng.normal(size=n_timesteps))


def three_scales():
    return [growing(80, 1.0), growing(60, 1e3, seed=1), growing(100, 1e6, seed=2)]


@pytest.fixture(scope="module")
def fitted_list():
    return LSTMForecaster(**SMALL).fit(three_scales())


# ----------------------------------------------------------------------
# many series, one model


def test_list_fit_forecasts_each_series_near_its_own_level(fitted_list):
    forecasts = fitted_list.predict(6)
    assert isinstance(forecasts, list) and len(forecasts) == 3
    for series, forecast in zip(three_scales(), forecasts, strict=True):
        assert forecast.shape == (6,)
        level = series[-12:].mean()
        assert np.all(np.abs(forecast / level - 1) < 0.3), (forecast, level)
    assert fitted_list.log_transform_ == [True, True, True]
    assert fitted_list.n_timesteps_ == [80, 60, 100]
    assert fitted_list.seasonal_period_ == 12


@pytest.mark.parametrize("make", [growing, wandering], ids=["log", "no log"])
def test_scaling_one_series_scales_its_forecast_alone(make):
    series = [make(70, 1.0), make(60, 3.0, seed=1), make(90, 1e6, seed=2)]
    scaled = [series[0], 1000 * series[1], series[2]]
    # One network: scaling is per series, before and after any network, so
    # averaging five (the default here) would only repeat the check.
    first = LSTMForecaster(n_networks=1, **SMALL).fit(series).predict(8)
    second = LSTMForecaster(n_networks=1, **SMALL).fit(scaled).predict(8)
    np.testing.assert_allclose(second[1], 1000 * first[1], rtol=1e-4)
    np.testing.assert_allclose(second[0], first[0], rtol=1e-4)
    np.testing.assert_allclose(second[2], first[2], rtol=1e-4)


def test_list_of_two_dimensional_series():
    series = [
        np.column_stack([growing(60), growing(60, 5.0, seed=1)]),
        np.column_stack([growing(75, 1e3, seed=2), growing(75, 2.0, seed=3)]),
    ]
    forecaster = LSTMForecaster(**TINY).fit(series)
    assert forecaster.n_series_ == 2
    assert [f.shape for f in forecaster.predict(5)] == [(5, 2), (5, 2)]
    assert [i.shape for i in forecaster.predict_interval(5)] == [(5, 2, 2)] * 2
    quantiles = forecaster.predict_quantiles(5, quantiles=[0.1, 0.5, 0.9])
    assert [q.shape for q in quantiles] == [(5, 2, 3)] * 2


def test_list_with_exogenous_values():
    rng = np.random.RandomState(0)
    exogenous = [rng.normal(size=(60, 2)), rng.normal(size=(75, 2))]
    series = [growing(60) + 0.1 * exogenous[0][:, 0], growing(75, 9.0, seed=1)]
    forecaster = LSTMForecaster(strategy="recursive", **TINY).fit(series, exogenous)
    assert forecaster.n_exogenous_ == 2
    future = [rng.normal(size=(4, 2)), rng.normal(size=(6, 2))]
    assert [f.shape for f in forecaster.predict(4, X=future)] == [(4,), (4,)]
    with pytest.raises(ValueError, match="pass X as a list of 2 arrays"):
        forecaster.predict(4)
    with pytest.raises(TypeError, match="X must be a list too"):
        forecaster.predict(4, X=future[0])


def test_automatic_settings_for_a_list():
    # The period most series show; the window limited by the shortest series.
    seasonal = [growing(90, seed=seed) for seed in range(3)]
    rng = np.random.RandomState(0)
    walk = np.cumsum(rng.normal(size=90)) + 100
    forecaster = LSTMForecaster(**TINY).fit([*seasonal, walk, growing(30, seed=4)])
    assert forecaster.seasonal_period_ == 12
    assert forecaster.horizon_ == 12
    assert forecaster.window_length_ == 30 - 12
    # One window from the shortest series, at least.
    assert forecaster.n_windows_ >= 4


def test_list_pickles_and_clones(fitted_list):
    restored = pickle.loads(pickle.dumps(fitted_list))
    for before, after in zip(
        fitted_list.predict_interval(4), restored.predict_interval(4), strict=True
    ):
        np.testing.assert_array_equal(before, after)
    assert not hasattr(clone(fitted_list), "regressor_")


def test_score_after_a_list_fit():
    series = three_scales()
    forecaster = LSTMForecaster(**TINY).fit([values[:-6] for values in series])
    score = forecaster.score([values[-6:] for values in series])
    assert np.isfinite(score)
    with pytest.raises(ValueError, match="list of the values that follow"):
        forecaster.score(series[0][-6:])


def test_warm_start_with_a_list():
    series = three_scales()
    forecaster = LSTMForecaster(warm_start=True, **TINY).fit(series)
    forecaster.fit([values[:50] for values in series[:2]])
    assert forecaster.n_timesteps_ == [50, 50]
    assert len(forecaster.predict(3)) == 2


def test_failed_fit_leaves_the_fitted_state():
    forecaster = LSTMForecaster(**TINY).fit(three_scales())
    before = forecaster.predict(5)
    attributes = {k: v for k, v in vars(forecaster).items() if k.endswith("_")}
    with pytest.raises(ValueError, match=r"y\[1\] has 10 time steps"):
        forecaster.fit([growing(80), growing(10)], None)
    assert forecaster.regressor_ is attributes["regressor_"]
    assert forecaster.n_timesteps_ == [80, 60, 100]
    for old, new in zip(before, forecaster.predict(5), strict=True):
        np.testing.assert_array_equal(old, new)


# ----------------------------------------------------------------------
# forecasting from a new context


def test_context_of_the_fitted_series_continues_it(fitted_list):
    series = three_scales()
    for index, values in enumerate(series):
        np.testing.assert_array_equal(
            fitted_list.predict(7, y=values), fitted_list.predict(7)[index]
        )
    for old, new in zip(
        fitted_list.predict_interval(7),
        fitted_list.predict_interval(7, y=series),
        strict=True,
    ):
        np.testing.assert_array_equal(old, new)


def test_context_after_a_single_series_fit():
    y = growing(90)
    forecaster = LSTMForecaster(**TINY).fit(y[:72])
    np.testing.assert_array_equal(
        forecaster.predict(5, y=y[:72]), forecaster.predict(5)
    )
    # New observations move the origin, as a refit would (without training).
    moved = forecaster.predict(5, y=y)
    assert moved.shape == (5,)
    assert not np.allclose(moved, forecaster.predict(5))
    # A 2-D context of one column gives a 2-D forecast.
    assert forecaster.predict(5, y=y[:, None]).shape == (5, 1)


def test_predict_with_a_context_leaves_the_model_unchanged(fitted_list):
    before = fitted_list.predict(6)
    state = pickle.dumps(fitted_list)
    attributes = dict(vars(fitted_list))
    fitted_list.predict(6, y=[growing(40, 55.0, seed=9), wandering(30)])
    fitted_list.predict_interval(6, y=growing(50, 3.0, seed=8))
    assert pickle.dumps(fitted_list) == state
    assert vars(fitted_list).keys() == attributes.keys()
    for name, value in attributes.items():
        assert vars(fitted_list)[name] is value, name
    for old, new in zip(before, fitted_list.predict(6), strict=True):
        np.testing.assert_array_equal(old, new)


def test_context_never_seen_with_exogenous_values():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 1))
    forecaster = LSTMForecaster(strategy="recursive", **TINY).fit(
        growing(80) + 0.1 * X[:, 0], X
    )
    context, rows = 50 + wandering(40), rng.normal(size=(40 + 6, 1))
    forecast = forecaster.predict(6, X=rows, y=context)
    assert forecast.shape == (6,)
    altered = rows.copy()
    altered[40:] += 5
    assert not np.allclose(forecaster.predict(6, X=altered, y=context), forecast)
    with pytest.raises(ValueError, match="X has 44 rows but needs 46"):
        forecaster.predict(6, X=rows[:44], y=context)
    with pytest.raises(ValueError, match=r"len\(y\) \+ 6 rows"):
        forecaster.predict(6, y=context)


def test_context_shorter_than_the_window_is_refused(fitted_list):
    window = fitted_list.window_length_
    with pytest.raises(ValueError, match=f"at least window_length_={window}"):
        fitted_list.predict(3, y=growing(window - 1))
    with pytest.raises(ValueError, match=r"y\[1\] has 5 time steps"):
        fitted_list.predict(3, y=[growing(40), growing(5)])
    with pytest.raises(ValueError, match="columns"):
        fitted_list.predict(3, y=np.ones((40, 2)))


# ----------------------------------------------------------------------
# intervals


@pytest.mark.parametrize("strategy", ["direct", "recursive"])
def test_interval_shapes_and_order(strategy):
    y = growing(96)
    forecaster = LSTMForecaster(strategy=strategy, **TINY).fit(y)
    point = forecaster.predict(30)
    interval = forecaster.predict_interval(30, coverage=0.8)
    assert interval.shape == (30, 2)
    assert np.all(interval[:, 0] <= point) and np.all(point <= interval[:, 1])
    quantiles = forecaster.predict_quantiles(30, quantiles=[0.9, 0.1, 0.5])
    assert quantiles.shape == (30, 3)
    assert np.all(quantiles[:, 1] <= quantiles[:, 2])
    assert np.all(quantiles[:, 2] <= quantiles[:, 0])
    median = forecaster.predict_quantiles(30, quantiles=0.5)
    assert median.shape == (30, 1)
    np.testing.assert_array_equal(median[:, 0], point)
    # Wider coverage, wider interval.
    wide = forecaster.predict_interval(30, coverage=0.95)
    assert np.all(wide[:, 0] <= interval[:, 0]) and np.all(interval[:, 1] <= wide[:, 1])
    errors = forecaster.calibration_errors_
    assert errors.shape[1:] == (forecaster.calibration_steps_, 1)
    assert len(errors) >= 19


def test_intervals_scale_with_each_series(fitted_list):
    intervals = fitted_list.predict_interval(6)
    for series, interval in zip(three_scales(), intervals, strict=True):
        width = (interval[:, 1] - interval[:, 0]) / series[-12:].mean()
        assert np.all(width > 0) and np.all(width < 1)


def test_interval_coverage_on_noisy_series():
    # 24 noisy series: fit on all but their last 6 steps, check how many of
    # the 144 held-out values the 80% intervals contain.
    series = [
        growing(60 + 2 * seed, level=10.0 + seed, noise=0.08, seed=seed)
        for seed in range(24)
    ]
    forecaster = LSTMForecaster(**SMALL).fit([values[:-6] for values in series])
    intervals = forecaster.predict_interval(6, coverage=0.8)
    inside = [
        (interval[:, 0] <= values[-6:]) & (values[-6:] <= interval[:, 1])
        for values, interval in zip(series, intervals, strict=True)
    ]
    coverage = np.mean(inside)
    assert 0.55 <= coverage <= 1.0, coverage


def test_calibration_can_be_switched_off():
    forecaster = LSTMForecaster(calibration_steps=None, **TINY).fit(growing(72))
    assert forecaster.calibration_errors_ is None
    assert forecaster.predict(3).shape == (3,)
    with pytest.raises(ValueError, match="calibration_steps=None"):
        forecaster.predict_interval(3)


def test_series_too_short_to_calibrate():
    forecaster = LSTMForecaster(seasonal_period=12, **TINY).fit(growing(40))
    assert forecaster.calibration_errors_ is None
    with pytest.raises(ValueError, match="smaller calibration_steps"):
        forecaster.predict_quantiles(3)
    shorter = LSTMForecaster(seasonal_period=12, calibration_steps=2, **TINY)
    assert shorter.fit(growing(40)).predict_interval(3).shape == (3, 2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(coverage=0.0), ValueError, "between 0 and 1"),
        (dict(coverage=90), ValueError, "between 0 and 1"),
        (dict(coverage=True), TypeError, "number"),
        (dict(coverage="0.9"), TypeError, "number"),
    ],
)
def test_bad_coverage(fitted_list, kwargs, error, match):
    with pytest.raises(error, match=match):
        fitted_list.predict_interval(3, **kwargs)


@pytest.mark.parametrize(
    "quantiles, error, match",
    [
        ([0.1, 1.0], ValueError, "strictly between 0 and 1"),
        ([], ValueError, "empty"),
        ([[0.1, 0.9]], ValueError, "1-D"),
        ("median", TypeError, "numbers"),
        ([0.1, np.nan], ValueError, "strictly between"),
    ],
)
def test_bad_quantiles(fitted_list, quantiles, error, match):
    with pytest.raises(error, match=match):
        fitted_list.predict_quantiles(3, quantiles=quantiles)


# ----------------------------------------------------------------------
# bad lists


@pytest.mark.parametrize(
    "y, X, error, match",
    [
        ([], None, ValueError, "empty list"),
        ([growing(40), np.r_[growing(30), np.nan]], None, ValueError, r"y\[1\].*NaN"),
        ([growing(40), growing(40)[:, None]], None, ValueError, r"y\[1\] is 2-D"),
        (
            [np.ones((40, 2)), np.ones((40, 3))],
            None,
            ValueError,
            r"y\[1\] has 3 columns",
        ),
        ([growing(40), 5.0], None, TypeError, r"y\[1\] is a float"),
        ([growing(40), growing(9)], None, ValueError, r"y\[1\] has 9 time steps"),
        (
            [growing(40), growing(50)],
            [np.ones((40, 1)), np.ones((49, 1))],
            ValueError,
            r"X\[1\] has 49 rows but y\[1\] has 50",
        ),
        ([growing(40), growing(50)], np.ones((40, 1)), TypeError, "X must be a list"),
        ([growing(40), growing(50)], [np.ones((40, 1))], ValueError, "1 arrays"),
        (
            [growing(40), growing(50)],
            [np.ones((40, 1)), np.ones((50, 2))],
            ValueError,
            r"X\[1\] has 2 columns",
        ),
        (
            [growing(40), -growing(50)],
            None,
            ValueError,
            r"y\[1\] holds values <= 0",
        ),
    ],
)
def test_bad_lists_name_the_series(y, X, error, match):
    params = dict(TINY)
    if "<= 0" in match:
        params["log_transform"] = True
    with pytest.raises(error, match=match):
        LSTMForecaster(**params).fit(y, X)

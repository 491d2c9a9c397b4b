"""Tests for sklstm.forecasting: windows, seasonality, LSTMForecaster."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import TimeSeriesSplit, cross_val_score
from skorch.callbacks import Callback

from sklstm.forecasting import LSTMForecaster, detect_seasonal_period, make_windows

FAST = dict(max_epochs=3, hidden_size=8, random_state=0)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # These networks are tiny: extra intra-op threads only wait on each other
    # (measured 7x slower with 2 threads on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seasonal_series(n_timesteps=72, period=12, level=10.0, seed=0):
    """Sine of the given period on a linear trend, with a little noise."""
    rng = np.random.RandomState(seed)
    t = np.arange(n_timesteps)
    return (
        level
        + 0.05 * t
        + np.sin(2 * np.pi * t / period)
        + 0.05 * rng.normal(size=n_timesteps)
    )


# ----------------------------------------------------------------------
# make_windows


@pytest.mark.parametrize("window_length, horizon", [(5, 1), (8, 3), (1, 1)])
def test_make_windows_shapes_and_values(window_length, horizon):
    y = np.arange(30.0)
    windows, targets = make_windows(y, window_length, horizon)
    n_windows = len(y) - window_length - horizon + 1
    assert windows.shape == (n_windows, window_length, 1)
    assert targets.shape == (n_windows, horizon)
    for i in (0, n_windows - 1):
        np.testing.assert_array_equal(windows[i, :, 0], y[i : i + window_length])
        end = i + window_length
        np.testing.assert_array_equal(targets[i], y[end : end + horizon])


def test_make_windows_multiple_series():
    y = np.arange(40.0).reshape(20, 2)
    windows, targets = make_windows(y, 4, horizon=2)
    assert windows.shape == (15, 4, 2)
    assert targets.shape == (15, 2, 2)
    np.testing.assert_array_equal(targets[3], y[7:9])


def test_make_windows_exogenous_is_shifted_one_step_ahead():
    y = np.arange(20.0)
    X = 100 + np.arange(40.0).reshape(20, 2)
    windows, targets = make_windows(y, 5, horizon=2, X=X)
    assert windows.shape == (14, 5, 3)
    # The window ending with y[t - 1] carries X up to row t.
    np.testing.assert_array_equal(windows[0, :, 0], y[0:5])
    np.testing.assert_array_equal(windows[0, :, 1:], X[1:6])
    np.testing.assert_array_equal(targets[0], y[5:7])


def test_make_windows_accepts_lists_and_pandas():
    pandas = pytest.importorskip("pandas")
    values = list(range(12))
    from_list = make_windows(values, 3)
    from_series = make_windows(pandas.Series(values), 3)
    np.testing.assert_array_equal(from_list[0], from_series[0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(y=np.arange(5.0), window_length=4, horizon=2), ValueError, "too few"),
        (dict(y=np.array([1.0, np.nan, 3, 4, 5]), window_length=2), ValueError, "NaN"),
        (dict(y=np.array([1.0, np.inf, 3, 4]), window_length=2), ValueError, "infin"),
        (dict(y=np.zeros((4, 3, 2)), window_length=2), ValueError, "1-D"),
        (dict(y=np.array([]), window_length=2), ValueError, "empty"),
        (dict(y=np.arange(10.0), window_length=0), ValueError, "window_length"),
        (dict(y=np.arange(10.0), window_length=2.5), TypeError, "window_length"),
        (dict(y=np.arange(10.0), window_length=2, horizon=0), ValueError, "horizon"),
        (
            dict(y=np.arange(10.0), window_length=2, X=np.zeros((9, 1))),
            ValueError,
            "rows",
        ),
        (dict(y=["a", "b", "c"], window_length=1), TypeError, "numbers"),
        (dict(y=5.0, window_length=1), TypeError, "array-like"),
    ],
)
def test_make_windows_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_windows(**kwargs)


# ----------------------------------------------------------------------
# seasonality


@pytest.mark.parametrize("period", [4, 7, 12])
def test_detect_seasonal_period_finds_the_season(period):
    assert detect_seasonal_period(seasonal_series(96, period=period)) == period


def test_detect_seasonal_period_none_without_season():
    rng = np.random.RandomState(1)
    assert detect_seasonal_period(np.cumsum(rng.normal(size=100))) is None
    assert detect_seasonal_period(np.ones(50)) is None


# ----------------------------------------------------------------------
# LSTMForecaster: basics


def test_forecaster_resolves_automatic_preprocessing():
    forecaster = LSTMForecaster(**FAST).fit(seasonal_series())
    assert forecaster.log_transform_ is True  # positive series
    assert forecaster.seasonal_period_ == 12
    assert forecaster.window_length_ == 24
    assert forecaster.horizon_ == 12
    assert forecaster.target_reference_ == "seasonal"
    assert forecaster.n_windows_ == 72 - 24 - 12 + 1
    assert forecaster.regressor_.n_outputs_ == 12

    negative = seasonal_series(level=-20.0)
    forecaster = LSTMForecaster(strategy="recursive", **FAST).fit(negative)
    assert forecaster.log_transform_ is False
    assert forecaster.horizon_ == 1


def test_forecaster_without_season_falls_back_to_last_value_reference():
    rng = np.random.RandomState(0)
    y = np.cumsum(rng.normal(size=60))
    forecaster = LSTMForecaster(**FAST).fit(y)
    assert forecaster.seasonal_period_ is None
    assert forecaster.target_reference_ == "last"
    assert forecaster.window_length_ == 10
    assert forecaster.horizon_ == 5


def test_automatic_window_shrinks_on_a_short_series():
    forecaster = LSTMForecaster(seasonal_period=12, **FAST).fit(seasonal_series(40))
    assert 12 <= forecaster.window_length_ < 24
    assert forecaster.n_windows_ >= 8


@pytest.mark.parametrize("strategy", ["direct", "recursive"])
@pytest.mark.parametrize("steps", [1, 5, 30])
def test_predict_shape_beyond_the_horizon(strategy, steps):
    forecaster = LSTMForecaster(strategy=strategy, **FAST).fit(seasonal_series())
    forecast = forecaster.predict(steps)
    assert forecast.shape == (steps,)
    assert np.isfinite(forecast).all()


def test_direct_chaining_extends_the_first_block():
    # A longer forecast starts with the shorter one: chaining only appends.
    forecaster = LSTMForecaster(**FAST).fit(seasonal_series())
    short = forecaster.predict(forecaster.horizon_)
    long = forecaster.predict(3 * forecaster.horizon_ + 1)
    np.testing.assert_allclose(long[: len(short)], short)


def test_recursive_prefix_is_stable():
    forecaster = LSTMForecaster(strategy="recursive", **FAST).fit(seasonal_series())
    np.testing.assert_allclose(forecaster.predict(20)[:7], forecaster.predict(7))


def test_multiple_series():
    y = np.column_stack([seasonal_series(), seasonal_series(level=20.0, seed=1)])
    for strategy in ("direct", "recursive"):
        forecaster = LSTMForecaster(strategy=strategy, **FAST).fit(y)
        assert forecaster.n_series_ == 2
        assert forecaster.predict(15).shape == (15, 2)


def test_forecast_beats_repeating_the_last_value():
    y = seasonal_series(96)
    train, test = y[:72], y[72:]
    forecaster = LSTMForecaster(max_epochs=30, hidden_size=16, random_state=0)
    forecast = forecaster.fit(train).predict(len(test))
    naive = np.full(len(test), train[-1])
    assert np.abs(forecast - test).mean() < np.abs(naive - test).mean()


def test_same_random_state_same_forecast():
    y = seasonal_series()
    first = LSTMForecaster(**FAST).fit(y).predict(6)
    second = LSTMForecaster(**FAST).fit(y).predict(6)
    np.testing.assert_array_equal(first, second)


def test_exogenous_future_values_are_used():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 1))
    y = seasonal_series(80) + X[:, 0]
    forecaster = LSTMForecaster(strategy="recursive", **FAST).fit(y, X)
    assert forecaster.n_exogenous_ == 1
    future = rng.normal(size=(10, 1))
    first = forecaster.predict(10, X=future)
    second = forecaster.predict(10, X=future + 5.0)
    assert first.shape == (10,)
    assert not np.allclose(first, second)
    # Extra future rows beyond the forecast are allowed and ignored.
    np.testing.assert_allclose(forecaster.predict(10, X=np.vstack([future] * 2)), first)


def test_direct_with_exogenous_chains():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 2))
    forecaster = LSTMForecaster(**FAST).fit(seasonal_series(80), X)
    assert forecaster.predict(30, X=rng.normal(size=(30, 2))).shape == (30,)


# ----------------------------------------------------------------------
# scikit-learn conventions


def test_get_params_and_clone():
    forecaster = LSTMForecaster(strategy="recursive", hidden_size=5, lr=0.01)
    params = forecaster.get_params()
    assert params["strategy"] == "recursive"
    assert params["hidden_size"] == 5
    twin = clone(forecaster)
    assert twin.get_params() == params
    assert not hasattr(twin, "regressor_")


def test_every_regressor_parameter_is_forwarded():
    from sklstm import LSTMRegressor
    from sklstm.forecasting import _NOT_FORWARDED

    regressor_params = set(LSTMRegressor().get_params()) - _NOT_FORWARDED
    assert regressor_params <= set(LSTMForecaster().get_params())
    # Only the output mode, the options of tabular input, length_aware (all
    # windows are equally long), the regressor's interval widths (the
    # forecaster's intervals do not use them yet), time warping (a warped
    # window no longer leads up to its targets), the regressor's calibration
    # (the forecaster calibrates its own way) and differences (not tried on
    # forecasting windows) stay behind.
    assert _NOT_FORWARDED == {
        "output_mode",
        "categorical_features",
        "static_features",
        "embedding_size",
        "min_frequency",
        "time_deltas",
        "length_aware",
        "interval_width",
        "time_warp",
        "calibration",
        "differences",
    }
    # Its networks calibrate nothing of their own, so they train no further
    # networks for it.
    assert (
        LSTMForecaster(early_stopping=True)._regressor_parameters()["calibration"]
        == "split"
    )
    forecaster = LSTMForecaster(
        cell="gru", weight_decay=1e-3, weight_averaging=0.9, **FAST
    )
    forecaster.fit(seasonal_series())
    assert forecaster.regressor_.weight_averaging == 0.9
    assert forecaster.regressor_.cell == "gru"
    assert forecaster.regressor_.weight_decay == 1e-3
    assert forecaster.regressor_.max_epochs == 3


def test_pickle_round_trip():
    forecaster = LSTMForecaster(**FAST).fit(seasonal_series())
    restored = pickle.loads(pickle.dumps(forecaster))
    np.testing.assert_allclose(restored.predict(8), forecaster.predict(8))


def test_warm_start_continues_training():
    y = seasonal_series()
    forecaster = LSTMForecaster(warm_start=True, **FAST).fit(y[:60])
    first = forecaster.regressor_.net_.module_.state_dict()
    forecaster.fit(y)
    assert forecaster.regressor_.n_iter_ == 2 * FAST["max_epochs"]
    # It went on from the first fit's weights: the continued network's
    # history holds both fits' epochs, and its weights moved.
    assert len(forecaster.regressor_.loss_curve_) == 2 * FAST["max_epochs"]
    moved = forecaster.regressor_.net_.module_.state_dict()
    assert any(not torch.equal(first[name], moved[name]) for name in first)
    assert forecaster.n_timesteps_ == len(y)
    with pytest.raises(ValueError, match="warm_start"):
        forecaster.fit(np.column_stack([y, y]))


# ----------------------------------------------------------------------
# several networks, averaged


def test_auto_averages_five_networks_on_few_windows_and_one_on_many():
    few = LSTMForecaster(**FAST).fit(seasonal_series())
    assert few.n_windows_ < 500
    assert few.n_networks_ == len(few.regressors_) == 5
    assert few.regressor_ is few.regressors_[0]
    seeds = [regressor.random_state for regressor in few.regressors_]
    assert len(set(seeds)) == 5
    rng = np.random.RandomState(0)
    many = LSTMForecaster(seasonal_period=None, **FAST).fit(
        np.cumsum(rng.normal(size=600)) + 100
    )
    assert many.n_windows_ >= 500
    assert many.n_networks_ == 1
    # One network is seeded as the forecaster is.
    assert many.regressor_.random_state == FAST["random_state"]


def test_forecast_is_the_mean_of_the_networks():
    y = seasonal_series()
    settings = dict(log_transform=False, calibration_steps=None, **FAST)
    averaged = LSTMForecaster(n_networks=3, **settings).fit(y)
    seeds = [regressor.random_state for regressor in averaged.regressors_]
    # Within one horizon, the forecast is an affine map of the networks'
    # mean output: the mean of single-network forecasts with their seeds.
    singles = [
        LSTMForecaster(n_networks=1, **{**settings, "random_state": seed})
        .fit(y)
        .predict(averaged.horizon_)
        for seed in seeds
    ]
    np.testing.assert_allclose(
        averaged.predict(averaged.horizon_), np.mean(singles, axis=0), rtol=1e-5
    )
    again = LSTMForecaster(n_networks=3, **settings).fit(y)
    np.testing.assert_array_equal(again.predict(8), averaged.predict(8))
    other = LSTMForecaster(n_networks=3, **{**settings, "random_state": 1}).fit(y)
    assert not np.allclose(other.predict(8), averaged.predict(8))


def test_warm_start_continues_every_network_and_refuses_another_count():
    y = seasonal_series()
    forecaster = LSTMForecaster(n_networks=2, warm_start=True, **FAST).fit(y[:60])
    seeds = [regressor.random_state for regressor in forecaster.regressors_]
    forecaster.fit(y)
    assert [r.random_state for r in forecaster.regressors_] == seeds
    assert all(r.n_iter_ == 2 * FAST["max_epochs"] for r in forecaster.regressors_)
    before = forecaster.predict(6)
    forecaster.set_params(n_networks=3)
    with pytest.raises(ValueError, match="n_networks=3.*continue them"):
        forecaster.fit(y)
    np.testing.assert_array_equal(forecaster.predict(6), before)
    forecaster.set_params(n_networks="auto").fit(y)
    assert [r.random_state for r in forecaster.regressors_] == seeds
    assert all(r.n_iter_ == 3 * FAST["max_epochs"] for r in forecaster.regressors_)


class FailOnTraining(Callback):
    """Raises when the ``fail_at``-th network (counting from 1) starts training."""

    def __init__(self, fail_at):
        self.fail_at = fail_at
        self.started = 0

    def on_train_begin(self, net, **kwargs):
        self.started += 1
        if self.started == self.fail_at:
            raise RuntimeError("this network fails")


def test_a_failing_network_leaves_every_fitted_network_as_it_was():
    y = seasonal_series()
    forecaster = LSTMForecaster(n_networks=2, warm_start=True, **FAST).fit(y[:60])
    before = forecaster.predict(6)
    iterations = [regressor.n_iter_ for regressor in forecaster.regressors_]
    # Two calibration networks train first, then the two fitted ones: the
    # second of those fails after the first has trained on.
    forecaster.set_params(callbacks=[FailOnTraining(fail_at=4)])
    with pytest.raises(RuntimeError, match="this network fails"):
        forecaster.fit(y)
    assert [r.n_iter_ for r in forecaster.regressors_] == iterations
    assert forecaster.n_timesteps_ == 60
    np.testing.assert_array_equal(forecaster.predict(6), before)


@pytest.mark.parametrize("value", [0, -1, 2.5, "many", None])
def test_bad_n_networks_is_refused(value):
    with pytest.raises((ValueError, TypeError), match="n_networks"):
        LSTMForecaster(n_networks=value, **FAST).fit(seasonal_series())


def test_forecaster_pickled_before_several_networks_still_forecasts():
    y = seasonal_series()
    forecaster = LSTMForecaster(n_networks=1, warm_start=True, **FAST).fit(y[:60])
    expected = forecaster.predict(8)
    state = forecaster.__dict__.copy()
    del state["regressors_"], state["n_networks_"]
    old = LSTMForecaster.__new__(LSTMForecaster)
    old.__dict__.update(state)
    np.testing.assert_array_equal(old.predict(8), expected)
    # warm_start continues its one network.
    old.fit(y)
    assert old.regressors_[0].n_iter_ == 2 * FAST["max_epochs"]


# ----------------------------------------------------------------------
# time-series evaluation without look-ahead


def test_time_series_split_has_no_look_ahead():
    y = seasonal_series(96)
    for train, test in TimeSeriesSplit(n_splits=3, test_size=12).split(y):
        forecaster = LSTMForecaster(**FAST)
        forecast = forecaster.fit(y[train]).predict(len(test))
        # Wreck everything after the fold's training end: the forecast must
        # not move.
        altered = y.copy()
        altered[train[-1] + 1 :] = 1e3
        again = clone(forecaster).fit(altered[train]).predict(len(test))
        np.testing.assert_array_equal(forecast, again)
        assert forecaster.n_timesteps_ == train[-1] + 1


def test_cross_val_score_with_time_series_split():
    y = seasonal_series(96)
    scores = cross_val_score(
        LSTMForecaster(**FAST), y, cv=TimeSeriesSplit(n_splits=2, test_size=12)
    )
    assert scores.shape == (2,)
    assert np.isfinite(scores).all()


# ----------------------------------------------------------------------
# errors


@pytest.fixture(scope="module")
def fitted():
    return LSTMForecaster(**FAST).fit(seasonal_series())


@pytest.mark.parametrize(
    "steps, error, match",
    [
        (0, ValueError, "at least 1"),
        (-3, ValueError, "at least 1"),
        (2.0, TypeError, "int"),
        ("3", TypeError, "int"),
        (True, TypeError, "int"),
    ],
)
def test_predict_rejects_bad_steps(fitted, steps, error, match):
    with pytest.raises(error, match=match):
        fitted.predict(steps)


def test_predict_rejects_unexpected_exogenous(fitted):
    with pytest.raises(ValueError, match="without exogenous"):
        fitted.predict(3, X=np.zeros((3, 1)))


def test_predict_needs_future_exogenous():
    rng = np.random.RandomState(0)
    forecaster = LSTMForecaster(**FAST).fit(seasonal_series(), rng.normal(size=(72, 2)))
    with pytest.raises(ValueError, match=r"pass X of shape \(4, 2\)"):
        forecaster.predict(4)
    with pytest.raises(ValueError, match="columns"):
        forecaster.predict(4, X=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="rows"):
        forecaster.predict(4, X=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        forecaster.predict(4, X=np.full((4, 2), np.nan))


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        LSTMForecaster().predict(3)


@pytest.mark.parametrize(
    "y, params, match",
    [
        (seasonal_series()[:20], dict(window_length=18, horizon=5), "too few"),
        (np.r_[seasonal_series()[:30], np.nan], {}, "NaN"),
        (np.zeros((10, 2, 2)), {}, "1-D"),
        (seasonal_series(level=-20.0), dict(log_transform=True), "strictly positive"),
        (
            seasonal_series(),
            dict(seasonal_period=None, target_reference="seasonal"),
            "needs a seasonal period",
        ),
        (
            seasonal_series(),
            dict(seasonal_period=12, window_length=6, target_reference="seasonal"),
            "span a season",
        ),
        (seasonal_series(), dict(strategy="closed"), "strategy"),
        (seasonal_series(), dict(window_length=0), "window_length"),
        (seasonal_series(), dict(seasonal_period=1), "seasonal_period"),
        (seasonal_series(), dict(lr=-1.0), "lr"),
    ],
)
def test_fit_errors(y, params, match):
    with pytest.raises(ValueError, match=match):
        LSTMForecaster(**{**FAST, **params}).fit(y)


def test_fit_rejects_misaligned_exogenous():
    with pytest.raises(ValueError, match="one row of X per time step"):
        LSTMForecaster(**FAST).fit(seasonal_series(), np.zeros((70, 1)))


def test_forecaster_is_exported_at_top_level():
    import sklstm

    assert sklstm.LSTMForecaster is LSTMForecaster
    assert "LSTMForecaster" in sklstm.__all__


# ----------------------------------------------------------------------
# series near the float limits

TINY = dict(max_epochs=2, hidden_size=4, random_state=0)
LARGEST = np.finfo(np.float64).max


def around_one(n_timesteps=72, seed=0):
    """A seasonal series between about 0.6 and 1.4 (strictly positive)."""
    rng = np.random.RandomState(seed)
    t = np.arange(n_timesteps)
    return 1 + 0.3 * np.sin(2 * np.pi * t / 12) + 0.05 * rng.normal(size=n_timesteps)


def around_zero(n_timesteps=72, seed=0):
    """A seasonal series of both signs, largest magnitude about 0.4."""
    return around_one(n_timesteps, seed) - 1


def alternating_extremes(n_timesteps=72):
    t = np.arange(n_timesteps)
    return np.where((t // 6) % 2 == 0, 1e-300, 1e300)


# Each case broke before the series was rescaled: an OverflowError in the
# season detection, float32 infinities in the regressor, inf from exp, or
# forecasts of order 1 for a series of order 1e-300.
EXTREME_SERIES = {
    "huge positive (log)": (1e300 * around_one(), None, {}),
    "huge positive (no log)": (1e300 * around_one(), None, dict(log_transform=False)),
    "huge negative": (-1e300 * around_one(), None, {}),
    "mixed signs at the limit": (1e308 * around_zero(), None, {}),
    "past float32": (1e39 * around_zero(), None, {}),
    "past float32 (positive, no log)": (
        3e38 * around_one(),
        None,
        dict(log_transform=False),
    ),
    "tiny": (1e-300 * around_zero(), None, {}),
    "tiny positive": (1e-300 * around_one(), None, {}),
    "1e-300 beside 1e300": (alternating_extremes(), None, {}),
    "constant 1e308": (np.full(72, 1e308), None, {}),
    "constant -1e308": (np.full(72, -1e308), None, {}),
    "constant at the largest float": (np.full(72, LARGEST), None, {}),
    "growing past the largest float": (np.geomspace(1e300, 1.7e308, 72), None, {}),
    "huge and ordinary series together": (
        np.column_stack([1e300 * around_zero(), around_zero(seed=1)]),
        None,
        {},
    ),
    "huge exogenous X": (
        around_zero(),
        1e300 * np.random.RandomState(0).normal(size=(79, 2)),
        {},
    ),
    "constant huge exogenous X": (around_zero(), np.full((79, 1), 1e308), {}),
}


@pytest.mark.parametrize("strategy", ["direct", "recursive"])
@pytest.mark.parametrize("case", list(EXTREME_SERIES))
def test_series_near_the_float_limits_forecast_finite_values(case, strategy):
    y, X, params = EXTREME_SERIES[case]
    fit_X, future_X = (None, None) if X is None else (X[: len(y)], X[len(y) :])
    forecaster = LSTMForecaster(strategy=strategy, **TINY, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning either
        forecast = forecaster.fit(y, fit_X).predict(7, X=future_X)
    assert np.isfinite(forecast).all()
    # Of the series' order of magnitude: within its range widened by twice its
    # largest magnitude (compared relative to that magnitude, which cannot
    # overflow).
    largest = np.abs(y).max()
    relative = forecast / largest
    assert relative.min() >= y.min() / largest - 2
    assert relative.max() <= y.max() / largest + 2


@pytest.mark.parametrize("exponent", [1000, -1000])
@pytest.mark.parametrize("strategy", ["direct", "recursive"])
def test_extreme_series_forecasts_as_its_rescaled_twin(exponent, strategy):
    # The rescaling is by a power of two, which is exact: a series at 2**1000
    # forecasts bit for bit what its twin near 1 does, scaled back.
    twin = around_zero(84)
    extreme = np.ldexp(twin, exponent)
    first = LSTMForecaster(strategy=strategy, **TINY).fit(extreme[:72])
    second = LSTMForecaster(strategy=strategy, **TINY).fit(twin[:72])
    np.testing.assert_array_equal(
        first.predict(9), np.ldexp(second.predict(9), exponent)
    )
    assert first.score(extreme[72:]) == second.score(twin[72:])


def test_ordinary_series_are_not_rescaled():
    # Scale factor 1 (exponent 0): ordinary series are modelled exactly as
    # before extreme ones were rescaled, their forecasts unchanged bit for bit.
    for y in (
        around_zero(),
        seasonal_series(),
        1e12 * around_zero(),
        1e-6 * around_zero(),
    ):
        forecaster = LSTMForecaster(**TINY).fit(y)
        assert forecaster._states[0].scaling.exponents.tolist() == [0]


def test_detect_seasonal_period_near_the_float_limits():
    y = around_zero(96)
    for scale in (1e-300, 1e300, 1e308):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert detect_seasonal_period(scale * y) == 12
    assert detect_seasonal_period(np.full(50, LARGEST)) is None


def test_warm_start_rescales_a_series_far_beyond_the_first():
    # Each fit takes the scaling of its own series (the network sees them
    # scale-free), so continuing on a series 1e300 times larger works.
    forecaster = LSTMForecaster(warm_start=True, **TINY).fit(around_zero())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forecast = forecaster.fit(1e300 * around_zero()).predict(5)
    assert np.isfinite(forecast).all()
    assert 1e298 < np.abs(forecast).max() < 1e301


def test_future_exogenous_far_beyond_fit_is_refused_naming_X():
    # X is rescaled with the factor fitted on its first values; future values
    # 1e300 times larger do not fit the network's float32.
    rng = np.random.RandomState(0)
    forecaster = LSTMForecaster(**TINY).fit(around_zero(), rng.normal(size=(72, 1)))
    with pytest.raises(ValueError, match="X contains infinity or a value too large"):
        forecaster.predict(3, X=np.full((3, 1), 1e300))

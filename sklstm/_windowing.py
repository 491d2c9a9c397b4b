"""Series validation, windowing, season detection and the forecaster's
automatic settings."""

from __future__ import annotations

from collections import Counter
from numbers import Integral

import numpy as np

from ._typing import ArrayLike

# Seasonality is accepted when the autocorrelation of the differenced series
# peaks above this value: comfortably above the ~2/sqrt(n) noise band of the
# series lengths forecasting is used on, below the 0.5-0.9 of clear seasons.
_SEASONALITY_THRESHOLD = 0.3

# Columns whose largest magnitude lies in this range are used as given.
# Above it the arithmetic of forecasting runs out of range (a variance squares
# values, overflowing float64 from ~1e154; differences of values beyond ~1e38
# overflow the network's float32); below it the regressor's absolute floors
# on a spread (1e-12 for targets, 1e-8 for inputs) take the series for a
# constant. Leaving the range between alone keeps ordinary series' results
# bit for bit.
_ORDINARY_MAGNITUDE = (2.0**-32, 2.0**64)

# The fewest training windows the automatic window length aims to leave.
_MIN_AUTO_WINDOWS = 8


def check_series(values, name, *, fix):
    """Validate a series-like input; return a 2-D float64 array and its ndim."""
    if values is None:
        raise ValueError(f"{name} is None. {fix}")
    if isinstance(values, str) or not hasattr(values, "__len__"):
        raise TypeError(
            f"{name} must be array-like (a list, NumPy array, pandas Series or "
            f"DataFrame), got {type(values).__name__}. {fix}"
        )
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must hold numbers; converting it to float failed ({error})."
        ) from None
    if array.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (n_timesteps,) or 2-D (n_timesteps, n_columns), "
            f"got an array of shape {array.shape}. {fix}"
        )
    if array.shape[0] == 0 or (array.ndim == 2 and array.shape[1] == 0):
        raise ValueError(f"{name} is empty (shape {array.shape}). {fix}")
    if np.isnan(array).any():
        raise ValueError(
            f"{name} contains NaN. Fill or interpolate the missing values first "
            "(e.g. pandas' Series.interpolate)."
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains infinity; pass finite values.")
    ndim = array.ndim
    return array.reshape(len(array), -1), ndim


def magnitude_exponents(values):
    """Per column, the power of two that brings an extreme column near 1.

    ``np.ldexp(values, -exponents)`` rescales: a column whose largest
    magnitude is ordinary (or zero) gets exponent 0 and stays as it is; any
    other gets the exponent that brings its largest magnitude into [0.5, 1).
    A power of two rescales exactly (only values below ~1e-308 of the
    column's largest vanish beside it) and the network sees its inputs and
    targets standardised, so rescaling changes nothing but the range the
    arithmetic runs in.
    """
    largest = np.abs(values).max(axis=0)
    _, exponents = np.frexp(largest)
    low, high = _ORDINARY_MAGNITUDE
    extreme = (largest > 0) & ((largest < low) | (largest > high))
    return np.where(extreme, exponents, 0)


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}.")
    return int(value)


def cut_windows(series, exogenous, window_length, horizon):
    """Windows and targets from validated 2-D arrays; no checks."""
    n_windows = len(series) - window_length - horizon + 1
    starts = np.arange(n_windows)[:, None]
    steps = starts + np.arange(window_length)
    windows = series[steps]
    if exogenous is not None:
        windows = np.concatenate([windows, exogenous[steps + 1]], axis=2)
    targets = series[starts + window_length + np.arange(horizon)]
    return windows, targets


def make_windows(
    y: ArrayLike, window_length: int, horizon: int = 1, X: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a time series into training windows and the values that follow them.

    Window ``i`` holds ``y[i : i + window_length]``; its target is the next
    ``horizon`` values, ``y[i + window_length : i + window_length + horizon]``.
    Exogenous ``X`` is appended to each window as extra features, shifted one
    step ahead: row ``t`` of ``X`` is assumed known before ``y[t]``, so the
    window ending with ``y[t - 1]`` carries ``X[t - window_length + 1 : t + 1]``.

    Parameters
    ----------
    y : array-like of shape (n_timesteps,) or (n_timesteps, n_series)
        The series, oldest value first.
    window_length : int
        Time steps per window.
    horizon : int, default=1
        Future values per target.
    X : array-like of shape (n_timesteps, n_exogenous), default=None
        Exogenous values, one row per time step of ``y``.

    Returns
    -------
    windows : ndarray of shape (n_windows, window_length, n_features)
        ``n_features`` is ``n_series + n_exogenous`` (``n_series`` is 1 for a
        1-D ``y``); ``n_windows = n_timesteps - window_length - horizon + 1``.
    targets : ndarray of shape (n_windows, horizon) or \
            (n_windows, horizon, n_series)
        The values after each window; 2-D for a 1-D ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklstm.forecasting import make_windows
    >>> windows, targets = make_windows(np.arange(10), window_length=3, horizon=2)
    >>> windows.shape, targets.shape
    ((6, 3, 1), (6, 2))
    >>> windows[0, :, 0], targets[0]
    (array([0., 1., 2.]), array([3., 4.]))
    """
    fix = "Pass the series as y, one value (or row) per time step."
    series, ndim = check_series(y, "y", fix=fix)
    window_length = check_positive_int(window_length, "window_length")
    horizon = check_positive_int(horizon, "horizon")
    exogenous = None
    if X is not None:
        exogenous, _ = check_series(
            X, "X", fix="Pass exogenous values as (n_timesteps, n_exogenous)."
        )
        if len(exogenous) != len(series):
            raise ValueError(
                f"X has {len(exogenous)} rows but y has {len(series)} time "
                "steps; pass one row of X per time step of y."
            )
    n_windows = len(series) - window_length - horizon + 1
    if n_windows < 1:
        raise ValueError(
            f"y has {len(series)} time steps, too few for window_length="
            f"{window_length} plus horizon={horizon}: at least "
            f"{window_length + horizon} are needed. Pass a longer series or "
            "a smaller window_length or horizon."
        )
    windows, targets = cut_windows(series, exogenous, window_length, horizon)
    if ndim == 1:
        targets = targets[..., 0]
    return windows, targets


def detect_seasonal_period(y: ArrayLike, max_period: int | None = None) -> int | None:
    """The dominant seasonal period of a series, or None when it has none.

    The rule: difference the series once (removing a trend), compute the
    autocorrelation of every series at lags 2 to ``max_period``, average it
    over the series, and return the lag of the highest local maximum if it
    exceeds 0.3. Apply any log transform before calling.

    Parameters
    ----------
    y : array-like of shape (n_timesteps,) or (n_timesteps, n_series)
        The series.
    max_period : int, default=None
        Longest period considered; defaults to a quarter of the series
        length, so that a window of two periods and a horizon of one still
        leave training windows.

    Returns
    -------
    period : int or None

    Examples
    --------
    >>> import numpy as np
    >>> from sklstm.forecasting import detect_seasonal_period
    >>> t = np.arange(120)
    >>> detect_seasonal_period(np.sin(2 * np.pi * t / 12) + 0.05 * t)
    12
    >>> detect_seasonal_period(np.random.RandomState(0).normal(size=120)) is None
    True
    """
    series, _ = check_series(y, "y", fix="Pass the series as y.")
    # The squares below would overflow for a series near the float limit;
    # the autocorrelation does not depend on the scale.
    series = np.ldexp(series, -magnitude_exponents(series))
    if max_period is None:
        max_period = len(series) // 4
    changes = np.diff(series, axis=0)
    changes = changes - changes.mean(axis=0)
    variance = (changes**2).sum(axis=0)
    varying = variance > 1e-12 * max(1.0, float(np.abs(series).max()) ** 2)
    if max_period < 2 or len(changes) < 4 or not varying.any():
        return None
    changes, variance = changes[:, varying], variance[varying]
    lags = np.arange(1, min(max_period, len(changes) - 1) + 2)
    acf = np.array(
        [
            ((changes[lag:] * changes[:-lag]).sum(axis=0) / variance).mean()
            for lag in lags
        ]
    )
    # Local maxima among lags 2..max_period (acf[i] is lag i + 1).
    best_lag, best_value = None, _SEASONALITY_THRESHOLD
    for index in range(1, len(lags) - 1):
        value = acf[index]
        if value > acf[index - 1] and value >= acf[index + 1] and value > best_value:
            best_lag, best_value = int(lags[index]), value
    return best_lag


def _most_common_period(periods):
    """The period most series show; ties go to the shorter, then to None."""
    counts = Counter(periods)
    return min(counts, key=lambda period: (-counts[period], period is None, period))


def resolve_settings(
    transformed,
    lengths,
    *,
    strategy,
    window_length,
    horizon,
    seasonal_period,
    target_reference,
    calibration_steps,
):
    """The forecaster's data-dependent settings shared by all its series.

    ``transformed`` holds each series after its log and power-of-two steps,
    ``lengths`` their lengths; the keywords are the forecaster's parameters.
    Returns its fitted attributes by name (see ``LSTMForecaster``).
    """
    if seasonal_period == "auto":
        period = _most_common_period(
            [detect_seasonal_period(values) for values in transformed]
        )
    else:
        period = seasonal_period

    automatic_window = window_length == "auto"
    if automatic_window:
        window = 2 * period if period is not None else 10
    else:
        window = window_length
    if horizon != "auto":
        direct_horizon = horizon
    elif period is not None:
        direct_horizon = period
    else:
        direct_horizon = max(1, window // 2)
    steps_ahead = 1 if strategy == "recursive" else direct_horizon

    if automatic_window:
        # Leave every series a window to learn from, and all of them enough
        # together, but keep at least one full season in view.
        lengths = np.asarray(lengths)
        one_each = lengths.min() - steps_ahead
        together = (np.sum(lengths - steps_ahead + 1) - _MIN_AUTO_WINDOWS) // len(
            lengths
        )
        window = max(min(window, one_each, together), period or 2)

    reference = target_reference
    if reference == "auto":
        use_season = period is not None and period <= window
        reference = "seasonal" if use_season else "last"
    elif reference == "seasonal":
        if period is None:
            raise ValueError(
                "target_reference='seasonal' needs a seasonal period, but "
                "none was given or detected. Pass seasonal_period=<int> or "
                "use target_reference='last'."
            )
        if period > window:
            raise ValueError(
                f"target_reference='seasonal' needs the window to span a "
                f"season: seasonal_period={period} > window_length="
                f"{window}. Raise window_length or use "
                "target_reference='last'."
            )
    if calibration_steps == "auto":
        calibration_steps = direct_horizon
    return {
        "seasonal_period_": period,
        "window_length_": int(window),
        "horizon_": int(steps_ahead),
        "target_reference_": reference,
        "calibration_steps_": (
            None if calibration_steps is None else int(calibration_steps)
        ),
    }

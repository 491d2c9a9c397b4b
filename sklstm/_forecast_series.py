"""The forecaster's series as its network sees them.

Validation of one series or a list of them (with their exogenous values),
the scaling each series gets on its own, the windows cut from it, and the
loop that forecasts any number of series at once. :mod:`sklstm.forecasting`
holds the estimator that strings these together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._windowing import check_series, cut_windows, magnitude_exponents

# Forecasts saturate at the largest float64: past it, a forecast (of a series
# at the limit, extrapolated outward) has no finite value to return.
_LARGEST_FLOAT = np.finfo(np.float64).max
_LOG_LARGEST_FLOAT = np.log(_LARGEST_FLOAT)


# ----------------------------------------------------------------------
# validation


def _is_array_like(value):
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes))


def is_series_list(values):
    """Whether ``values`` is a list of series rather than one series.

    A list or tuple whose items are array-likes (arrays, pandas objects,
    lists) holds one series per item, as the regressor's ragged input does;
    a list of numbers is one series.
    """
    if not isinstance(values, (list, tuple)):
        return False
    return len(values) == 0 or any(_is_array_like(item) for item in values)


def check_series_collection(values, name, *, fix):
    """Validate one series or a list of them.

    Returns the series as 2-D float64 arrays, whether a list was given, and
    the series' dimensionality (1 or 2, the same for every series).
    """
    if not is_series_list(values):
        array, ndim = check_series(values, name, fix=fix)
        return [array], False, ndim
    if len(values) == 0:
        raise ValueError(
            f"{name} is an empty list. Pass one series, or a list of at least "
            "one series."
        )
    arrays, ndims = [], []
    for index, item in enumerate(values):
        label = f"{name}[{index}]"
        if not _is_array_like(item):
            raise TypeError(
                f"{label} is a {type(item).__name__}, not a series: a list "
                "passed as y holds one series (an array) per item. Pass one "
                "series as a single array, or every item as an array."
            )
        array, ndim = check_series(item, label, fix=fix)
        if arrays and ndim != ndims[0]:
            raise ValueError(
                f"{label} is {ndim}-D but {name}[0] is {ndims[0]}-D. Pass every "
                "series with the same dimensions: all 1-D, or all 2-D with the "
                "same columns."
            )
        if arrays and array.shape[1] != arrays[0].shape[1]:
            raise ValueError(
                f"{label} has {array.shape[1]} columns but {name}[0] has "
                f"{arrays[0].shape[1]}. Pass every series with the same columns."
            )
        arrays.append(array)
        ndims.append(ndim)
    return arrays, True, ndims[0]


def check_exogenous_collection(X, lengths, is_list, *, extra_rows=0, fix):
    """Validate the exogenous values of each series, or None without them.

    ``X[i]`` needs ``lengths[i] + extra_rows`` rows: exactly that many when
    ``extra_rows`` is 0 (fit), at least that many otherwise (rows past the
    forecast are ignored).
    """
    if X is None:
        return None
    if not is_list:
        items, names = [X], ["X"]
    else:
        if not isinstance(X, (list, tuple)):
            raise TypeError(
                f"y is a list of {len(lengths)} series, so X must be a list too, "
                f"with one array of exogenous values per series; got "
                f"{type(X).__name__}. {fix}"
            )
        if len(X) != len(lengths):
            raise ValueError(
                f"X holds {len(X)} arrays but y holds {len(lengths)} series; "
                f"pass one array of exogenous values per series. {fix}"
            )
        items, names = list(X), [f"X[{index}]" for index in range(len(X))]
    arrays = []
    for item, label, length in zip(items, names, lengths, strict=True):
        array, _ = check_series(item, label, fix=fix)
        needed = length + extra_rows
        if extra_rows == 0 and len(array) != needed:
            series = "y" if label == "X" else f"y[{label[2:-1]}]"
            raise ValueError(
                f"{label} has {len(array)} rows but {series} has {length} time "
                f"steps; pass one row of {label} per time step of {series}."
            )
        if len(array) < needed:
            raise ValueError(f"{label} has {len(array)} rows but needs {needed}: {fix}")
        if arrays and array.shape[1] != arrays[0].shape[1]:
            raise ValueError(
                f"{label} has {array.shape[1]} columns but X[0] has "
                f"{arrays[0].shape[1]}; pass the same exogenous columns for "
                "every series."
            )
        arrays.append(array)
    return arrays


def forecast_exogenous(X, lengths, steps, as_list, *, n_exogenous, exponents, context):
    """The scaled exogenous values a forecast needs, checked against the fit.

    ``lengths`` are the contexts' lengths (zeros when forecasting from the
    fitted series, ``context=False``). Returns each series' rows (scaled, or
    None each without exogenous values) and the future rows, (n_series,
    steps, n_exogenous) or None.
    """
    if n_exogenous == 0:
        if X is not None:
            raise ValueError(
                "X was passed to predict but the forecaster was fitted "
                "without exogenous values; refit with fit(y, X) or drop X."
            )
        return [None] * len(lengths), None
    if context:
        needed = f"len(y) + {steps} rows, the context's rows followed by one per "
        fix = "pass the context's rows of X followed by one per forecast step."
    else:
        needed = f"shape ({steps}, {n_exogenous}), one row per "
        fix = f"pass X of shape ({steps}, {n_exogenous}), one row per forecast step."
    if X is None:
        each = f"X as a list of {len(lengths)} arrays, each of " if as_list else "X of "
        raise ValueError(
            f"The forecaster was fitted with {n_exogenous} exogenous columns, so "
            f"predict needs their values: pass {each}{needed}forecast step."
        )
    arrays = check_exogenous_collection(X, lengths, as_list, extra_rows=steps, fix=fix)
    if arrays[0].shape[1] != n_exogenous:
        raise ValueError(
            f"X has {arrays[0].shape[1]} columns but the forecaster was fitted "
            f"with {n_exogenous}; pass the same exogenous columns."
        )
    scaled = [np.ldexp(rows, -exponents) for rows in arrays]
    future = np.stack(
        [
            rows[length : length + steps]
            for rows, length in zip(scaled, lengths, strict=True)
        ]
    )
    return scaled, future


# ----------------------------------------------------------------------
# per-series scaling


@dataclass(frozen=True)
class SeriesScaling:
    """How one series is brought to the scale the network learns in.

    ``log``: whether it is modelled on the log scale; ``exponents``: the
    power of two per column that brings an extreme column near 1 (see
    :func:`~sklstm._windowing.magnitude_exponents`); ``scale``: per column,
    the mean absolute one-step change of the (log-)series after that, the
    unit in which the network sees the series' windows and targets.
    """

    log: bool
    exponents: np.ndarray
    scale: np.ndarray

    def transform(self, values):
        logged = np.log(values) if self.log else values
        return np.ldexp(logged, -self.exponents)

    def transform_outcomes(self, values):
        """``transform``, with values the log cannot take mapped to -inf.

        For observed outcomes (the held-out truth of a calibration): a
        series positive up to its forecast origin may reach 0 after it.
        """
        if not self.log:
            return self.transform(values)
        positive = values > 0
        logged = np.log(np.where(positive, values, 1.0))
        logged = np.where(positive, logged, -np.inf)
        return np.ldexp(logged, -self.exponents)

    def inverse(self, values):
        # Clipped first so that scaling back cannot overflow.
        limit = np.ldexp(_LARGEST_FLOAT, -np.maximum(self.exponents, 0))
        values = np.ldexp(np.clip(values, -limit, limit), self.exponents)
        if self.log:
            return np.exp(np.minimum(values, _LOG_LARGEST_FLOAT))
        return values


def fit_scaling(series, log_transform, name):
    """The :class:`SeriesScaling` of one validated 2-D series."""
    positive = bool((series > 0).all())
    if log_transform == "auto":
        log = positive
    elif log_transform and not positive:
        raise ValueError(
            f"log_transform=True needs strictly positive series, but {name} "
            "holds values <= 0. Use log_transform='auto' (the log scale for "
            "the positive series only) or False."
        )
    else:
        log = bool(log_transform)
    logged = np.log(series) if log else series
    exponents = magnitude_exponents(logged)
    return SeriesScaling(log, exponents, step_scale(np.ldexp(logged, -exponents)))


def step_scale(transformed):
    """Per column, the mean absolute one-step change (never 0).

    Dividing windows and targets by it makes what the network sees the same
    for a series and for that series times any factor, so that series of
    very different scales share one model (the regressor's own
    standardisation, over all windows, would let the largest dominate). A
    series without changes falls back to its largest magnitude, then to 1.
    """
    if len(transformed) > 1:
        scale = np.abs(np.diff(transformed, axis=0)).mean(axis=0)
    else:
        scale = np.zeros(transformed.shape[1])
    scale = np.where(scale > 0, scale, np.abs(transformed).max(axis=0))
    return np.where(scale > 0, scale, 1.0)


# ----------------------------------------------------------------------
# windows and forecasting


@dataclass(frozen=True)
class WindowLayout:
    """The fitted shape of the network's windows and targets."""

    window_length: int
    horizon: int
    seasonal_period: int | None
    target_reference: str
    n_columns: int

    def network_inputs(self, windows, scales):
        """Level-free, scale-free windows, and each target's reference.

        ``windows`` is (n_windows, window_length, n_columns + n_exogenous)
        in the transformed scale, ``scales`` (n_windows, n_columns) the step
        scale of each window's series; references are (n_windows, horizon,
        n_columns), in the transformed scale.
        """
        columns = self.n_columns
        values = windows[:, :, :columns]
        last = values[:, -1:, :]
        inputs = windows.copy()
        inputs[:, :, :columns] = (values - last) / scales[:, None, :]
        if self.target_reference == "seasonal":
            period = self.seasonal_period
            offsets = self.window_length - period + np.arange(self.horizon) % period
            references = values[:, offsets, :]
        else:
            references = np.repeat(last, self.horizon, axis=1)
        return inputs, references

    def n_windows(self, n_timesteps):
        return n_timesteps - self.window_length - self.horizon + 1

    def training_pairs(self, transformed, exogenous, scale):
        """Network inputs and flat targets from one transformed series."""
        windows, targets = cut_windows(
            transformed, exogenous, self.window_length, self.horizon
        )
        scales = np.broadcast_to(scale, (len(windows), self.n_columns))
        inputs, references = self.network_inputs(windows, scales)
        flat_targets = ((targets - references) / scale).reshape(len(windows), -1)
        return inputs, flat_targets


@dataclass(frozen=True)
class SeriesState:
    """What forecasting from the end of one series needs of it.

    ``history``: its last ``window_length`` values, transformed;
    ``exogenous``: the ``window_length - 1`` rows of (scaled) exogenous
    values before its forecast origin, or None.
    """

    scaling: SeriesScaling
    history: np.ndarray
    exogenous: np.ndarray | None


def series_state(series, exogenous, scaling, window_length):
    """The :class:`SeriesState` at the end of ``series`` (already validated).

    ``exogenous`` holds (at least) one scaled row per step of ``series``.
    """
    rows = None
    if exogenous is not None:
        end = len(series)
        rows = exogenous[end - window_length + 1 : end]
    return SeriesState(scaling, scaling.transform(series)[-window_length:], rows)


def forecast(predict, layout, states, future_exogenous, steps):
    """Forecast ``steps`` values after each state, in the transformed scale.

    ``predict`` maps network inputs to flat targets; ``future_exogenous`` is
    (n_states, steps, n_exogenous) or None. All series move together, one
    network call per block of ``horizon`` steps. Returns (n_states, steps,
    n_columns).
    """
    window_length = layout.window_length
    history = np.stack([state.history for state in states])
    scales = np.stack([state.scaling.scale for state in states])
    exogenous = None
    if future_exogenous is not None:
        exogenous = np.stack([state.exogenous for state in states])
    produced = 0
    while produced < steps:
        window = history[:, history.shape[1] - window_length :]
        if exogenous is not None:
            # The window ending at the forecast origin carries X up to the
            # first step it forecasts.
            past = exogenous[:, exogenous.shape[1] - (window_length - 1) :]
            rows = future_exogenous[:, produced : produced + 1]
            window = np.concatenate([window, np.concatenate([past, rows], 1)], 2)
        inputs, references = layout.network_inputs(window, scales)
        outputs = np.asarray(predict(inputs)).reshape(references.shape)
        block = (references + outputs * scales[:, None, :])[:, : steps - produced]
        history = np.concatenate([history, block], axis=1)
        if exogenous is not None:
            rows = future_exogenous[:, produced : produced + block.shape[1]]
            exogenous = np.concatenate([exogenous, rows], axis=1)
        produced += block.shape[1]
    return history[:, window_length:]


def training_data(layout, series, scalings, exogenous):
    """Network inputs and targets from every series long enough for a window."""
    inputs, targets = [], []
    for values, scaling, rows in zip(series, scalings, exogenous, strict=True):
        if layout.n_windows(len(values)) >= 1:
            pairs = layout.training_pairs(
                scaling.transform(values), rows, scaling.scale
            )
            inputs.append(pairs[0])
            targets.append(pairs[1])
    return np.concatenate(inputs), np.concatenate(targets)

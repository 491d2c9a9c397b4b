"""Forecasting the future steps of a time series with a recurrent network.

:func:`make_windows` cuts a series into the ``(windows, targets)`` pairs any
sequence regressor learns from; :class:`LSTMForecaster` does the whole job on
a raw series: transform, window, train an :class:`~sklstm.LSTMRegressor`, and
forecast beyond the end of the series, either a whole horizon at once
(``strategy="direct"``) or one step at a time with each prediction fed back as
input (``strategy="recursive"``, closed loop).

Conventions shared by both: ``y`` is ``(n_timesteps,)`` or
``(n_timesteps, n_series)``; the optional exogenous ``X`` is
``(n_timesteps, n_exogenous)`` and row ``t`` of ``X`` is taken to be known
before ``y[t]`` is observed (a calendar feature, a planned price). A window that
ends with ``y[t - 1]`` therefore carries ``X`` up to row ``t``, the first step
it forecasts.
"""

from __future__ import annotations

import inspect
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._docs import fill_doc
from ._regressor import LSTMRegressor
from ._typing import ArrayLike, Self
from ._windowing import (
    _ORDINARY_MAGNITUDE,
    check_positive_int,
    check_series,
    cut_windows,
    detect_seasonal_period,
    magnitude_exponents,
    make_windows,
)

__all__ = ["LSTMForecaster", "detect_seasonal_period", "make_windows"]

# Parameters of LSTMRegressor the forecaster does not pass on. The output
# mode makes no sense for forecasting: the network always maps one window to
# one target vector.
_NOT_FORWARDED = {
    "output_mode",
    # Windows of a series are numeric and aligned: no categorical, static or
    # time-stamped inputs to describe.
    "categorical_features",
    "static_features",
    "embedding_size",
    "min_frequency",
    "time_deltas",
    # The forecaster's own intervals are not built on the regressor's yet: a
    # scale head would train outputs nothing reads.
    "interval_width",
}

# The fewest training windows the automatic window length aims to leave.
_MIN_AUTO_WINDOWS = 8

# Forecasts saturate at the largest float64: past it, a forecast (of a series
# at the limit, extrapolated outward) has no finite value to return.
_LARGEST_FLOAT = np.finfo(np.float64).max
_LOG_LARGEST_FLOAT = np.log(_LARGEST_FLOAT)


def _regressor_parameter_names():
    names = inspect.signature(LSTMRegressor.__init__).parameters
    return [name for name in names if name not in {"self"} | _NOT_FORWARDED]


@fill_doc
class LSTMForecaster(BaseEstimator):
    """Forecast the next steps of a time series with an LSTM.

    ``fit(y)`` learns from a raw series; ``predict(steps)`` returns the
    ``steps`` values that follow its end. Underneath, the series is
    transformed, cut into windows (see :func:`make_windows`) and an
    :class:`~sklstm.LSTMRegressor` (``regressor_``) learns to map each window
    to the values after it.

    Preprocessing, in order (every rule adapts to the series):

    1. Log transform (``log_transform``): with "auto", applied when every
       value of ``y`` is strictly positive, so that multiplicative growth and
       seasonality become additive. Forecasts are mapped back with ``exp``.
    2. Seasonal period (``seasonal_period``): with "auto", found by
       :func:`detect_seasonal_period` on the (log-)series; None when the
       series shows no seasonality.
    3. Window length and horizon (``window_length``, ``horizon``): with
       "auto", two seasonal periods of history and a horizon of one period
       (without a period: 10 steps of history, a horizon of half that). The
       automatic window is shortened, down to one period, when the series is
       too short to leave 8 training windows.
    4. Level: each window of ``y`` is expressed relative to its own last
       value, so that the network sees shapes, not levels, and a trend moves
       no input out of the range seen in training.
    5. Targets (``target_reference``): the network predicts each future
       value minus a reference taken from the window: "last", its last value;
       "seasonal", the value one season earlier in the window's last full
       season (the seasonal-naive forecast). The network thus learns a
       correction to a simple forecast. "auto" uses "seasonal" when a
       seasonal period is in use, "last" otherwise.
    6. The regressor standardises the windows and targets it receives.

    Series near the float limits (say at 1e300 or 1e-300): after step 1, a
    series whose largest magnitude lies outside [2**-32, 2**64] is divided by
    the power of two that brings it near 1 (exactly, with no other effect on
    the forecast) and the forecasts are multiplied back; each column of ``X``
    likewise. Forecasts past the float64 range saturate at +-1.8e308.

    Exogenous ``X`` is appended to the windows without the level step; row
    ``t`` of ``X`` is assumed known before ``y[t]``, so forecasting needs its
    future rows.

    The parameters from ``hidden_size`` on are passed to the regressor, to
    which each window is one training sequence.

    Parameters
    ----------
    strategy : {"direct", "recursive"}, default="direct"
        "direct": the network predicts ``horizon`` steps at once; longer
        forecasts are chained, each block of ``horizon`` predictions becoming
        the history of the next. "recursive": the network predicts one step,
        which is appended to the history and fed back as input for the next
        (closed loop); ``horizon`` is then ignored.
    window_length : int or "auto", default="auto"
        Time steps of history per window; "auto" as described above.
    horizon : int or "auto", default="auto"
        Steps the network predicts per window with ``strategy="direct"``.
    seasonal_period : int, "auto" or None, default="auto"
        Length of the season; None for no seasonal handling.
    log_transform : bool or "auto", default="auto"
        Model the log of the series. True needs a strictly positive series.
    target_reference : {"auto", "last", "seasonal"}, default="auto"
        What the network's targets are measured from; "seasonal" needs a
        seasonal period no longer than the window.
    {hidden_size}
    {num_layers}
    {bidirectional}
    {cell}
    {dropout}
        A series gives few windows, so some regularisation pays.
    {pooling}
    {conv_filters}
    {conv_kernel_size}
    {conv_placement}
    {recurrent_stride}
    {forget_bias}
    {standardize}
    {sequence_norm}
        The windows are already measured relative to their last value, so
        they need it less.
    {max_epochs}
        A series gives few windows (about a hundred from ten years of
        monthly data), and long training overfits them.
    {batch_size}
    {lr}
    {optimizer}
    {weight_decay}
    {gradient_clip}
    {lr_schedule}
    {early_stopping}
        The score is the R^2 of the network's targets. Windows are held out
        at random, so validation windows overlap training ones in time.
    {validation_fraction}
    {n_iter_no_change}
    {tol}
    {warm_start}
        The fitted preprocessing (transform, period, window, horizon) is
        kept too, and the new series' last values become the forecast
        origin.
    {device}
    {precision}
    {n_threads}
    {random_state}
    {verbose}
    {callbacks}

    Attributes
    ----------
    regressor_ : LSTMRegressor
        The fitted network, mapping transformed windows to targets.
    log_transform_ : bool
        Whether the series is modelled on the log scale.
    seasonal_period_ : int or None
        Seasonal period in use.
    window_length_ : int
        Time steps per window.
    horizon_ : int
        Steps predicted per window (1 with ``strategy="recursive"``).
    target_reference_ : {"last", "seasonal"}
        What the targets are measured from.
    n_series_ : int
        Columns of ``y`` (1 for a 1-D series).
    n_exogenous_ : int
        Columns of ``X`` seen in fit (0 without ``X``).
    n_timesteps_ : int
        Length of the training series; forecasts start right after it.
    n_windows_ : int
        Training windows the network learned from.

    See Also
    --------
    make_windows : The windowing used here, for any sequence regressor.
    sklstm.LSTMRegressor : The network underneath.

    Examples
    --------
    >>> import numpy as np
    >>> from sklstm.forecasting import LSTMForecaster
    >>> t = np.arange(96)
    >>> y = 10 + 0.05 * t + np.sin(2 * np.pi * t / 12)
    >>> forecaster = LSTMForecaster(max_epochs=2, random_state=0).fit(y)
    >>> forecaster.seasonal_period_, forecaster.window_length_
    (12, 24)
    >>> forecaster.predict(steps=6).shape
    (6,)
    """

    _parameter_constraints: dict = {
        "strategy": [StrOptions({"direct", "recursive"})],
        "window_length": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "horizon": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "seasonal_period": [
            Interval(Integral, 2, None, closed="left"),
            StrOptions({"auto"}),
            None,
        ],
        "log_transform": ["boolean", StrOptions({"auto"})],
        "target_reference": [StrOptions({"auto", "last", "seasonal"})],
        **{
            name: LSTMRegressor._parameter_constraints[name]
            for name in _regressor_parameter_names()
        },
    }

    def __init__(
        self,
        *,
        strategy="direct",
        window_length="auto",
        horizon="auto",
        seasonal_period="auto",
        log_transform="auto",
        target_reference="auto",
        hidden_size=32,
        num_layers=1,
        bidirectional=False,
        cell="lstm",
        dropout=0.2,
        pooling="last",
        conv_filters=None,
        conv_kernel_size=5,
        conv_placement="parallel",
        recurrent_stride="auto",
        forget_bias=1.0,
        standardize=True,
        sequence_norm=None,
        max_epochs=100,
        batch_size=16,
        lr=1e-3,
        optimizer="adam",
        weight_decay=0.0,
        gradient_clip=None,
        lr_schedule=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        device="auto",
        precision="32",
        n_threads="auto",
        random_state=None,
        verbose=0,
        callbacks=None,
    ):
        self.strategy = strategy
        self.window_length = window_length
        self.horizon = horizon
        self.seasonal_period = seasonal_period
        self.log_transform = log_transform
        self.target_reference = target_reference
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.cell = cell
        self.dropout = dropout
        self.pooling = pooling
        self.conv_filters = conv_filters
        self.conv_kernel_size = conv_kernel_size
        self.conv_placement = conv_placement
        self.recurrent_stride = recurrent_stride
        self.forget_bias = forget_bias
        self.standardize = standardize
        self.sequence_norm = sequence_norm
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, y: ArrayLike, X: ArrayLike | None = None) -> Self:
        """Learn to forecast ``y``.

        Parameters
        ----------
        y : array-like of shape (n_timesteps,) or (n_timesteps, n_series)
            The series, oldest value first, evenly spaced, without gaps.
        X : array-like of shape (n_timesteps, n_exogenous), default=None
            Exogenous values, one row per time step of ``y``; row ``t`` is
            assumed known before ``y[t]``.

        Returns
        -------
        self : object
            The fitted forecaster.
        """
        series, ndim = check_series(
            y, "y", fix="Pass the series as fit(y), one value (or row) per step."
        )
        exogenous = self._check_exogenous(X, len(series))
        continuing = self.warm_start and hasattr(self, "regressor_")
        if continuing:
            self._check_same_layout(series, exogenous)
        else:
            self._resolve_preprocessing(series)
            self.n_series_ = series.shape[1]
            self.n_exogenous_ = 0 if exogenous is None else exogenous.shape[1]
            self._exogenous_exponents = (
                None if exogenous is None else magnitude_exponents(exogenous)
            )
        self._single_series = ndim == 1
        transformed = self._transform(series)
        exogenous = self._scale_exogenous(exogenous)
        n_windows = len(series) - self.window_length_ - self.horizon_ + 1
        if n_windows < 1:
            raise ValueError(
                f"y has {len(series)} time steps, too few for window_length="
                f"{self.window_length_} plus horizon={self.horizon_}: at least "
                f"{self.window_length_ + self.horizon_} are needed. Pass a longer "
                "series or a smaller window_length or horizon."
            )
        windows, targets = cut_windows(
            transformed, exogenous, self.window_length_, self.horizon_
        )
        inputs, references = self._network_inputs(windows)
        flat_targets = (targets - references).reshape(n_windows, -1)

        if not continuing:
            self.regressor_ = LSTMRegressor(**self._regressor_parameters())
        else:
            self.regressor_.set_params(**self._regressor_parameters())
        self.regressor_.fit(inputs, flat_targets)

        # The forecast origin: the last window of history, and the exogenous
        # rows that window carries (all but its first step's shift).
        self._history = transformed[-self.window_length_ :]
        self._exogenous_history = (
            None
            if exogenous is None
            else exogenous[len(exogenous) - self.window_length_ + 1 :]
        )
        self.n_timesteps_ = len(series)
        self.n_windows_ = n_windows
        return self

    def predict(self, steps: int, X: ArrayLike | None = None) -> np.ndarray:
        """Forecast the ``steps`` values that follow the training series.

        Parameters
        ----------
        steps : int
            Number of future time steps to forecast, at least 1.
        X : array-like of shape (steps, n_exogenous), default=None
            Future exogenous values, one row per forecast step; required
            when the forecaster was fitted with ``X``.

        Returns
        -------
        y_pred : ndarray of shape (steps,) or (steps, n_series)
            The forecast; 1-D when ``fit`` received a 1-D series.
        """
        check_is_fitted(self)
        steps = check_positive_int(steps, "steps")
        future_exogenous = self._scale_exogenous(self._check_future_exogenous(X, steps))
        history = list(self._history)
        exogenous_history = (
            None if self._exogenous_history is None else list(self._exogenous_history)
        )
        forecast = []
        while len(forecast) < steps:
            window = np.asarray(history[-self.window_length_ :])[None]
            if exogenous_history is not None:
                # The window ending at the forecast origin carries X up to the
                # first step it forecasts.
                exogenous_history.append(future_exogenous[len(forecast)])
                rows = np.asarray(exogenous_history[-self.window_length_ :])[None]
                window = np.concatenate([window, rows], axis=2)
            inputs, references = self._network_inputs(window)
            outputs = self.regressor_.predict(inputs).reshape(references.shape)
            block = (outputs + references)[0][: steps - len(forecast)]
            history.extend(block)
            forecast.extend(block)
            if exogenous_history is not None:
                exogenous_history.extend(
                    future_exogenous[len(forecast) - len(block) + 1 : len(forecast)]
                )
        values = self._inverse_transform(np.asarray(forecast))
        return values[:, 0] if self._single_series else values

    def score(self, y: ArrayLike, X: ArrayLike | None = None) -> float:
        """R^2 of the forecast of ``len(y)`` steps against ``y``.

        ``y`` must be the values that directly follow the training series,
        as the test fold of a ``TimeSeriesSplit`` (with ``gap=0``) does; so
        ``cross_val_score(LSTMForecaster(), y, cv=TimeSeriesSplit())`` scores
        forecasts without look-ahead.

        Parameters
        ----------
        y : array-like of shape (steps,) or (steps, n_series)
            The true future values.
        X : array-like of shape (steps, n_exogenous), default=None
            Future exogenous values, as in :meth:`predict`.

        Returns
        -------
        score : float
            R^2, averaged uniformly over series.
        """
        from sklearn.metrics import r2_score

        truth, _ = check_series(y, "y", fix="Pass the values after the series.")
        predicted = self.predict(len(truth), X=X).reshape(len(truth), -1)
        # R^2 is the same for each column rescaled by a power of two; that
        # keeps its squares from overflowing (or vanishing) near the float
        # limits.
        exponents = magnitude_exponents(np.vstack([truth, predicted]))
        return r2_score(np.ldexp(truth, -exponents), np.ldexp(predicted, -exponents))

    # ------------------------------------------------------------------
    def _regressor_parameters(self):
        params = self.get_params(deep=False)
        forwarded = {
            name: params[name]
            for name in _regressor_parameter_names()
            if name in params
        }
        forwarded["output_mode"] = "last"
        return forwarded

    def _check_exogenous(self, X, n_timesteps):
        if X is None:
            return None
        exogenous, _ = check_series(
            X, "X", fix="Pass exogenous values as (n_timesteps, n_exogenous)."
        )
        if len(exogenous) != n_timesteps:
            raise ValueError(
                f"X has {len(exogenous)} rows but y has {n_timesteps} time "
                "steps; pass one row of X per time step of y."
            )
        return exogenous

    def _check_future_exogenous(self, X, steps):
        if self.n_exogenous_ == 0:
            if X is not None:
                raise ValueError(
                    "X was passed to predict but the forecaster was fitted "
                    "without exogenous values; refit with fit(y, X) or drop X."
                )
            return None
        if X is None:
            raise ValueError(
                f"The forecaster was fitted with {self.n_exogenous_} exogenous "
                f"columns, so predict needs their future values: pass X of "
                f"shape ({steps}, {self.n_exogenous_}), one row per forecast step."
            )
        future, _ = check_series(
            X, "X", fix=f"Pass X of shape ({steps}, {self.n_exogenous_})."
        )
        if future.shape[1] != self.n_exogenous_:
            raise ValueError(
                f"X has {future.shape[1]} columns but the forecaster was fitted "
                f"with {self.n_exogenous_}; pass the same exogenous columns."
            )
        if len(future) < steps:
            raise ValueError(
                f"X has {len(future)} rows but {steps} steps are forecast; pass "
                "one row of future exogenous values per forecast step."
            )
        return future

    def _check_same_layout(self, series, exogenous):
        n_exogenous = 0 if exogenous is None else exogenous.shape[1]
        if series.shape[1] != self.n_series_ or n_exogenous != self.n_exogenous_:
            raise ValueError(
                f"warm_start continues the fitted network, which expects "
                f"{self.n_series_} series and {self.n_exogenous_} exogenous "
                f"columns, got {series.shape[1]} and {n_exogenous}. Set "
                "warm_start=False to start afresh."
            )
        if self.log_transform_ and (series <= 0).any():
            raise ValueError(
                "warm_start keeps the fitted log transform, but y now holds "
                "values <= 0. Set warm_start=False to start afresh."
            )
        # The network learned the first series at the scale it was brought
        # to; a series far beyond that scale would overflow the float32
        # inputs or blow up the training.
        largest = np.abs(self._transform(series)).max()
        if largest > _ORDINARY_MAGNITUDE[1]:
            raise ValueError(
                "warm_start keeps the scaling fitted to the first y, under "
                f"which this y reaches {largest:.3g}, past the 2**64 the "
                "network's arithmetic allows. Set warm_start=False to start "
                "afresh."
            )

    def _resolve_preprocessing(self, series):
        """Settle the data-dependent settings (the fitted ``*_`` attributes)."""
        positive = bool((series > 0).all())
        if self.log_transform == "auto":
            self.log_transform_ = positive
        elif self.log_transform and not positive:
            raise ValueError(
                "log_transform=True needs a strictly positive series, but y "
                "holds values <= 0. Use log_transform='auto' or False."
            )
        else:
            self.log_transform_ = bool(self.log_transform)
        self._magnitude_exponents = magnitude_exponents(
            np.log(series) if self.log_transform_ else series
        )
        transformed = self._transform(series)
        n_timesteps = len(series)

        if self.seasonal_period == "auto":
            period = detect_seasonal_period(transformed)
        else:
            period = self.seasonal_period
        self.seasonal_period_ = period

        if self.strategy == "recursive":
            horizon = 1
        elif self.horizon == "auto":
            horizon = period if period is not None else None  # set below
        else:
            horizon = self.horizon

        if self.window_length == "auto":
            window_length = 2 * period if period is not None else 10
            if horizon is None:
                horizon = max(1, window_length // 2)
            # Leave enough windows to learn from on a short series, but keep
            # at least one full season in view.
            room = n_timesteps - horizon + 1 - _MIN_AUTO_WINDOWS
            window_length = max(min(window_length, room), period or 2)
        else:
            window_length = self.window_length
            if horizon is None:
                horizon = max(1, window_length // 2)
        self.window_length_ = int(window_length)
        self.horizon_ = int(horizon)

        reference = self.target_reference
        if reference == "auto":
            use_season = period is not None and period <= self.window_length_
            reference = "seasonal" if use_season else "last"
        elif reference == "seasonal":
            if period is None:
                raise ValueError(
                    "target_reference='seasonal' needs a seasonal period, but "
                    "none was given or detected. Pass seasonal_period=<int> or "
                    "use target_reference='last'."
                )
            if period > self.window_length_:
                raise ValueError(
                    f"target_reference='seasonal' needs the window to span a "
                    f"season: seasonal_period={period} > window_length="
                    f"{self.window_length_}. Raise window_length or use "
                    "target_reference='last'."
                )
        self.target_reference_ = reference

    def _transform(self, series):
        logged = np.log(series) if self.log_transform_ else series
        return np.ldexp(logged, -self._magnitude_exponents)

    def _inverse_transform(self, values):
        exponents = self._magnitude_exponents
        # Clipped first so that scaling back cannot overflow.
        limit = np.ldexp(_LARGEST_FLOAT, -np.maximum(exponents, 0))
        values = np.ldexp(np.clip(values, -limit, limit), exponents)
        if self.log_transform_:
            return np.exp(np.minimum(values, _LOG_LARGEST_FLOAT))
        return values

    def _scale_exogenous(self, exogenous):
        if exogenous is None:
            return None
        return np.ldexp(exogenous, -self._exogenous_exponents)

    def _network_inputs(self, windows):
        """Level-free windows for the network, and each target's reference.

        ``windows`` is (n_windows, window_length, n_series + n_exogenous) in
        the transformed scale; references are (n_windows, horizon, n_series).
        """
        values = windows[:, :, : self.n_series_]
        last = values[:, -1:, :]
        inputs = windows.copy()
        inputs[:, :, : self.n_series_] = values - last
        if self.target_reference_ == "seasonal":
            period = self.seasonal_period_
            offsets = self.window_length_ - period + np.arange(self.horizon_) % period
            references = values[:, offsets, :]
        else:
            references = np.repeat(last, self.horizon_, axis=1)
        return inputs, references

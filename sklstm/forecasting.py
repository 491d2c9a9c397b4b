"""Forecasting the future steps of time series with a recurrent network.

:func:`make_windows` cuts a series into the ``(windows, targets)`` pairs any
sequence regressor learns from; :class:`LSTMForecaster` does the whole job on
raw series: transform, window, train an :class:`~sklstm.LSTMRegressor`, and
forecast beyond the end of a series, either a whole horizon at once
(``strategy="direct"``) or one step at a time with each prediction fed back as
input (``strategy="recursive"``, closed loop). One forecaster can learn from
a list of series (one global model), forecast from a context it was not
fitted on, and give forecast intervals.

Conventions shared by both: a series ``y`` is ``(n_timesteps,)`` or
``(n_timesteps, n_series)``; the optional exogenous ``X`` is
``(n_timesteps, n_exogenous)`` and row ``t`` of ``X`` is taken to be known
before ``y[t]`` is observed (a calendar feature, a planned price). A window that
ends with ``y[t - 1]`` therefore carries ``X`` up to row ``t``, the first step
it forecasts.
"""

from __future__ import annotations

import copy
import inspect
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_random_state

from ._docs import fill_doc
from ._forecast_intervals import (
    error_quantiles,
    forecast_bounds,
    held_out_errors,
)
from ._forecast_series import (
    WindowLayout,
    check_exogenous_collection,
    check_series_collection,
    fit_scaling,
    forecast,
    forecast_exogenous,
    series_state,
    training_data,
)
from ._intervals import check_coverage, check_quantiles
from ._regressor import LSTMRegressor
from ._typing import ArrayLike, Predictions, Self, SeriesLike
from ._windowing import (
    check_positive_int,
    detect_seasonal_period,
    magnitude_exponents,
    make_windows,
    resolve_settings,
)

__all__ = ["LSTMForecaster", "detect_seasonal_period", "make_windows"]

# n_networks="auto": this many networks, averaged, when the series give fewer
# training windows than _AUTO_NETWORKS_MAX_WINDOWS. On so few windows a single
# network's forecast depends much on its seed, and each network trains in a
# second or two; on more, one network varies less and costs more.
_AUTO_NETWORKS = 5
_AUTO_NETWORKS_MAX_WINDOWS = 500

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
    # Windows all have the forecaster's window length.
    "length_aware",
    # The forecaster's own intervals are not built on the regressor's yet: a
    # scale head would train outputs nothing reads.
    "interval_width",
    # A window re-read at another speed would no longer lead up to the
    # values that follow it: the targets are the next steps in real time.
    "time_warp",
    # Not tried on forecasting windows: the forecaster's networks keep the
    # regressor's default, none.
    "differences",
    # The forecaster calibrates its intervals its own way, so its networks
    # train no more networks to calibrate theirs (see _regressor_parameters).
    "calibration",
}


def _regressor_parameter_names():
    names = inspect.signature(LSTMRegressor.__init__).parameters
    return [name for name in names if name not in {"self"} | _NOT_FORWARDED]


@fill_doc
class LSTMForecaster(BaseEstimator):
    """Forecast the next steps of time series with an LSTM.

    ``fit(y)`` learns from a raw series, or from a list of series (one
    global model learns from the windows of all of them); ``predict(steps)``
    returns the ``steps`` values that follow the end of each, or of a new
    context passed as ``predict(steps, y=context)``, without refitting.
    ``predict_interval`` and ``predict_quantiles`` give calibrated forecast
    intervals. Underneath, each series is transformed, cut into windows (see
    :func:`make_windows`) and an :class:`~sklstm.LSTMRegressor`
    (``regressor_``; with few windows, several averaged, ``regressors_``)
    learns to map each window to the values after it.

    Preprocessing, in order (every rule adapts to the data, and every
    scaling step is taken per series, so that series of any scale share one
    model):

    1. Log transform (``log_transform``): with "auto", applied to each
       series whose values are all strictly positive, so that
       multiplicative growth and seasonality become additive. Forecasts are
       mapped back with ``exp``.
    2. Seasonal period (``seasonal_period``): with "auto", found by
       :func:`detect_seasonal_period` on each (log-)series; None when it
       shows no seasonality. For a list, the period most series show (on a
       tie the shorter period, and no season only when no period is more
       common).
    3. Window length and horizon (``window_length``, ``horizon``): with
       "auto", two seasonal periods of history and a horizon of one period
       (without a period: 10 steps of history, a horizon of half that). The
       automatic window is shortened, down to one period (2 steps without
       one), until every series gives at least one training window and all
       of them together at least 8. A series too short for one window of
       the final length is refused with a ``ValueError`` naming it.
    4. Level and scale: each window of a series is expressed relative to
       its own last value, so that the network sees shapes, not levels, and
       a trend moves no input out of the range seen in training; then
       divided by the series' mean absolute one-step change, so that a
       series and the same series times 1000 look alike to the network.
    5. Targets (``target_reference``): the network predicts each future
       value minus a reference taken from the window: "last", its last value;
       "seasonal", the value one season earlier in the window's last full
       season (the seasonal-naive forecast), in the same unit as step 4. The
       network thus learns a correction to a simple forecast. "auto" uses
       "seasonal" when a seasonal period is in use, "last" otherwise.
    6. The regressor standardises the windows and targets it receives, over
       all of them.

    Series near the float limits (say at 1e300 or 1e-300): after step 1, a
    series whose largest magnitude lies outside [2**-32, 2**64] is divided by
    the power of two that brings it near 1 (exactly, with no other effect on
    the forecast) and the forecasts are multiplied back; each column of ``X``
    likewise, over all series. Forecasts past the float64 range saturate at
    +-1.8e308.

    Exogenous ``X`` is appended to the windows without the level step; row
    ``t`` of ``X`` is assumed known before ``y[t]``, so forecasting needs its
    future rows. Its columns mean the same in every series and are scaled
    alike for all (by the regressor's standardisation).

    A context given to ``predict`` gets steps 1 and 4 from its own values,
    as a training series does, and needs at least ``window_length_`` of
    them; for a fitted series extended by new observations, that forecasts
    from its new end.

    Forecast intervals (split conformal): during ``fit``, the last steps of
    each series are held out, a second set of networks (as many, same
    parameters, same preprocessing) is trained on the rest, and forecasts
    ``calibration_steps_`` steps from several origins in the held-out part,
    as ``predict`` forecasts a new context (about 20 origins in all, spread
    over the series, at least one from each series long enough). The errors,
    per step ahead in the unit of step 4 (so relative errors on the log
    scale), are kept as ``calibration_errors_``. A forecast interval is the
    point forecast plus and minus a conformal quantile of their absolute
    values at that step, times the forecast series' own step scale, mapped
    back (on the log scale, so asymmetric around the point forecast after
    ``exp``). Steps beyond ``calibration_steps_`` widen the last step's
    quantile with the square root of the step. An interval covers its
    nominal share of the future when the future errs like the held-out steps
    did; with fewer than ``coverage / (1 - coverage)`` errors (9 for 90%) it
    is their largest, and may cover less. The calibration networks learn
    from fewer steps than ``regressors_``, which tends to widen the
    intervals.

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
        Model the log of each series. True needs strictly positive series.
    target_reference : {"auto", "last", "seasonal"}, default="auto"
        What the network's targets are measured from; "seasonal" needs a
        seasonal period no longer than the window.
    calibration_steps : int, "auto" or None, default="auto"
        Steps ahead whose held-out forecast errors calibrate
        ``predict_interval`` and ``predict_quantiles``. "auto": the horizon
        of the direct strategy (one seasonal period, or half the automatic
        window without one), whatever the strategy. None: no calibration;
        ``fit`` trains one network instead of two, and the interval methods
        raise. Each series must be at least ``window_length_ +
        calibration_steps`` long to give an origin.
    n_networks : int or "auto", default="auto"
        Networks trained, each from its own seed, whose predictions are
        averaged (for the calibration too: ``fit`` trains twice this many
        networks). Averaging takes out much of what a single network's
        forecast owes to its seed, which matters most when the series give
        few training windows. "auto": 5 when they give fewer than 500
        windows, 1 otherwise.
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
    {conv_stride}
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
    {weight_averaging}
    {early_stopping}
        The score is the R^2 of the network's targets. Windows are held out
        at random, so validation windows overlap training ones in time.
    {validation_fraction}
    {n_iter_no_change}
    {tol}
    {warm_start}
        The shared settings (period, window, horizon, target reference,
        calibration steps) are kept too; each series' own scaling is taken
        from the new ``y``, whose series become the ones ``predict``
        continues; so are the networks (``n_networks`` must stay their
        count or "auto"). The calibration networks are trained afresh.
    {device}
    {precision}
    {n_threads}
    {distributed}
    {random_state}
        With several networks it seeds the draw of each network's seed (the
        calibration networks get the same seeds); one network, and its
        calibration network, take it as it is.
    {verbose}
    {callbacks}
        They run in every network's training, the calibration networks'
        too.

    Attributes
    ----------
    regressor_ : LSTMRegressor
        The fitted network, mapping transformed windows to targets; the
        first of ``regressors_``.
    regressors_ : list of LSTMRegressor
        The ``n_networks_`` fitted networks; forecasts are the mean of their
        predictions.
    n_networks_ : int
        Networks in use (``n_networks`` resolved).
    log_transform_ : bool or list of bool
        Whether the series is modelled on the log scale; one entry per
        series after a list fit.
    seasonal_period_ : int or None
        Seasonal period in use.
    window_length_ : int
        Time steps per window; also the shortest context ``predict``
        accepts.
    horizon_ : int
        Steps predicted per window (1 with ``strategy="recursive"``).
    target_reference_ : {"last", "seasonal"}
        What the targets are measured from.
    calibration_steps_ : int or None
        Steps ahead that ``calibration_errors_`` covers.
    calibration_errors_ : ndarray of shape (n_origins, n_steps, n_series) or None
        Held-out forecast errors (truth minus forecast) of the calibration
        network, ``n_steps = calibration_steps_`` steps ahead from each
        origin, in each series' step scale (step 4 above); None when
        ``calibration_steps=None`` or the series were too short to hold out
        ``calibration_steps_`` steps and still train.
    n_series_ : int
        Columns of each series, forecast jointly (1 for 1-D series).
    n_exogenous_ : int
        Columns of ``X`` seen in fit (0 without ``X``).
    n_timesteps_ : int or list of int
        Length of the training series (one entry per series after a list
        fit); forecasts start right after it.
    n_windows_ : int
        Training windows the network learned from, over all series.

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
    >>> forecaster.predict_interval(steps=6, coverage=0.9).shape
    (6, 2)

    One model for several series of different lengths and scales, and a
    forecast from a series it never saw:

    >>> series = [y, 1000 * y[:60], 0.01 * y[10:]]
    >>> forecaster = LSTMForecaster(max_epochs=2, random_state=0).fit(series)
    >>> [forecast.shape for forecast in forecaster.predict(steps=3)]
    [(3,), (3,), (3,)]
    >>> forecaster.predict(steps=3, y=5 * y[:40]).shape
    (3,)
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
        "calibration_steps": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
            None,
        ],
        "n_networks": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
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
        calibration_steps="auto",
        n_networks="auto",
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
        conv_stride="auto",
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
        weight_averaging=0.97,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        device="auto",
        precision="32",
        n_threads="auto",
        distributed="auto",
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
        self.calibration_steps = calibration_steps
        self.n_networks = n_networks
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
        self.conv_stride = conv_stride
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
        self.weight_averaging = weight_averaging
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.n_threads = n_threads
        self.distributed = distributed
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, y: SeriesLike, X: SeriesLike | None = None) -> Self:
        """Learn to forecast ``y``: one series, or a list of them.

        Parameters
        ----------
        y : array-like of shape (n_timesteps,) or (n_timesteps, n_series), \
                or list of them
            The series, oldest value first, evenly spaced, without gaps. A
            list (or tuple) of arrays is a list of series of any lengths,
            all 1-D or all 2-D with the same columns, from which one model
            learns; a list of numbers is one series.
        X : array-like of shape (n_timesteps, n_exogenous), or list of them, \
                default=None
            Exogenous values, one row per time step of ``y``; row ``t`` is
            assumed known before ``y[t]``. For a list ``y``, a list of one
            array per series, all with the same columns.

        Returns
        -------
        self : object
            The fitted forecaster.
        """
        fix = "Pass the series as fit(y), one value (or row) per step."
        series, as_list, ndim = check_series_collection(y, "y", fix=fix)
        lengths = [len(values) for values in series]
        exogenous = check_exogenous_collection(
            X,
            lengths,
            as_list,
            fix="Pass exogenous values as (n_timesteps, n_exogenous).",
        )
        n_columns = series[0].shape[1]
        n_exogenous = 0 if exogenous is None else exogenous[0].shape[1]
        continuing = self.warm_start and hasattr(self, "regressor_")
        if continuing:
            self._check_same_layout(n_columns, n_exogenous)
            exogenous_exponents = self._exogenous_exponents
        elif exogenous is None:
            exogenous_exponents = None
        else:
            # A column of X means the same in every series: one scale for all.
            exogenous_exponents = magnitude_exponents(np.vstack(exogenous))
        scaled_exogenous = [None] * len(series)
        if exogenous is not None:
            scaled_exogenous = [
                np.ldexp(rows, -exogenous_exponents) for rows in exogenous
            ]
        scalings = [
            fit_scaling(values, self.log_transform, _series_name(index, as_list))
            for index, values in enumerate(series)
        ]
        if continuing:
            settings = {name: getattr(self, name) for name in _SETTINGS}
        else:
            transformed = [
                scaling.transform(values)
                for scaling, values in zip(scalings, series, strict=True)
            ]
            settings = resolve_settings(
                transformed,
                lengths,
                strategy=self.strategy,
                window_length=self.window_length,
                horizon=self.horizon,
                seasonal_period=self.seasonal_period,
                target_reference=self.target_reference,
                calibration_steps=self.calibration_steps,
            )
        layout = WindowLayout(
            settings["window_length_"],
            settings["horizon_"],
            settings["seasonal_period_"],
            settings["target_reference_"],
            n_columns,
        )
        for index, length in enumerate(lengths):
            if layout.n_windows(length) < 1:
                needed = layout.window_length + layout.horizon
                name = _series_name(index, as_list)
                drop = ", drop it" if as_list else ""
                raise ValueError(
                    f"{name} has {length} time steps, too few for window_length="
                    f"{layout.window_length} plus horizon={layout.horizon}: at "
                    f"least {needed} are needed. Pass a longer series{drop} or "
                    "a smaller window_length or horizon."
                )

        inputs, targets = training_data(layout, series, scalings, scaled_exogenous)
        if continuing:
            fitted = self._fitted_networks()
            seeds = [regressor.random_state for regressor in fitted]
            self._check_same_networks(len(seeds))
        else:
            seeds = self._network_seeds(len(inputs))
        calibration_errors = None
        if settings["calibration_steps_"] is not None:
            calibration_errors = held_out_errors(
                lambda: _Average(self._new_networks(seeds)),
                layout,
                series,
                scaled_exogenous,
                steps=settings["calibration_steps_"],
                log_transform=self.log_transform,
            )
        if continuing:
            # Copies: should one network's training fail, none of the
            # fitted ones has moved on without the others.
            regressors = [copy.deepcopy(regressor) for regressor in fitted]
            for regressor, parameters in zip(
                regressors, self._network_parameters(seeds), strict=True
            ):
                regressor.set_params(**parameters)
        else:
            regressors = self._new_networks(seeds)
        _Average(regressors).fit(inputs, targets)

        # Set only once everything succeeded: a failed fit leaves the
        # previous fitted state as it was.
        for name, value in settings.items():
            setattr(self, name, value)
        self.regressors_ = regressors
        self.regressor_ = regressors[0]
        self.n_networks_ = len(regressors)
        self.calibration_errors_ = calibration_errors
        logs = [scaling.log for scaling in scalings]
        self.log_transform_ = logs if as_list else logs[0]
        self.n_series_ = n_columns
        self.n_exogenous_ = n_exogenous
        self.n_timesteps_ = lengths if as_list else lengths[0]
        self.n_windows_ = len(inputs)
        self._exogenous_exponents = exogenous_exponents
        # The forecast origins: each series' last window, with the scaling
        # it was learned in.
        self._states = [
            series_state(values, rows, scaling, layout.window_length)
            for values, rows, scaling in zip(
                series, scaled_exogenous, scalings, strict=True
            )
        ]
        self._fitted_as_list = as_list
        self._ndim = ndim
        return self

    def predict(
        self, steps: int, X: SeriesLike | None = None, y: SeriesLike | None = None
    ) -> Predictions:
        """Forecast the ``steps`` values that follow each series.

        Parameters
        ----------
        steps : int
            Number of future time steps to forecast, at least 1.
        X : array-like of shape (n_rows, n_exogenous), or list of them, \
                default=None
            Exogenous values; required when the forecaster was fitted with
            ``X``. Without ``y``: the future rows, one per forecast step
            (``n_rows >= steps``), or after a list fit a list of them, one
            per fitted series. With ``y``: the context's rows followed by
            the future ones (``n_rows >= len(y) + steps``), a list for a
            list of contexts. Rows past those needed are ignored.
        y : array-like of shape (n_timesteps,) or (n_timesteps, n_series), \
                or list of them, default=None
            A context to forecast from instead of the fitted series: a
            fitted series with its new observations appended, or a series
            the forecaster never saw, at least ``window_length_`` steps
            long, with the fitted columns. Its scaling (log, level, step
            scale) is taken from its own values, as in ``fit``; the fitted
            model is left unchanged.

        Returns
        -------
        y_pred : ndarray of shape (steps,) or (steps, n_series), or list of them
            The forecast, 1-D for a 1-D series. A list, one forecast per
            series, after a list fit (without ``y``) or for a list ``y``.
        """
        check_is_fitted(self)
        steps = check_positive_int(steps, "steps")
        states, future, as_list, ndim = self._forecast_origins(steps, X, y)
        transformed = forecast(
            self._predict_windows, self._layout(), states, future, steps
        )
        forecasts = [
            state.scaling.inverse(values)
            for state, values in zip(states, transformed, strict=True)
        ]
        return _as_output(forecasts, as_list, ndim)

    def predict_quantiles(
        self,
        steps: int,
        quantiles: ArrayLike = (0.05, 0.5, 0.95),
        X: SeriesLike | None = None,
        y: SeriesLike | None = None,
    ) -> Predictions:
        """Forecast quantiles of the ``steps`` values that follow each series.

        Level ``q`` is the point forecast of :meth:`predict` moved by
        ``sign(q - 0.5)`` times the conformal ``|2q - 1|`` quantile of the
        absolute held-out forecast errors (``calibration_errors_``) at that
        step, in the series' own scale, and mapped back; see the class
        description. The 0.5 quantile is the point forecast, and levels
        ``q`` and ``1 - q`` bound an interval of coverage ``|2q - 1|``.

        Parameters
        ----------
        steps : int
            Number of future time steps to forecast, at least 1.
        quantiles : float or array-like of float, default=(0.05, 0.5, 0.95)
            Probability levels, each strictly between 0 and 1, in any order.
        X : array-like or list of them, default=None
            Exogenous values, as in :meth:`predict`.
        y : array-like or list of them, default=None
            A context to forecast from, as in :meth:`predict`.

        Returns
        -------
        y_quantiles : ndarray of shape (steps, n_quantiles) or \
                (steps, n_series, n_quantiles), or list of them
            One column per level, in the order given; the middle axis only
            for 2-D series. A list as in :meth:`predict`.
        """
        check_is_fitted(self)
        levels = check_quantiles(quantiles)
        return self._predict_levels(steps, levels, X, y)

    def predict_interval(
        self,
        steps: int,
        coverage: float = 0.9,
        X: SeriesLike | None = None,
        y: SeriesLike | None = None,
    ) -> Predictions:
        """Forecast intervals for the ``steps`` values that follow each series.

        The quantiles at ``(1 - coverage) / 2`` and ``(1 + coverage) / 2``
        (see :meth:`predict_quantiles`); they contain the point forecast of
        :meth:`predict`.

        Parameters
        ----------
        steps : int
            Number of future time steps to forecast, at least 1.
        coverage : float, default=0.9
            Share of future values the interval should contain, strictly
            between 0 and 1.
        X : array-like or list of them, default=None
            Exogenous values, as in :meth:`predict`.
        y : array-like or list of them, default=None
            A context to forecast from, as in :meth:`predict`.

        Returns
        -------
        y_interval : ndarray of shape (steps, 2) or (steps, n_series, 2), \
                or list of them
            Lower and upper bounds; the middle axis only for 2-D series. A
            list as in :meth:`predict`.
        """
        check_is_fitted(self)
        coverage = check_coverage(coverage)
        levels = np.array([(1 - coverage) / 2, (1 + coverage) / 2])
        return self._predict_levels(steps, levels, X, y)

    def score(self, y: SeriesLike, X: SeriesLike | None = None) -> float:
        """R^2 of the forecast of ``len(y)`` steps against ``y``.

        ``y`` must be the values that directly follow the training series,
        as the test fold of a ``TimeSeriesSplit`` (with ``gap=0``) does; so
        ``cross_val_score(LSTMForecaster(), y, cv=TimeSeriesSplit())`` scores
        forecasts without look-ahead. After a list fit, a list of the values
        that follow each fitted series, in order.

        Parameters
        ----------
        y : array-like of shape (steps,) or (steps, n_series), or list of them
            The true future values.
        X : array-like of shape (steps, n_exogenous), or list of them, \
                default=None
            Future exogenous values, as in :meth:`predict`.

        Returns
        -------
        score : float
            R^2, averaged uniformly over columns (and over series after a
            list fit).
        """
        from sklearn.metrics import r2_score

        check_is_fitted(self)
        fix = "Pass the values after the series."
        truths, as_list, _ = check_series_collection(y, "y", fix=fix)
        if not self._fitted_as_list:
            predictions = [self.predict(len(truths[0]), X=X)]
        else:
            n_series = len(self._states)
            if not as_list or len(truths) != n_series:
                raise ValueError(
                    f"The forecaster was fitted on a list of {n_series} series; "
                    "pass y as a list of the values that follow each of them, "
                    "in the same order."
                )
            if X is not None and (
                not isinstance(X, (list, tuple)) or len(X) != n_series
            ):
                raise ValueError(
                    f"The forecaster was fitted on a list of {n_series} series; "
                    "pass X as a list of the future exogenous values of each."
                )
            predictions = []
            for index, (truth, state) in enumerate(
                zip(truths, self._states, strict=True)
            ):
                _, future = forecast_exogenous(
                    None if X is None else [X[index]],
                    [0],
                    len(truth),
                    True,
                    context=False,
                    n_exogenous=self.n_exogenous_,
                    exponents=self._exogenous_exponents,
                )
                values = forecast(
                    self._predict_windows, self._layout(), [state], future, len(truth)
                )
                predictions.append(state.scaling.inverse(values[0]))
        scores = []
        for truth, predicted in zip(truths, predictions, strict=True):
            predicted = predicted.reshape(len(truth), -1)
            # R^2 is the same for each column rescaled by a power of two; that
            # keeps its squares from overflowing (or vanishing) near the float
            # limits.
            exponents = magnitude_exponents(np.vstack([truth, predicted]))
            scores.append(
                r2_score(np.ldexp(truth, -exponents), np.ldexp(predicted, -exponents))
            )
        return float(np.mean(scores))

    # ------------------------------------------------------------------
    def _regressor_parameters(self):
        params = self.get_params(deep=False)
        forwarded = {
            name: params[name]
            for name in _regressor_parameter_names()
            if name in params
        }
        forwarded["output_mode"] = "last"
        forwarded["calibration"] = "split"
        # Not tried on forecasting windows: the regressor's "auto" would give
        # them changes from 60 steps.
        forwarded["differences"] = 0
        return forwarded

    def _network_seeds(self, n_windows):
        """One ``random_state`` per network, for ``n_windows`` training windows."""
        count = self.n_networks
        if count == "auto":
            few = n_windows < _AUTO_NETWORKS_MAX_WINDOWS
            count = _AUTO_NETWORKS if few else 1
        if count == 1:
            # One network is seeded as the forecaster is.
            return [self.random_state]
        draws = check_random_state(self.random_state)
        return [int(seed) for seed in draws.randint(np.iinfo(np.int32).max, size=count)]

    def _network_parameters(self, seeds):
        """The regressor parameters of each network, one per seed."""
        parameters = self._regressor_parameters()
        return [{**parameters, "random_state": seed} for seed in seeds]

    def _new_networks(self, seeds):
        return [LSTMRegressor(**params) for params in self._network_parameters(seeds)]

    def _fitted_networks(self):
        # Forecasters pickled before regressors_ existed hold regressor_ only.
        return getattr(self, "regressors_", None) or [self.regressor_]

    def _predict_windows(self, windows):
        """The networks' mean prediction for transformed windows."""
        return _Average(self._fitted_networks()).predict(windows)

    def _check_same_networks(self, fitted):
        if self.n_networks not in ("auto", fitted):
            raise ValueError(
                f"warm_start continues the {fitted} fitted networks, but "
                f"n_networks={self.n_networks!r}. Set n_networks={fitted} (or "
                "'auto') to continue them, or warm_start=False to start afresh."
            )

    def _layout(self):
        return WindowLayout(
            self.window_length_,
            self.horizon_,
            self.seasonal_period_,
            self.target_reference_,
            self.n_series_,
        )

    def _predict_levels(self, steps, levels, X, y):
        steps = check_positive_int(steps, "steps")
        if self.calibration_errors_ is None:
            if self.calibration_steps_ is None:
                reason = (
                    "it was fitted with calibration_steps=None. Refit with "
                    "calibration_steps='auto' (the default) or an int."
                )
            else:
                reason = (
                    f"holding out calibration_steps_={self.calibration_steps_} "
                    "steps left no series long enough: one needs at least "
                    f"window_length_ + calibration_steps_ = "
                    f"{self.window_length_ + self.calibration_steps_} steps to "
                    "give an origin, and the rest must still give training "
                    "windows. Refit with longer series or a smaller "
                    "calibration_steps."
                )
            raise ValueError(
                f"The forecaster has no held-out forecast errors to calibrate "
                f"intervals with: {reason}"
            )
        states, future, as_list, ndim = self._forecast_origins(steps, X, y)
        point = forecast(self._predict_windows, self._layout(), states, future, steps)
        offsets = error_quantiles(self.calibration_errors_, levels, steps)
        results = [
            forecast_bounds(values, state.scaling, offsets)
            for state, values in zip(states, point, strict=True)
        ]
        return _as_output(results, as_list, ndim)

    def _forecast_origins(self, steps, X, y):
        """The states to forecast from, their future exogenous rows, and the
        output's form (list or not, dimensions)."""
        exogenous = dict(
            n_exogenous=self.n_exogenous_, exponents=self._exogenous_exponents
        )
        if y is None:
            lengths = [0] * len(self._states)
            _, future = forecast_exogenous(
                X, lengths, steps, self._fitted_as_list, context=False, **exogenous
            )
            return self._states, future, self._fitted_as_list, self._ndim
        fix = "Pass the context as predict(steps, y=...), one value (or row) per step."
        contexts, as_list, ndim = check_series_collection(y, "y", fix=fix)
        if contexts[0].shape[1] != self.n_series_:
            raise ValueError(
                f"y has {contexts[0].shape[1]} columns but the forecaster was "
                f"fitted on series with {self.n_series_}; pass a context with "
                "the same columns."
            )
        lengths = [len(context) for context in contexts]
        for index, length in enumerate(lengths):
            if length < self.window_length_:
                raise ValueError(
                    f"{_series_name(index, as_list)} has {length} time steps, but "
                    f"a context needs at least window_length_="
                    f"{self.window_length_} (the window the network reads). "
                    "Pass a longer context."
                )
        rows, future = forecast_exogenous(
            X, lengths, steps, as_list, context=True, **exogenous
        )
        states = [
            series_state(
                context,
                context_rows,
                fit_scaling(context, self.log_transform, _series_name(index, as_list)),
                self.window_length_,
            )
            for index, (context, context_rows) in enumerate(
                zip(contexts, rows, strict=True)
            )
        ]
        return states, future, as_list, ndim

    def _check_same_layout(self, n_columns, n_exogenous):
        if n_columns != self.n_series_ or n_exogenous != self.n_exogenous_:
            raise ValueError(
                f"warm_start continues the fitted network, which expects "
                f"{self.n_series_} series and {self.n_exogenous_} exogenous "
                f"columns, got {n_columns} and {n_exogenous}. Set "
                "warm_start=False to start afresh."
            )


class _Average:
    """Regressors fitted on the same data, predicting their mean."""

    def __init__(self, regressors):
        self.regressors = regressors

    def fit(self, X, y):
        for regressor in self.regressors:
            regressor.fit(X, y)
        return self

    def predict(self, X):
        predictions = [regressor.predict(X) for regressor in self.regressors]
        return predictions[0] if len(predictions) == 1 else np.mean(predictions, axis=0)


# The fitted settings shared by all series, kept by warm_start.
_SETTINGS = (
    "seasonal_period_",
    "window_length_",
    "horizon_",
    "target_reference_",
    "calibration_steps_",
)


def _series_name(index, as_list):
    return f"y[{index}]" if as_list else "y"


def _as_output(arrays, as_list, ndim):
    """Per-series results in the form the series came in."""
    if ndim == 1:
        arrays = [values[:, 0] for values in arrays]
    return arrays if as_list else arrays[0]

"""Forecast intervals from held-out forecast errors (split conformal).

:class:`~sklstm.forecasting.LSTMForecaster` holds out the last steps of each
training series, trains a second network on the rest, and forecasts the
held-out steps from several origins with it, exactly as ``predict`` forecasts
a new context. The errors, per step ahead and in each series' own scale,
are the calibration set: their conformal quantiles widen a point forecast
into an interval or a set of quantiles.
"""

from __future__ import annotations

import math

import numpy as np

from ._forecast_series import fit_scaling, forecast, series_state, training_data

# A 95% interval needs at least 19 errors per step for a conformal quantile
# within them (ceil((n + 1) * 0.95) <= n); the origins are spread over the
# series to reach this many when the series allow.
_TARGET_ORIGINS = 20

# Below this many windows a network learns little; the calibration network
# keeps at least as many as the automatic window length leaves the main one
# (see forecasting._MIN_AUTO_WINDOWS), when the series allow.
_MIN_CALIBRATION_WINDOWS = 8


def plan_origins(lengths, window_length, horizon, calibration_steps):
    """Forecast origins per series for the calibration, or None.

    Series ``i`` gives ``origins[i]`` origins, at the last ``origins[i]``
    positions from which ``calibration_steps`` true values remain; the
    calibration network is trained on the series up to the first of them.
    Each series gives an equal share of about 20 origins in all (at least
    one), fewer where the series is too short for them, and fewer still if
    the calibration network would otherwise keep under 8 training windows.
    None when no series can give an origin or no training window remains.
    """
    lengths = np.asarray(lengths)
    # An origin needs a full window of history before it.
    most = np.maximum(lengths - calibration_steps - window_length + 1, 0)
    share = math.ceil(_TARGET_ORIGINS / len(lengths))
    for target in range(share, 0, -1):
        origins = np.minimum(target, most)
        kept = lengths - held_out_steps(origins, calibration_steps)
        n_windows = np.maximum(kept - window_length - horizon + 1, 0).sum()
        if n_windows >= _MIN_CALIBRATION_WINDOWS:
            break
    if origins.sum() == 0 or n_windows < 1:
        return None
    return origins


def held_out_steps(origins, calibration_steps):
    """Steps held out at the end of each series for its origins."""
    return np.where(origins > 0, calibration_steps + origins - 1, 0)


def error_quantiles(errors, levels, steps):
    """Conformal quantiles of the errors: (steps, n_columns, n_levels).

    ``errors`` is (n_origins, calibration_steps, n_columns). Level ``q`` is
    ``sign(q - 0.5)`` times the ``ceil((n + 1) |2q - 1|)``-th smallest of
    the ``n`` absolute errors of a step (0 at ``q = 0.5``), so that the
    interval between levels ``q`` and ``1 - q`` covers at least its nominal
    share of new errors exchangeable with these; with too few errors for
    that, the largest is taken. Absolute errors make the quantiles
    symmetric about the point forecast (in the transformed scale): the held
    out steps of a few series share one stretch of time, and the sign of
    their errors says more about that stretch than about the future. Steps
    past the calibrated ones grow the last step's quantiles with the square
    root of the step, as the spread of a random walk does.
    """
    n_origins, n_steps, _ = errors.shape
    ordered = np.sort(np.abs(errors), axis=0)
    # The tolerance keeps (19 + 1) * 0.95 = 19.000000000000004 at rank 19.
    ranks = np.ceil((n_origins + 1) * np.abs(2 * levels - 1) - 1e-9)
    ranks = np.clip(ranks, 1, n_origins).astype(int) - 1
    with np.errstate(invalid="ignore"):
        # (n_steps, n_columns, n_levels); inf * 0 at q = 0.5 is set to 0.
        table = np.moveaxis(ordered[ranks], 0, -1) * np.sign(levels - 0.5)
    table[..., levels == 0.5] = 0.0
    if steps <= n_steps:
        return table[:steps]
    growth = np.sqrt(np.arange(n_steps + 1, steps + 1) / n_steps)
    return np.concatenate([table, table[-1][None] * growth[:, None, None]])


def held_out_errors(new_regressor, layout, series, exogenous, *, steps, log_transform):
    """Held-out forecast errors, (n_origins, steps, n_columns), or None.

    ``new_regressor()`` makes an unfitted regressor like the forecaster's;
    ``series`` and ``exogenous`` (scaled, or None per series) are the
    validated training data. Errors are truth minus forecast, in the scale
    of each origin's context (see ``SeriesScaling``).
    """
    origins = plan_origins(
        [len(values) for values in series], layout.window_length, layout.horizon, steps
    )
    if origins is None:
        return None
    held_out = held_out_steps(origins, steps)
    kept_series, scalings, kept_rows = [], [], []
    for index, (values, rows, held) in enumerate(
        zip(series, exogenous, held_out, strict=True)
    ):
        kept = values[: len(values) - held]
        if layout.n_windows(len(kept)) >= 1:
            kept_series.append(kept)
            scalings.append(fit_scaling(kept, log_transform, f"y[{index}]"))
            kept_rows.append(None if rows is None else rows[: len(kept)])
    regressor = new_regressor()
    regressor.fit(*training_data(layout, kept_series, scalings, kept_rows))

    # Forecast from each origin as predict forecasts a new context: the
    # scaling taken from the values before the origin only.
    states, futures, outcomes = [], [], []
    for index, (values, rows, held, count) in enumerate(
        zip(series, exogenous, held_out, origins, strict=True)
    ):
        first = len(values) - held
        for origin in range(first, first + count):
            context = values[:origin]
            scaling = fit_scaling(context, log_transform, f"y[{index}]")
            states.append(series_state(context, rows, scaling, layout.window_length))
            outcomes.append(scaling.transform_outcomes(values[origin : origin + steps]))
            if rows is not None:
                futures.append(rows[origin : origin + steps])
    future = np.stack(futures) if futures else None
    predicted = forecast(regressor.predict, layout, states, future, steps)
    scales = np.stack([state.scaling.scale for state in states])
    with np.errstate(over="ignore", invalid="ignore"):
        return (np.stack(outcomes) - predicted) / scales[:, None, :]


def forecast_bounds(point, scaling, offsets):
    """Quantile forecasts of one series, mapped back: (steps, n_columns, n_levels).

    ``point`` is its transformed point forecast (steps, n_columns),
    ``offsets`` the error quantiles from :func:`error_quantiles`.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        bounds = point[:, :, None] + offsets * scaling.scale[:, None]
    # The inverse transform maps columns on the last axis; it is increasing,
    # so the order of the levels holds after it.
    return np.moveaxis(scaling.inverse(np.moveaxis(bounds, -1, 1)), 1, -1)

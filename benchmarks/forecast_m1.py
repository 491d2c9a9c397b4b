"""M1 yearly forecasting benchmark: one global LSTMForecaster against per-series
statistical methods.

The 181 yearly series of the M1 competition (shipped with aeon as
``m1_yearly_dataset``, 15 to 58 values each): forecast the last 6 values of
each from the ones before. The global forecaster (default parameters, one
model for all series, seeds given by ``--seeds``) is compared with the naive
forecast (last value), drift (the line through the first and last values)
and statsmodels' Theta method fitted per series (skipped, with a note, when
statsmodels is not installed). Metrics over all series: MASE (errors
divided by the series' in-sample mean absolute one-step change), sMAPE, the
share of held-out values inside the 90% interval (LSTM and Theta) and the
median interval width in % of the true value, and fit and predict seconds.
Prints Markdown tables (the ones in RESULTS.md).

    python benchmarks/forecast_m1.py --seeds 0 1 2 [--threads 1]
"""

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch
from aeon.datasets import load_forecasting

from sklstm.forecasting import LSTMForecaster

HORIZON = 6
COVERAGE = 0.9


def load_m1():
    frame = load_forecasting("m1_yearly_dataset")
    return [np.asarray(values, dtype=float) for values in frame["series_value"]]


def mase(train, truth, forecast):
    scale = np.mean(np.abs(np.diff(train)))
    return float(np.mean(np.abs(truth - forecast)) / scale)


def smape(truth, forecast):
    return float(
        np.mean(2 * np.abs(truth - forecast) / (np.abs(truth) + np.abs(forecast))) * 100
    )


def naive(train):
    return np.full(HORIZON, train[-1])


def drift(train):
    slope = (train[-1] - train[0]) / (len(train) - 1)
    return train[-1] + slope * np.arange(1, HORIZON + 1)


def theta(train):
    """statsmodels' Theta method (no season for yearly data), with its 90%
    interval."""
    from statsmodels.tsa.forecasting.theta import ThetaModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ThetaModel(train, period=1, deseasonalize=False).fit()
        forecast = np.asarray(result.forecast(HORIZON))
        interval = np.asarray(result.prediction_intervals(HORIZON, alpha=1 - COVERAGE))
    return forecast, interval


def covered(truths, intervals):
    """Share of held-out values inside their interval, and the median width
    of the intervals in % of the true value."""
    inside, widths = [], []
    for truth, interval in zip(truths, intervals, strict=True):
        inside.append((interval[:, 0] <= truth) & (truth <= interval[:, 1]))
        widths.append((interval[:, 1] - interval[:, 0]) / np.abs(truth) * 100)
    return float(np.mean(np.concatenate(inside))), float(
        np.median(np.concatenate(widths))
    )


def scores(trains, truths, forecasts):
    per_series = np.array(
        [
            mase(train, truth, forecast)
            for train, truth, forecast in zip(trains, truths, forecasts, strict=True)
        ]
    )
    symmetric = np.mean([smape(t, f) for t, f in zip(truths, forecasts, strict=True)])
    return per_series, symmetric


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1)"
    )
    args = parser.parse_args()
    # A 32-unit network on 16-window batches gains nothing from intra-op
    # threads.
    torch.set_num_threads(args.threads)

    series = load_m1()
    trains = [values[:-HORIZON] for values in series]
    truths = [values[-HORIZON:] for values in series]
    lengths = [len(train) for train in trains]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{len(series)} series, training lengths {min(lengths)}-{max(lengths)}"
    )
    print()

    # (method, per-series MASE, sMAPE, (coverage, width) or None, fit s,
    # predict s)
    rows = []
    for name, method in (("naive (last value)", naive), ("drift", drift)):
        started = time.perf_counter()
        forecasts = [method(train) for train in trains]
        seconds = time.perf_counter() - started
        rows.append((name, *scores(trains, truths, forecasts), None, seconds, None))

    try:
        import statsmodels  # noqa: F401
    except ModuleNotFoundError:
        theta_mase = None
        print("statsmodels is not installed: no Theta baseline.\n")
    else:
        started = time.perf_counter()
        results = [theta(train) for train in trains]
        seconds = time.perf_counter() - started
        forecasts = [forecast for forecast, _ in results]
        coverage = covered(truths, [interval for _, interval in results])
        theta_mase, theta_smape = scores(trains, truths, forecasts)
        rows.append(
            ("Theta (statsmodels)", theta_mase, theta_smape, coverage, seconds, None)
        )

    lstm_mases, settings = [], None
    for seed in args.seeds:
        forecaster = LSTMForecaster(random_state=seed)
        started = time.perf_counter()
        forecaster.fit(trains)
        fitted = time.perf_counter()
        forecasts = forecaster.predict(HORIZON)
        intervals = forecaster.predict_interval(HORIZON, coverage=COVERAGE)
        predicted = time.perf_counter()
        per_series, symmetric = scores(trains, truths, forecasts)
        lstm_mases.append(per_series)
        rows.append(
            (
                f"LSTMForecaster, seed {seed}",
                per_series,
                symmetric,
                covered(truths, intervals),
                fitted - started,
                predicted - fitted,
            )
        )
        settings = (
            f"window {forecaster.window_length_}, horizon {forecaster.horizon_}, "
            f"period {forecaster.seasonal_period_}, "
            f"{sum(forecaster.log_transform_)} of {len(trains)} series on the log "
            f"scale, {forecaster.n_windows_} training windows, "
            f"{len(forecaster.calibration_errors_)} calibration origins of "
            f"{forecaster.calibration_steps_} steps"
        )

    print(f"LSTMForecaster settings: {settings}")
    print()
    print(
        "| method | MASE | sMAPE % | 90% interval coverage | interval width % "
        "| fit s | predict s |"
    )
    print("|---|---|---|---|---|---|---|")

    def cell(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    for name, per_series, symmetric, interval, fit_s, predict_s in rows:
        coverage, width = (None, None) if interval is None else interval
        print(
            f"| {name} | {per_series.mean():.3f} | {symmetric:.2f} | "
            f"{cell(coverage, 3)} | {cell(width, 1)} | {cell(fit_s, 2)} | "
            f"{cell(predict_s, 2)} |"
        )
    lstm_rows = rows[-len(args.seeds) :]
    print(
        f"| LSTMForecaster, mean of seeds | "
        f"{np.mean([row[1].mean() for row in lstm_rows]):.3f} | "
        f"{np.mean([row[2] for row in lstm_rows]):.2f} | "
        f"{np.mean([row[3][0] for row in lstm_rows]):.3f} | "
        f"{np.mean([row[3][1] for row in lstm_rows]):.1f} | "
        f"{np.mean([row[4] for row in lstm_rows]):.2f} | "
        f"{np.mean([row[5] for row in lstm_rows]):.2f} |"
    )

    if theta_mase is not None:
        print()
        print("Per series, LSTMForecaster (each seed) against Theta, by MASE:")
        print()
        print("| seed | series where LSTM is better | median MASE ratio LSTM/Theta |")
        print("|---|---|---|")
        for seed, per_series in zip(args.seeds, lstm_mases, strict=True):
            better = int(np.sum(per_series < theta_mase))
            ratio = np.median(per_series / theta_mase)
            print(f"| {seed} | {better} of {len(per_series)} | {ratio:.2f} |")


if __name__ == "__main__":
    main()

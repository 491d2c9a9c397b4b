"""
==================================================
Forecast intervals: one model for many series
==================================================

:class:`~sklstm.forecasting.LSTMForecaster` can learn one model from a list
of series of different lengths and scales, and give forecast intervals
calibrated on held-out steps of its training series.

The first part fits one global model to the 181 yearly series of the M1
competition (shipped with ``aeon``), whose values range from tenths to tens
of millions, and forecasts the last 6 years of each with a 90% interval.
The second part forecasts the last 24 months of the Airline series with its
90% interval. Both print how many of the held-out values the intervals
contain.

Like every example, it saves its figure in the current working directory,
named after the script: ``plot_forecast_intervals.png``.
"""

# %%
# Data: each M1 series without its last 6 values, and Airline without its
# last 24 months.
import os

import matplotlib

if not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from aeon.datasets import load_airline, load_forecasting

from sklstm.forecasting import LSTMForecaster

# The network is small: one intra-op thread is fastest.
torch.set_num_threads(1)

m1 = [
    np.asarray(values, dtype=float)
    for values in load_forecasting("m1_yearly_dataset")["series_value"]
]
n_test = 6
m1_train = [values[:-n_test] for values in m1]
m1_test = [values[-n_test:] for values in m1]
print(
    f"M1 yearly: {len(m1)} series, {min(map(len, m1_train))} to "
    f"{max(map(len, m1_train))} training values, last values from "
    f"{min(v[-1] for v in m1_train):.3g} to {max(v[-1] for v in m1_train):.3g}"
)

airline = np.asarray(load_airline(), dtype=float)
air_train, air_test = airline[:-24], airline[-24:]


def inside(truth, interval):
    return (interval[:, 0] <= truth) & (truth <= interval[:, 1])


# %%
# One model for all M1 series. Each series is scaled on its own (log scale,
# level, mean one-step change), so the large ones do not drown the small
# ones. ``fit`` also trains a second network without the last steps of each
# series, whose errors on those steps calibrate the intervals.
m1_model = LSTMForecaster(random_state=0).fit(m1_train)
m1_forecasts = m1_model.predict(n_test)
m1_intervals = m1_model.predict_interval(n_test, coverage=0.9)
print(
    f"window {m1_model.window_length_}, horizon {m1_model.horizon_}, "
    f"{len(m1_model.calibration_errors_)} calibration origins"
)


def mase(train, truth, forecast):
    return np.mean(np.abs(truth - forecast)) / np.mean(np.abs(np.diff(train)))


m1_mase = np.mean(
    [mase(*parts) for parts in zip(m1_train, m1_test, m1_forecasts, strict=True)]
)
m1_coverage = np.mean(
    np.concatenate(
        [inside(*parts) for parts in zip(m1_test, m1_intervals, strict=True)]
    )
)
print(f"M1: MASE {m1_mase:.2f}, 90% intervals contain {m1_coverage:.0%} of the values")

# %%
# Airline: a single series, 12-month season, 24 months ahead. The intervals
# are calibrated on 12 steps ahead (one season, the direct horizon) and
# widen with the square root of the step beyond that.
air_model = LSTMForecaster(random_state=0).fit(air_train)
air_forecast = air_model.predict(24)
air_interval = air_model.predict_interval(24, coverage=0.9)
air_mape = np.mean(np.abs(air_test - air_forecast) / air_test) * 100
air_coverage = inside(air_test, air_interval).mean()
print(
    f"Airline: MAPE {air_mape:.2f}%, 90% intervals contain {air_coverage:.0%} "
    "of the 24 months"
)

# %%
# Four M1 series from the smallest to the largest, and Airline: history, the
# held-out truth, the forecast and its 90% interval.
order = np.argsort([values[-1] for values in m1_train])
chosen = order[np.linspace(0, len(order) - 1, 4).astype(int)]
fig, axes = plt.subplots(1, 5, figsize=(16, 3.6))
panels = [
    (m1_train[i], m1_test[i], m1_forecasts[i], m1_intervals[i], f"M1 series {i}")
    for i in chosen
]
panels.append((air_train, air_test, air_forecast, air_interval, "Airline"))
for ax, (train, truth, forecast, interval, title) in zip(axes, panels, strict=True):
    history = np.arange(len(train))
    future = np.arange(len(train), len(train) + len(truth))
    ax.plot(history, train, color="black", linewidth=1)
    ax.plot(future, truth, color="black", linestyle="--", linewidth=1)
    ax.plot(future, forecast, color="tab:blue")
    ax.fill_between(
        future, interval[:, 0], interval[:, 1], color="tab:blue", alpha=0.25
    )
    ax.set_title(title)
    ax.set_xlabel("step")
axes[0].legend(["history", "truth", "forecast", "90% interval"], loc="upper left")
fig.tight_layout()
fig.savefig("plot_forecast_intervals.png", dpi=100)  # current working directory
plt.show()

"""
=============================================
Forecasting airline passengers with an LSTM
=============================================

:class:`~sklstm.forecasting.LSTMForecaster` learns from a raw series and
forecasts the steps after its end. Here it forecasts the last two years of the
classic Airline series (monthly passengers, 1949-1960, shipped with ``aeon``)
from the ten years before, with its default settings: log scale, detected
12-month season, 24-month windows, each forecast a correction to the
seasonal-naive one.

Both strategies are shown: ``"direct"`` predicts 12 months per window and
chains two blocks; ``"recursive"`` predicts one month at a time and feeds each
prediction back as input. Each is fitted with three seeds; MAPE is printed
beside classical baselines measured on the same split.

Like every example, it saves its figure in the current working directory,
named after the script: ``plot_airline_forecast.png``.
"""

# %%
# Data: 144 monthly values; the last 24 are held out.
import os

import matplotlib

if not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from aeon.datasets import load_airline

from sklstm.forecasting import LSTMForecaster

# The network is small: one intra-op thread is fastest (several threads mostly
# wait on each other, badly so on a busy machine).
torch.set_num_threads(1)

y = np.asarray(load_airline(), dtype=float)
n_test = 24
train, test = y[:-n_test], y[-n_test:]


def mape(truth, forecast):
    return float(np.mean(np.abs(truth - forecast) / truth) * 100)


# %%
# Fit and forecast. Nothing after the 120th month is seen by ``fit``.
seeds = (0, 1, 2)
forecasts = {}
scores = {}
for strategy in ("direct", "recursive"):
    forecasts[strategy] = []
    for seed in seeds:
        forecaster = LSTMForecaster(strategy=strategy, random_state=seed)
        forecasts[strategy].append(forecaster.fit(train).predict(n_test))
    scores[strategy] = [mape(test, forecast) for forecast in forecasts[strategy]]

print(
    f"season {forecaster.seasonal_period_}, window {forecaster.window_length_}, "
    f"log scale {forecaster.log_transform_}"
)

# %%
# MAPE on the 24 held-out months. The seasonal-naive forecast (repeat the last
# year) is computed here; the other baselines were measured on the same split
# with statsmodels and scikit-learn, which this example does not need.
seasonal_naive = mape(test, np.tile(train[-12:], 2))
rows = [
    ("seasonal naive", seasonal_naive),
    ("SARIMA (0,1,1)(0,1,1)12 on logs", 8.5),
    ("Holt-Winters multiplicative", 6.4),
    ("ridge, 24-month log windows (recursive)", 4.7),
]
for strategy in ("direct", "recursive"):
    per_seed = ", ".join(f"{score:.2f}" for score in scores[strategy])
    rows.append(
        (f"LSTMForecaster {strategy} (seeds {per_seed})", np.mean(scores[strategy]))
    )
width = max(len(name) for name, _ in rows)
print(f"{'model':<{width}}  MAPE %")
for name, score in rows:
    print(f"{name:<{width}}  {score:6.2f}")

# %%
# History, held-out truth and the forecasts (seed 0 of each strategy).
months = np.arange(len(y))
fig, ax = plt.subplots(figsize=(9, 4.5))
ax.plot(months[: len(train)], train, color="black", label="history")
ax.plot(months[len(train) :], test, color="black", linestyle="--", label="truth")
for strategy, color in (("direct", "tab:blue"), ("recursive", "tab:orange")):
    ax.plot(
        months[len(train) :],
        forecasts[strategy][0],
        color=color,
        label=f"{strategy} (MAPE {scores[strategy][0]:.1f}%)",
    )
ax.axvline(len(train) - 0.5, color="grey", linewidth=0.8)
ax.set_xlabel("month since January 1949")
ax.set_ylabel("passengers (thousands)")
ax.set_title("Airline: last 24 months forecast by LSTMForecaster")
ax.legend(loc="upper left")
fig.tight_layout()
fig.savefig("plot_airline_forecast.png", dpi=100)  # current working directory
plt.show()

"""Airline forecasting benchmark for LSTMForecaster.

Fit on the first 120 months, forecast the last 24, report MAPE per seed and
the mean for both strategies, with default parameters, and the share of the
24 held-out months inside the 90% forecast interval (``predict_interval``)
and its mean width in % of the true value, averaged over seeds. Prints a
Markdown table (the one in RESULTS.md).

    python benchmarks/forecast_airline.py --seeds 0 1 2 [--threads 1]
"""

import argparse
import os
import platform
import time

import numpy as np
import torch
from aeon.datasets import load_airline

from sklstm.forecasting import LSTMForecaster


def mape(truth, forecast):
    return float(np.mean(np.abs(truth - forecast) / truth) * 100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1)"
    )
    args = parser.parse_args()
    # A 32-unit network on 16-window batches gains nothing from intra-op
    # threads; on a busy 2-core machine two threads ran ~10x slower than one.
    torch.set_num_threads(args.threads)

    y = np.asarray(load_airline(), dtype=float)
    train, test = y[:120], y[120:]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print()
    seed_columns = " | ".join(f"seed {seed}" for seed in args.seeds)
    print(
        f"| strategy | {seed_columns} | mean MAPE | 90% interval coverage "
        "| interval width % | fit+predict s/seed |"
    )
    print("|---" * (len(args.seeds) + 5) + "|")
    for strategy in ("direct", "recursive"):
        scores, coverages, widths = [], [], []
        started = time.perf_counter()
        for seed in args.seeds:
            forecaster = LSTMForecaster(strategy=strategy, random_state=seed)
            forecast = forecaster.fit(train).predict(len(test))
            interval = forecaster.predict_interval(len(test), coverage=0.9)
            scores.append(mape(test, forecast))
            coverages.append(
                np.mean((interval[:, 0] <= test) & (test <= interval[:, 1]))
            )
            widths.append(np.mean((interval[:, 1] - interval[:, 0]) / test) * 100)
        seconds = (time.perf_counter() - started) / len(args.seeds)
        cells = " | ".join(f"{score:.2f}" for score in scores)
        print(
            f"| {strategy} | {cells} | {np.mean(scores):.2f} | "
            f"{np.mean(coverages):.3f} | {np.mean(widths):.1f} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()

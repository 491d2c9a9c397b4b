"""Coverage and width of LSTMRegressor's calibrated prediction intervals.

For each dataset and ``interval_width`` ("constant", "adaptive"): the share
of test targets inside ``predict_interval(X_test, coverage=0.9)`` (the
empirical coverage), the intervals' mean width, the point predictions'
RMSE and the fit time, each the mean over seeds 0-2 (coverage also as the
range over seeds). Every fit is ``LSTMRegressor(interval_width=...,
calibration=..., early_stopping=True, random_state=seed)``, all else
default. The intervals are calibrated on the validation split early
stopping holds out, and with ``calibration="cross"`` (what "auto" picks
below 100 validation sequences) also on what up to four more networks held
out ("calib": how many sequences calibrated in all). By default the table
has the default calibration ("auto") and the split alone ("split") side by
side.

Datasets: aeon's regression sets Covid3Month and CardanoSentiment (shipped
offline with aeon, standard train/test splits), and a generated
heteroscedastic set, whose noise grows with a feature: its test set is cut
at the median noise into a low-noise and a high-noise half, and the table
gives the mean width in each ("width low/high").

Issue 20's targets: 90% intervals cover 85-95% of the test targets, and on
the generated set are narrower where the noise is lower.

Usage::

    python benchmarks/intervals.py             # everything, seeds 0-2
    python benchmarks/intervals.py --quick     # seed 0 only
    python benchmarks/intervals.py --json      # also one JSON line per fit
    python benchmarks/intervals.py --calibration auto   # defaults only

torch's thread count follows ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
from accuracy import machine  # this folder's accuracy.py

NOMINAL = 0.9
TARGET_COVERAGE = (0.85, 0.95)
REAL_DATASETS = ("Covid3Month", "CardanoSentiment")
GENERATED = "heteroscedastic"
MODES = ("constant", "adaptive")


def load_real(name):
    """``(X_train, y_train), (X_test, y_test)`` of an aeon regression set."""
    from aeon.datasets import load_regression

    from sklstm import from_channels_first

    splits = []
    for split in ("train", "test"):
        X, y = load_regression(name, split=split)
        splits.append((from_channels_first(X), np.asarray(y, dtype=float)))
    return splits, None


def load_generated(n_train=1000, n_test=1000, n_timesteps=20, seed=12345):
    """Sequences of two features; the target is the mean of the last five
    steps of feature 0, plus noise whose standard deviation grows from 0.1
    to 1.1 with feature 1 (each sequence's own level, constant over its
    steps). Returns the splits and the test noise levels."""
    rng = np.random.RandomState(seed)
    n = n_train + n_test
    signal = rng.normal(size=(n, n_timesteps))
    level = rng.uniform(size=n)
    X = np.stack([signal, np.repeat(level[:, None], n_timesteps, axis=1)], axis=-1)
    noise = 0.1 + level
    y = 2 * signal[:, -5:].mean(axis=1) + noise * rng.normal(size=n)
    X = X.astype(np.float32)
    splits = [(X[:n_train], y[:n_train]), (X[n_train:], y[n_train:])]
    return splits, noise[n_train:]


def run(train, test, noise, mode, calibration, seed):
    from sklstm import LSTMRegressor

    model = LSTMRegressor(
        interval_width=mode,
        calibration=calibration,
        early_stopping=True,
        random_state=seed,
    )
    start = time.perf_counter()
    model.fit(*train)
    seconds = time.perf_counter() - start
    X_test, y_test = test
    lower, upper = model.predict_interval(X_test, coverage=NOMINAL).T
    width = upper - lower
    result = {
        "coverage": float(np.mean((lower <= y_test) & (y_test <= upper))),
        "width": float(width.mean()),
        "rmse": float(np.sqrt(np.mean((model.predict(X_test) - y_test) ** 2))),
        "seconds": seconds,
        "epochs": model.n_iter_,
        "calibration": model._calibration["size"],
    }
    if noise is not None:
        low = noise <= np.median(noise)
        result["width_low"] = float(width[low].mean())
        result["width_high"] = float(width[~low].mean())
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON line per fit")
    parser.add_argument(
        "--calibration",
        nargs="+",
        default=["auto", "split"],
        choices=["auto", "split", "cross"],
        help="the calibration settings to run (default: auto split)",
    )
    args = parser.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))

    header = (
        f"{'dataset':<17} {'mode':<9} {'calib.':<6} {'nominal':>7} {'coverage':>8} "
        f"{'range':>11} {'target':>6} {'width':>8} {'width low/high':>15} "
        f"{'RMSE':>8} {'fit s':>6} {'epochs':>6} {'calib':>5}"
    )
    print(f"# {time.strftime('%Y-%m-%d')} on {machine()}")
    print(header)
    print("-" * len(header))
    datasets = {name: (lambda name=name: load_real(name)) for name in REAL_DATASETS}
    datasets[GENERATED] = load_generated
    for name, loader in datasets.items():
        (train, test), noise = loader()
        for mode, calibration in itertools.product(MODES, args.calibration):
            results = []
            for seed in seeds:
                result = run(train, test, noise, mode, calibration, seed)
                results.append(result)
                if args.json:
                    record = {
                        "dataset": name,
                        "mode": mode,
                        "calibration": calibration,
                        "seed": seed,
                        **result,
                    }
                    print(json.dumps(record), flush=True)

            def mean(key, results=results):
                return np.mean([result[key] for result in results])

            coverages = [result["coverage"] for result in results]
            met = TARGET_COVERAGE[0] <= mean("coverage") <= TARGET_COVERAGE[1]
            low_high = (
                f"{mean('width_low'):.3g} / {mean('width_high'):.3g}"
                if noise is not None
                else ""
            )
            print(
                f"{name:<17} {mode:<9} {calibration:<6} {NOMINAL:>7.2f} "
                f"{mean('coverage'):>8.3f} "
                f"{min(coverages):>5.3f}-{max(coverages):.3f} "
                f"{'met' if met else 'missed':>6} {mean('width'):>8.4g} "
                f"{low_high:>15} {mean('rmse'):>8.4g} {mean('seconds'):>6.1f} "
                f"{mean('epochs'):>6.0f} {mean('calibration'):>5.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Accuracy of the default estimators on real datasets shipped with aeon.

For each dataset: sklstm's score with default parameters (mean and spread
over seeds), MiniRocket's score from aeon, and the fit time of each, on the
standard train/test splits. Classification reports accuracy, regression RMSE.

Usage::

    python benchmarks/accuracy.py                 # the four target datasets
    python benchmarks/accuracy.py --quick         # one seed, no MiniRocket
    python benchmarks/accuracy.py GunPoint --extra
    python benchmarks/accuracy.py --set hidden_size=32 --set pooling=mean

``--set`` overrides a default (the value is read as a Python literal), which
is how the defaults were compared; the published table uses none. torch's
thread count follows ``OMP_NUM_THREADS``; on a machine shared with other
jobs, ``OMP_NUM_THREADS=1`` avoids threads spinning against each other.
"""

from __future__ import annotations

import argparse
import ast
import json
import time

import numpy as np

TARGETS = {
    "JapaneseVowels": ("classification", 0.98),
    "BasicMotions": ("classification", 0.975),
    "ItalyPowerDemand": ("classification", 0.96),
    "Covid3Month": ("regression", 0.042),
}
# Longer series and regression, with the targets of issue 19 (real datasets
# shipped offline with aeon).
EXTRA = {
    "GunPoint": ("classification", 0.99),
    "ArrowHead": ("classification", 0.85),
    "OSULeaf": ("classification", 0.93),
    "PickupGestureWiimoteZ": ("classification", 0.80),
    "CardanoSentiment": ("regression", 0.30),
    # A long series (1,460 steps) without a target: how the defaults do past
    # 500 steps, where the network reads several steps at a time.
    "ACSF1": ("classification", None),
}


def load(name, task):
    from aeon.datasets import load_classification, load_regression

    from sklstm import from_channels_first

    loader = load_classification if task == "classification" else load_regression
    splits = []
    for split in ("train", "test"):
        X, y = loader(name, split=split)
        if task == "regression":
            y = np.asarray(y, dtype=float)
        splits.append((X, from_channels_first(X), y))
    return splits


def score(task, y_true, y_pred):
    if task == "classification":
        return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))
    return float(np.sqrt(np.mean((np.asarray(y_true) - y_pred) ** 2)))


def run_sklstm(task, train, test, seed, overrides):
    from sklstm import LSTMClassifier, LSTMRegressor

    estimator = LSTMClassifier if task == "classification" else LSTMRegressor
    model = estimator(random_state=seed, **overrides)
    start = time.perf_counter()
    model.fit(train[1], train[2])
    seconds = time.perf_counter() - start
    return score(task, test[2], model.predict(test[1])), seconds, model.n_iter_


def equal_length(train_X, test_X):
    """Series zero-padded to one length: MiniRocket takes no ragged input."""
    if not isinstance(train_X, list):
        return train_X, test_X
    length = max(series.shape[1] for series in train_X + test_X)

    def pad(collection):
        padded = np.zeros((len(collection), collection[0].shape[0], length))
        for row, series in enumerate(collection):
            padded[row, :, : series.shape[1]] = series
        return padded

    return pad(train_X), pad(test_X)


def run_minirocket(task, train, test, seed):
    if task == "classification":
        from aeon.classification.convolution_based import MiniRocketClassifier

        model = MiniRocketClassifier(random_state=seed)
    else:
        from aeon.regression.convolution_based import MiniRocketRegressor

        model = MiniRocketRegressor(random_state=seed)
    train_X, test_X = equal_length(train[0], test[0])
    start = time.perf_counter()
    model.fit(train_X, train[2])
    seconds = time.perf_counter() - start
    return score(task, test[2], model.predict(test_X)), seconds


def machine():
    """CPU model, cores and torch threads, for the table's header."""
    import os
    import platform

    import torch

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help="default: the target datasets")
    parser.add_argument("--extra", action="store_true", help="add the extra sets")
    parser.add_argument("--quick", action="store_true", help="seed 0, no MiniRocket")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-minirocket", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", action="store_true", help="one JSON line per fit")
    args = parser.parse_args()

    overrides = {}
    for item in args.set:
        name, value = item.split("=", 1)
        try:
            overrides[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[name] = value
    known = {**TARGETS, **EXTRA}
    names = args.datasets or list(TARGETS)
    if args.extra:
        names += [name for name in EXTRA if name not in names]
    seeds = [0] if args.quick else list(range(args.seeds))
    minirocket = not (args.quick or args.no_minirocket)

    # "max s": the slowest of the seeds' fits; "mean y": for regression, the
    # RMSE of predicting the training mean, which a default fit must beat.
    header = (
        f"{'dataset':<22} {'metric':<8} {'sklstm mean':>11} {'spread':>15} "
        f"{'fit s':>6} {'max s':>6} {'epochs':>6} {'target':>7} {'mean y':>7} "
        f"{'MiniRocket':>10} {'fit s':>6}"
    )
    print(f"# {time.strftime('%Y-%m-%d')} on {machine()}")
    if overrides:
        print(f"# overrides: {overrides}")
    print(header)
    print("-" * len(header))
    for name in names:
        task, target = known.get(name, ("classification", None))
        train, test = load(name, task)
        results = []
        for seed in seeds:
            result = run_sklstm(task, train, test, seed, overrides)
            results.append(result)
            if args.json:
                print(
                    json.dumps(
                        {
                            "dataset": name,
                            "seed": seed,
                            "score": result[0],
                            "seconds": result[1],
                            "epochs": result[2],
                            "overrides": overrides,
                        }
                    ),
                    flush=True,
                )
        scores = np.array([r[0] for r in results])
        seconds = np.mean([r[1] for r in results])
        slowest = np.max([r[1] for r in results])
        baseline = ""
        if task == "regression":
            baseline = (
                f"{score(task, test[2], np.full(len(test[2]), np.mean(train[2]))):.4f}"
            )
        epochs = np.mean([r[2] for r in results])
        metric = "accuracy" if task == "classification" else "RMSE"
        spread = f"{scores.min():.3f}-{scores.max():.3f}"
        rocket = (
            ""
            if not minirocket
            else "{:>10.3f} {:>6.1f}".format(*run_minirocket(task, train, test, 0))
        )
        target_text = "" if target is None else f"{target:.3f}"
        print(
            f"{name:<22} {metric:<8} {scores.mean():>11.4f} {spread:>15} "
            f"{seconds:>6.1f} {slowest:>6.1f} {epochs:>6.0f} {target_text:>7} "
            f"{baseline:>7} {rocket}",
            flush=True,
        )


if __name__ == "__main__":
    main()

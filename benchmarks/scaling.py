"""Default fit time and prediction throughput against sequence length.

For each length, a default ``LSTMClassifier`` (no parameter set but
``random_state``) is fitted on generated univariate sequences whose label is
the sign of a bump placed at random along the sequence, then predicts
another set of the same size. Prints one table: fit seconds, epochs (what
``max_epochs="auto"`` chose), recurrent stride, test accuracy and
prediction throughput. Run it on an otherwise idle machine:

``python benchmarks/scaling.py [--lengths 100 250 500 1000 2000 --samples 200]``

On a GPU machine ``benchmarks/gpu_check.sh`` runs it with ``--device cuda``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def make_data(n_samples, n_timesteps, seed):
    """Noise with one bump of random sign at a random place; label: its sign."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=0.5, size=(n_samples, n_timesteps, 1)).astype(np.float32)
    y = rng.integers(0, 2, n_samples)
    width = max(3, n_timesteps // 20)
    starts = rng.integers(0, n_timesteps - width, n_samples)
    for row, (start, label) in enumerate(zip(starts, y, strict=True)):
        X[row, start : start + width, 0] += 1.5 if label else -1.5
    return X, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[100, 250, 500, 1000, 2000]
    )
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from sklstm import LSTMClassifier

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, device {args.device}; "
        f"{args.samples} training and {args.samples} test sequences"
    )
    header = (
        f"{'length':>7} {'fit s':>7} {'epochs':>7} {'stride':>7} "
        f"{'accuracy':>9} {'predict seq/s':>14}"
    )
    print(header)
    print("-" * len(header))
    for length in args.lengths:
        X, y = make_data(args.samples, length, seed=0)
        X_test, y_test = make_data(args.samples, length, seed=1)
        model = LSTMClassifier(random_state=0, device=args.device)
        start = time.perf_counter()
        model.fit(X, y)
        fit_seconds = time.perf_counter() - start
        model.predict(X_test[:8])  # first call's kernel set-up, not throughput
        start = time.perf_counter()
        predicted = model.predict(X_test)
        throughput = len(X_test) / (time.perf_counter() - start)
        print(
            f"{length:>7} {fit_seconds:>7.1f} {model.n_iter_:>7} "
            f"{model.net_.module_.recurrent_stride:>7} "
            f"{np.mean(predicted == y_test):>9.3f} {throughput:>14.0f}"
        )


if __name__ == "__main__":
    main()

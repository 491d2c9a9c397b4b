"""Peak memory of fitting on a large in-memory data set.

N=200,000 sequences x T=50 steps x F=16 features in float32 is 640 MB. A fit
that makes no extra full copy of the data and keeps no per-sample Python
objects stays well under 1.6 GB peak resident memory (data, torch and the
interpreter included). Prints the figures; run it in a fresh process:

``python benchmarks/memory.py [--epochs 1]``
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch

from sklstm import LSTMClassifier

N_SAMPLES, N_TIMESTEPS, N_FEATURES = 200_000, 50, 16


def resident_mb():
    """Current resident memory of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--early-stopping", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = np.empty((N_SAMPLES, N_TIMESTEPS, N_FEATURES), dtype=np.float32)
    for start in range(0, N_SAMPLES, 10_000):  # fill without a float64 temporary
        X[start : start + 10_000] = rng.standard_normal(
            (min(10_000, N_SAMPLES - start), N_TIMESTEPS, N_FEATURES),
            dtype=np.float32,
        )
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    before = resident_mb()
    clf = LSTMClassifier(
        hidden_size=32,
        max_epochs=args.epochs,
        batch_size=256,
        early_stopping=args.early_stopping,
        device="cpu",
        random_state=0,
    )
    start = time.perf_counter()
    clf.fit(X, y)
    seconds = time.perf_counter() - start
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, torch "
        f"{torch.__version__}; N={N_SAMPLES} T={N_TIMESTEPS} F={N_FEATURES} "
        f"float32, {args.epochs} epoch(s), early_stopping={args.early_stopping}"
    )
    print()
    print("| data (MB) | resident before fit (MB) | peak resident (MB) | fit s |")
    print("|---|---|---|---|")
    print(
        f"| {X.nbytes / 2**20:.0f} | {before:.0f} | {peak_mb():.0f} | {seconds:.0f} |"
    )


if __name__ == "__main__":
    main()

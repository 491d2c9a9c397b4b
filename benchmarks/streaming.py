"""GPU fits of data that stays on the device vs data streamed from the host.

sklstm moves the training data to the GPU once when it takes at most a
share of the free device memory; larger data stays in host memory and each
training batch is gathered into pinned memory and copied asynchronously
(prediction copies its batches from ordinary memory either way). This script
fits the same data both ways (streaming forced by setting that share to
zero), each in a fresh process so that peak resident memory is its own, and
prints fit and prediction seconds and peak host memory. Streaming should
cost some time but no second host copy of the data.

Run on a GPU machine: ``python benchmarks/streaming.py [--n-samples 100000]``
(``--device cpu`` only checks that the script runs).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from overhead import _sync  # this folder's overhead.py

from sklstm import LSTMClassifier, _data

N_TIMESTEPS, N_FEATURES = 100, 32


def peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(mode, n_samples, epochs, device):
    """One fit and one ``predict_proba``, with the data ``mode`` says."""
    X = np.random.default_rng(0).standard_normal(
        (n_samples, N_TIMESTEPS, N_FEATURES), dtype=np.float32
    )
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    if mode == "streamed":
        _data._RESIDENT_SHARE = 0.0
    clf = LSTMClassifier(
        hidden_size=256,
        batch_size=256,
        max_epochs=1,
        early_stopping=False,
        dropout=0.0,
        device=device,
        random_state=0,
    )
    clf.fit(X[:2048], y[:2048])  # warm-up: kernels, allocator caches
    before = peak_gb()
    clf.set_params(max_epochs=epochs)
    start = time.perf_counter()
    clf.fit(X, y)
    _sync(device)
    fit_seconds = time.perf_counter() - start
    after_fit = peak_gb()
    start = time.perf_counter()
    clf.predict_proba(X)
    predict_seconds = time.perf_counter() - start
    return dict(
        data_gb=X.nbytes / 2**30,
        fit_s=fit_seconds,
        predict_s=predict_seconds,
        peak_before_gb=before,
        peak_after_gb=after_fit,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--child", choices=["resident", "streamed"])
    args = parser.parse_args()
    if args.child:
        result = measure(args.child, args.n_samples, args.epochs, args.device)
        print(json.dumps(result))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run this on a GPU machine")
    where = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    rows = []
    for mode in ("resident", "streamed"):
        child = subprocess.run(
            [sys.executable, __file__, "--child", mode]
            + ["--n-samples", str(args.n_samples), "--epochs", str(args.epochs)]
            + ["--device", args.device],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append((mode, json.loads(child.stdout.strip().splitlines()[-1])))
    data_gb = rows[0][1]["data_gb"]
    print(
        f"# {time.strftime('%Y-%m-%d')}, {where}, torch {torch.__version__}; "
        f"N={args.n_samples} T={N_TIMESTEPS} F={N_FEATURES} float32 "
        f"({data_gb:.2f} GiB), hidden 256, batch 256, {args.epochs} epochs"
    )
    print()
    print(
        "| data | fit (s) | predict_proba (s) | peak host memory before fit (GiB) "
        "| after fit (GiB) |"
    )
    print("|---|---|---|---|---|")
    for mode, r in rows:
        print(
            f"| {mode} | {r['fit_s']:.2f} | {r['predict_s']:.2f} | "
            f"{r['peak_before_gb']:.2f} | {r['peak_after_gb']:.2f} |"
        )


if __name__ == "__main__":
    main()

"""Fitting on a memory-mapped array several times larger than the fit's memory.

Writes N x T=50 x F=16 float32 sequences to a ``.npy`` file (``--dir``,
default the system's temporary folder), then, each in a fresh child process:

- **streamed**: ``np.load(path, mmap_mode="r")`` passed to ``fit`` and
  ``predict_proba`` as it is; sklstm reads it batch by batch. The file is
  evicted from the page cache first (``posix_fadvise``), so the statistics
  pass reads it from disk; the epoch then finds what the page cache kept.
- **in memory**: the same file loaded whole with ``np.load`` first.

Prints per mode the peak resident memory of the child (VmHWM: interpreter,
torch and data included) after ``fit`` and after ``predict_proba``, the
fit's first pass (statistics and checks: the fit's time less its epoch),
the epoch's throughput (sequences per second, from skorch's epoch timer)
and ``predict_proba``'s. One epoch, batch 256, hidden 32, default
architecture, no early stopping, one CPU thread.

``python benchmarks/out_of_core.py [--n-samples 1000000] [--dir /tmp]
[--modes streamed "in memory"]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

N_TIMESTEPS, N_FEATURES = 50, 16
CHUNK = 10_000


def status_mb(field):
    """A memory figure of this process from /proc/self/status (Linux), MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def write_data(path, n_samples):
    """Random sequences in a .npy file, written chunk by chunk; the labels."""
    rng = np.random.default_rng(0)
    X = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(n_samples, N_TIMESTEPS, N_FEATURES)
    )
    y = np.empty(n_samples, dtype=np.int64)
    for start in range(0, n_samples, CHUNK):
        stop = min(start + CHUNK, n_samples)
        values = rng.standard_normal(
            (stop - start, N_TIMESTEPS, N_FEATURES), dtype=np.float32
        )
        X[start:stop] = values
        y[start:stop] = values[:, :, 0].mean(axis=1) > 0
    X.flush()
    del X
    return y


def evict(path):
    """Drop the file from the page cache, so that the next read is from disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def child(mode, path, labels_path):
    torch.set_num_threads(1)
    from sklstm import LSTMClassifier

    y = np.load(labels_path)
    # Warm-up on a little data in memory: imports, kernels, allocator.
    rng = np.random.default_rng(1)
    LSTMClassifier(hidden_size=32, max_epochs=1, batch_size=256, device="cpu").fit(
        rng.standard_normal((512, N_TIMESTEPS, N_FEATURES), dtype=np.float32),
        rng.integers(0, 2, 512),
    )
    start = time.perf_counter()
    if mode == "streamed":
        evict(path)
        X = np.load(path, mmap_mode="r")
    else:
        X = np.load(path)
    load_seconds = time.perf_counter() - start
    before_mb = status_mb("VmRSS")
    clf = LSTMClassifier(
        hidden_size=32,
        max_epochs=1,
        batch_size=256,
        early_stopping=False,
        device="cpu",
        n_threads=1,
        random_state=0,
    )
    start = time.perf_counter()
    clf.fit(X, y)
    fit_seconds = time.perf_counter() - start
    epoch_seconds = float(clf.history_[-1, "dur"])
    fit_peak_mb = status_mb("VmHWM")
    start = time.perf_counter()
    proba = clf.predict_proba(X)
    predict_seconds = time.perf_counter() - start
    accuracy = float((clf.classes_[proba.argmax(axis=1)] == y).mean())
    return dict(
        data_mb=X.nbytes / 2**20,
        load_s=load_seconds,
        before_mb=before_mb,
        fit_peak_mb=fit_peak_mb,
        peak_mb=status_mb("VmHWM"),
        first_pass_s=fit_seconds - epoch_seconds,
        epoch_s=epoch_seconds,
        train_per_s=len(X) / epoch_seconds,
        predict_per_s=len(X) / predict_seconds,
        accuracy=accuracy,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["streamed", "in memory"],
        choices=["streamed", "in memory"],
    )
    parser.add_argument("--child", choices=["streamed", "in memory"])
    parser.add_argument("--path")
    parser.add_argument("--labels")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.labels)))
        return
    # Other work on the machine slows the fits: the load average says how much.
    start_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "X.npy")
        labels = os.path.join(folder, "y.npy")
        np.save(labels, write_data(path, args.n_samples))
        rows = []
        for mode in args.modes:
            result = subprocess.run(
                [sys.executable, __file__, "--child", mode]
                + ["--path", path, "--labels", labels],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            )
            rows.append((mode, json.loads(result.stdout.strip().splitlines()[-1])))
    data_mb = rows[0][1]["data_mb"]
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs (1 thread used), torch {torch.__version__}; "
        f"N={args.n_samples} T={N_TIMESTEPS} F={N_FEATURES} float32 "
        f"({data_mb:.0f} MiB), hidden 32, batch 256, 1 epoch; load average "
        f"{start_load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print()
    print(
        "| X | resident before fit (MiB) | peak in fit (MiB) "
        "| peak with predict (MiB) | data / peak "
        "| load (s) | first pass (s) | epoch (s) | train seq/s | predict seq/s "
        "| train accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for mode, r in rows:
        print(
            f"| {mode} | {r['before_mb']:.0f} | {r['fit_peak_mb']:.0f} | "
            f"{r['peak_mb']:.0f} | "
            f"{r['data_mb'] / r['peak_mb']:.1f} | "
            f"{r['load_s']:.1f} | {r['first_pass_s']:.1f} | {r['epoch_s']:.0f} | "
            f"{r['train_per_s']:.0f} | {r['predict_per_s']:.0f} | "
            f"{r['accuracy']:.3f} |"
        )


if __name__ == "__main__":
    main()

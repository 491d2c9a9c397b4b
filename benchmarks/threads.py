"""Fit time with ``n_threads`` settings, alone and beside other CPU work.

A default ``LSTMClassifier`` (``max_epochs`` fixed so every row trains as
long) is fitted on generated sequences, each setting in its own process, with
the machine idle and with a competing process running beside it: a plain
Python loop (one busy thread) or a torch job with its default threads. Prints
one table; run it on an otherwise idle machine:

``python benchmarks/threads.py [--samples 200 --timesteps 30 --features 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

COMPETITORS = {
    "idle": None,
    "python loop": "while True: pass",
    "torch job": ("import torch\na = torch.randn(600, 600)\nwhile True:\n    a @ a\n"),
}

FIT = """
import json, sys, time
import numpy as np
import torch
from sklstm import LSTMClassifier
samples, timesteps, features, epochs, n_threads = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.standard_normal((samples, timesteps, features)).astype(np.float32)
y = (X[:, : timesteps // 2, 0].sum(axis=1) > 0).astype(int)
n_threads = n_threads if n_threads == "auto" else int(n_threads)
start = time.perf_counter()
LSTMClassifier(max_epochs=epochs, n_threads=n_threads, random_state=0).fit(X, y)
print(json.dumps(time.perf_counter() - start))
"""


def time_fit(args, n_threads):
    config = json.dumps(
        [args.samples, args.timesteps, args.features, args.epochs, n_threads]
    )
    output = subprocess.run(
        [sys.executable, "-c", FIT, config],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--timesteps", type=int, default=30)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--settings", nargs="+", default=["auto", "1", "2"])
    args = parser.parse_args()

    import torch

    print(
        f"# {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} "
        f"(default {torch.get_num_threads()} threads); fit of "
        f"{args.samples} x {args.timesteps} x {args.features}, "
        f"{args.epochs} epochs"
    )
    header = f"{'beside':<12}" + "".join(
        f"{'n_threads=' + s:>16}" for s in args.settings
    )
    print(header)
    print("-" * len(header))
    for name, code in COMPETITORS.items():
        competitor = None
        if code is not None:
            competitor = subprocess.Popen([sys.executable, "-c", code])
            time.sleep(2)  # let it get going (torch's import takes a moment)
        try:
            seconds = [time_fit(args, setting) for setting in args.settings]
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
        print(f"{name:<12}" + "".join(f"{s:>15.1f}s" for s in seconds))


if __name__ == "__main__":
    main()

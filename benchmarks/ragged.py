"""Ragged sequences: sklstm's length bucketing vs padding everything.

The usual way to train on sequences of different lengths is to pad them all
to the longest and run a torch loop over the padded tensor, reading each
sequence's output at its last valid step. sklstm batches similar lengths
together and runs each batch only as far as its longest sequence. Same model
(LSTM, last valid state, linear layer), data, epochs and batch size; the
table shows fit seconds and test accuracy. Both models make only a handful
of errors, so accuracy is measured on 2,000 test sequences and the
difference is paired by seed, with its standard error.

Run: ``python benchmarks/ragged.py [--rounds 3]``; RESULTS.md quotes
``--rounds 20``, enough rounds for the accuracy difference to mean something.

``python benchmarks/ragged.py --predict`` measures prediction instead: 1,000
sequences of 5 steps and one of 100,000 steps, predicted together and
separately by a fitted default ``LSTMClassifier`` (one label per sequence,
and one per step). Together should cost about what separately does. Each
measurement runs in a fresh process, whose address space is capped at
``--memory-cap`` GB so that a runaway allocation fails (and prediction's
retry with smaller batches takes over) instead of exhausting a shared
machine; the table shows seconds and the growth of peak resident memory
during the ``predict_proba`` calls.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sklstm import LSTMClassifier

N_TRAIN, N_TEST, N_FEATURES = 1500, 2000, 8
HIDDEN, BATCH, EPOCHS = 32, 32, 4


def make_data(n_samples, seed):
    """Lengths log-uniform in 10..500; the class shifts feature 0."""
    rng = np.random.RandomState(seed)
    lengths = np.exp(rng.uniform(np.log(10), np.log(500), n_samples)).astype(int)
    y = rng.randint(0, 2, n_samples)
    X = []
    for length, label in zip(lengths, y, strict=True):
        sequence = rng.normal(size=(length, N_FEATURES)).astype(np.float32)
        sequence[:, 0] += 0.6 if label else -0.6
        X.append(sequence)
    return X, y


def pad_all(X):
    lengths = torch.tensor([len(x) for x in X])
    padded = torch.zeros(len(X), int(lengths.max()), N_FEATURES)
    for row, x in enumerate(X):
        padded[row, : len(x)] = torch.from_numpy(x)
    return padded, lengths


class PaddedLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(N_FEATURES, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 2)

    def forward(self, padded, lengths):
        states, _ = self.lstm(padded)
        last = states[torch.arange(len(lengths)), lengths - 1]
        return self.head(last)


def padded_loop(X, y, X_test, y_test, seed):
    torch.manual_seed(seed)
    model = PaddedLSTM()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    padded, lengths = pad_all(X)
    targets = torch.from_numpy(y)
    for _ in range(EPOCHS):
        for index in torch.randperm(len(X)).split(BATCH):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(
                model(padded[index], lengths[index]), targets[index]
            )
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        test_padded, test_lengths = pad_all(X_test)
        predicted = model(test_padded, test_lengths).argmax(1).numpy()
    return seconds, float((predicted == y_test).mean())


def with_sklstm(X, y, X_test, y_test, seed):
    clf = LSTMClassifier(
        hidden_size=HIDDEN,
        num_layers=1,
        bidirectional=False,
        pooling="last",
        conv_filters=None,
        sequence_norm=None,
        standardize=False,
        dropout=0.0,
        max_epochs=EPOCHS,
        batch_size=BATCH,
        lr=1e-3,
        lr_schedule=None,
        early_stopping=False,
        device="cpu",
        random_state=seed,
    )
    start = time.perf_counter()
    clf.fit(X, y)
    seconds = time.perf_counter() - start
    return seconds, clf.score(X_test, y_test)


N_SHORT, SHORT_LENGTH, LONG_LENGTH, PREDICT_FEATURES = 1000, 5, 100_000, 3


def _prediction_inputs():
    rng = np.random.RandomState(2)
    short = [
        rng.normal(size=(SHORT_LENGTH, PREDICT_FEATURES)).astype(np.float32)
        for _ in range(N_SHORT)
    ]
    long = rng.normal(size=(LONG_LENGTH, PREDICT_FEATURES)).astype(np.float32)
    return short, long


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _predict_worker(model_path, scenario, memory_cap_gb):
    """One measurement, in a process of its own: peak memory is per process."""
    cap = int(memory_cap_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    with open(model_path, "rb") as file:
        clf = pickle.load(file)
    short, long = _prediction_inputs()
    before = _peak_mb()
    start = time.perf_counter()
    if scenario == "together":
        clf.predict_proba(short + [long])
    else:
        clf.predict_proba(short)
        clf.predict_proba([long])
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": _peak_mb() - before}))


def predict_benchmark(rounds, memory_cap_gb):
    rng = np.random.RandomState(0)
    X = [
        rng.normal(size=(n, PREDICT_FEATURES)).astype(np.float32)
        for n in rng.randint(5, 51, 200)
    ]
    y = np.array([int(x[:, 0].mean() > 0) for x in X])
    y_steps = [(x[:, 0] > 0).astype(int) for x in X]
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for output_mode, targets in [("last", y), ("sequence", y_steps)]:
            clf = LSTMClassifier(
                output_mode=output_mode, max_epochs=2, random_state=0
            ).fit(X, targets)
            model_path = Path(directory) / f"{output_mode}.pkl"
            model_path.write_bytes(pickle.dumps(clf))
            for scenario in ("together", "separately"):
                runs = []
                for _ in range(rounds):
                    command = [
                        sys.executable,
                        __file__,
                        "--predict-worker",
                        str(model_path),
                        scenario,
                        "--memory-cap",
                        str(memory_cap_gb),
                    ]
                    done = subprocess.run(
                        command, capture_output=True, text=True, check=True
                    )
                    runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                rows.append((output_mode, scenario, runs))
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; "
        f"{N_SHORT} sequences of {SHORT_LENGTH} steps + 1 of {LONG_LENGTH}, "
        f"F={PREDICT_FEATURES}, default LSTMClassifier (2 epochs on 200 "
        f"sequences of 5-50 steps), address space capped at {memory_cap_gb} "
        f"GB, {rounds} runs each"
    )
    print()
    print("| output_mode | predicted | seconds (median) | peak RSS growth MB (max) |")
    print("|---|---|---|---|")
    for output_mode, scenario, runs in rows:
        seconds = statistics.median(run["seconds"] for run in runs)
        peak = max(run["peak_mb"] for run in runs)
        print(f"| {output_mode} | {scenario} | {seconds:.2f} | {peak:.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--predict", action="store_true")
    parser.add_argument("--memory-cap", type=float, default=8.0)
    parser.add_argument("--predict-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.predict_worker:
        _predict_worker(*args.predict_worker, args.memory_cap)
        return
    if args.predict:
        predict_benchmark(args.rounds, args.memory_cap)
        return
    X, y = make_data(N_TRAIN, seed=0)
    X_test, y_test = make_data(N_TEST, seed=1)
    lengths = np.array([len(x) for x in X])
    results = {"padded": [], "sklstm": []}
    for round_index in range(args.rounds):
        runners = [("padded", padded_loop), ("sklstm", with_sklstm)]
        if round_index % 2:
            runners.reverse()
        for name, runner in runners:
            results[name].append(runner(X, y, X_test, y_test, seed=round_index))
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; N={N_TRAIN} "
        f"(test {N_TEST}), F={N_FEATURES}, lengths {lengths.min()}..{lengths.max()} "
        f"(mean {lengths.mean():.0f}), hidden {HIDDEN}, batch {BATCH}, "
        f"{EPOCHS} epochs, {args.rounds} interleaved rounds"
    )
    print()
    print("| approach | fit seconds (median) | test accuracy (mean) |")
    print("|---|---|---|")
    medians = {}
    for name, label in [
        ("padded", "pad to longest + torch loop"),
        ("sklstm", "sklstm on the ragged list"),
    ]:
        medians[name] = statistics.median(r[0] for r in results[name])
        accuracy = statistics.mean(r[1] for r in results[name])
        print(f"| {label} | {medians[name]:.1f} | {accuracy:.3f} |")
    print()
    print(f"speed-up: {medians['padded'] / medians['sklstm']:.2f}x")
    differences = np.array(
        [
            ours[1] - padded[1]
            for ours, padded in zip(results["sklstm"], results["padded"], strict=True)
        ]
    )
    error = 0.0
    if len(differences) > 1:
        error = differences.std(ddof=1) / np.sqrt(len(differences))
    print(
        f"accuracy, sklstm minus padded, paired by seed: {differences.mean():+.4f} "
        f"(standard error {error:.4f})"
    )


if __name__ == "__main__":
    main()

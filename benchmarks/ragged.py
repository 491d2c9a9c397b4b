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
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
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

"""What does the wrapper cost? sklstm vs skorch vs a hand-written torch loop.

The same LSTM (last hidden state -> linear), data, epochs and batch size are
trained three ways, in interleaved rounds so that machine noise hits all
three alike; the table shows median seconds and the ratio to the
hand-written loop, with a bootstrap interval for sklstm's ratios.
Prediction throughput is compared with a plain ``torch.no_grad`` loop in
batches of 1024; sklstm predicts in batches of 1024 on a CPU and in larger
ones, sized to the free memory, on a GPU.

Run: ``python benchmarks/overhead.py [--rounds 5]``; on a GPU,
``python benchmarks/overhead.py --device cuda`` trains a larger model with
the data resident on the device for the hand-written loop, and skorch with
its default DataLoader.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from sklstm import LSTMClassifier

CONFIGS = [
    dict(n_samples=2000, n_timesteps=50, n_features=8, hidden=64, batch=64, epochs=5),
    dict(n_samples=5000, n_timesteps=20, n_features=4, hidden=16, batch=32, epochs=3),
]
GPU_CONFIGS = [
    dict(
        n_samples=100_000,
        n_timesteps=100,
        n_features=32,
        hidden=256,
        batch=256,
        epochs=2,
    ),
]


class LastStepLSTM(nn.Module):
    """The plain model everyone writes: LSTM, last step, linear layer."""

    def __init__(self, n_features=8, hidden=64, n_classes=2):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, X):
        states, _ = self.lstm(X)
        return self.head(states[:, -1])


def make_data(config, seed=0):
    rng = np.random.RandomState(seed)
    shape = (config["n_samples"], config["n_timesteps"], config["n_features"])
    X = rng.normal(size=shape).astype(np.float32)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    return X, y


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def hand_written(X, y, config, seed=0, device="cpu"):
    torch.manual_seed(seed)
    model = LastStepLSTM(config["n_features"], config["hidden"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    # The data moves to the device once, as in a careful hand-written loop.
    X_t, y_t = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    model.train()
    for _ in range(config["epochs"]):
        order = torch.randperm(len(X_t), device=device)
        for index in order.split(config["batch"]):
            optimizer.zero_grad()
            loss = loss_fn(model(X_t[index]), y_t[index])
            loss.backward()
            optimizer.step()
    _sync(device)
    return time.perf_counter() - start, model


def with_skorch(X, y, config, seed=0, device="cpu"):
    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        LastStepLSTM,
        module__n_features=config["n_features"],
        module__hidden=config["hidden"],
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=config["epochs"],
        batch_size=config["batch"],
        train_split=None,
        verbose=0,
        device=device,
    )
    start = time.perf_counter()
    net.fit(X, y)
    _sync(device)
    return time.perf_counter() - start, net


def with_sklstm(X, y, config, seed=0, device="cpu"):
    clf = LSTMClassifier(
        hidden_size=config["hidden"],
        num_layers=1,
        bidirectional=False,
        cell="lstm",
        dropout=0.0,
        pooling="last",
        conv_filters=None,
        sequence_norm=None,
        standardize=False,
        max_epochs=config["epochs"],
        batch_size=config["batch"],
        lr=1e-3,
        optimizer="adam",
        lr_schedule=None,
        gradient_clip=None,
        early_stopping=False,
        device=device,
        random_state=seed,
    )
    start = time.perf_counter()
    clf.fit(X, y)
    _sync(device)
    return time.perf_counter() - start, clf


def predict_throughput(X, model, clf, device="cpu", repeats=10, swap=False):
    """Sequences per second: plain no_grad loop vs ``predict_proba``.

    Both start from a numpy array and end with probabilities on the host.
    One call can take only milliseconds, so each is timed as a block of
    ``repeats`` back-to-back calls, as an application predicting repeatedly
    would run it; ``swap`` runs the wrapped block first, and alternating it
    keeps either from always running on a cache the other left behind.
    """
    model.eval()

    def plain_loop():
        # Like predict_proba, the loop keeps its results: one host array.
        with torch.no_grad():
            batches = [
                torch.softmax(model(batch.to(device)), dim=1).cpu()
                for batch in torch.from_numpy(X).split(1024)
            ]
        return torch.cat(batches).numpy()

    def wrapped_call():
        clf.predict_proba(X)

    blocks = [("plain", plain_loop), ("wrapped", wrapped_call)]
    if swap:
        blocks.reverse()
    seconds = {}
    for name, call in blocks:
        call()  # each block starts warm
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        _sync(device)
        seconds[name] = (time.perf_counter() - start) / repeats
    return len(X) / seconds["plain"], len(X) / seconds["wrapped"]


def median_interval(ratios, level=0.95, resamples=2000):
    """Median of ``ratios`` and a percentile-bootstrap interval for it.

    The interval says how far the median could move on a rerun of the same
    number of rounds: a target is only clearly met (or missed) when the
    whole interval is on one side of it.
    """
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples)
    )
    tail = round((1 - level) / 2 * resamples)
    return statistics.median(ratios), medians[tail], medians[-tail - 1]


def _with_interval(ratios):
    median, low, high = median_interval(ratios)
    return f"{median:.3f} ({low:.3f}-{high:.3f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    device = args.device
    configs = GPU_CONFIGS if device == "cuda" else CONFIGS
    repeats = 2 if device == "cuda" else 10
    pairs = 4 * args.rounds
    where = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else (platform.processor() or platform.machine())
    )
    print(
        f"# {time.strftime('%Y-%m-%d')}, {where}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.rounds} interleaved rounds (median seconds; ratios are "
        "medians of the ratios within each round)"
    )
    print()
    print(
        "| config | hand-written | skorch | sklstm | skorch/hand | "
        "sklstm/hand (95% interval) |"
    )
    print("|---|---|---|---|---|---|")
    throughput_rows = []
    for config in configs:
        X, y = make_data(config)
        for runner in (hand_written, with_skorch, with_sklstm):  # warm-up
            runner(X[:512], y[:512], {**config, "epochs": 1}, device=device)
        times = {"hand": [], "skorch": [], "sklstm": []}
        for round_index in range(args.rounds):
            runners = [
                ("hand", hand_written),
                ("skorch", with_skorch),
                ("sklstm", with_sklstm),
            ]
            # Rotate the order each round so no runner always goes first.
            shift = round_index % 3
            for name, runner in runners[shift:] + runners[:shift]:
                seconds, fitted = runner(X, y, config, seed=round_index, device=device)
                times[name].append(seconds)
                if name == "hand":
                    model = fitted
                elif name == "sklstm":
                    clf = fitted
        hand, skorch_s, ours = (statistics.median(times[k]) for k in times)
        # Ratios within a round, then their median: the three runs of a round
        # are seconds apart, so the machine's slower drift cancels.
        skorch_ratios, ours_ratios = (
            [t / h for t, h in zip(times[name], times["hand"], strict=True)]
            for name in ("skorch", "sklstm")
        )
        label = (
            f"N={config['n_samples']} T={config['n_timesteps']} "
            f"F={config['n_features']} h={config['hidden']} b={config['batch']} "
            f"e={config['epochs']}"
        )
        print(
            f"| {label} | {hand:.2f} | {skorch_s:.2f} | {ours:.2f} | "
            f"{statistics.median(skorch_ratios):.3f} | {_with_interval(ours_ratios)} |"
        )
        # Blocks are short, so there are more of them than training rounds;
        # each pair gives a ratio, which cancels the machine's slow drift. A
        # GPU call predicts 100,000 long sequences, so its blocks hold fewer.
        rates = [
            predict_throughput(X, model, clf, device, repeats=repeats, swap=bool(i % 2))
            for i in range(pairs)
        ]
        plain = statistics.median(r[0] for r in rates)
        wrapped = statistics.median(r[1] for r in rates)
        ratios = [r[1] / r[0] for r in rates]
        throughput_rows.append((label, plain, wrapped, ratios))
    print()
    print(
        "| config | no_grad loop (seq/s) | sklstm predict_proba (seq/s) | "
        "ratio (95% interval) |"
    )
    print("|---|---|---|---|")
    for label, plain, wrapped, ratios in throughput_rows:
        print(f"| {label} | {plain:,.0f} | {wrapped:,.0f} | {_with_interval(ratios)} |")
    print()
    print(
        "ratio: median over paired blocks of sklstm / no_grad throughput "
        f"({pairs} pairs of {repeats} calls each); intervals: percentile "
        "bootstrap of the median"
    )


if __name__ == "__main__":
    main()

"""Tabular sequences: conversion speed, epoch cost, memory, time deltas.

Measures issue 17's targets on a generated long table of transactions, as a
database returns it: one row per transaction, rows in no particular order,
an account id, a datetime timestamp, 2 numeric columns (one with 10% NaN)
and 3 categorical ones (10,000 and 300 string categories, 5 in a pandas
``category``). The default size is 20,000 accounts of 10 to 90 rows, exactly
1,000,000 rows.

1. Conversion: (a) ``table.sort_values([id, time])`` alone, against (b) the
   table turned into model input: ``from_long_format(..., as_frame=True)``
   and the estimator's conversion to padded arrays and codes. Target: (b) at
   most 3x (a). (c), for information: the same from a list of DataFrames.
2. Epoch cost: an epoch with the 3 categorical columns against an epoch on
   the same table with 3 float columns in their place. Target: at most 1.3x.
3. Peak memory of ``from_long_format`` and a 1-epoch fit on the table, in a
   fresh process, against the table's own memory. Target: under 3x.
4. ``time_deltas``: accuracy with and without the time since the previous
   step, on a task whose label depends on timing and on one whose label does
   not (3 seeds each): evidence for the default "auto" (on when X has times).

Run: ``python benchmarks/tabular.py [--part all|convert|epoch|memory|deltas]
[--sequences 20000] [--repeats 3] [--threads 1]``; ``--profile`` adds
cProfiles of (b) and of an epoch.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch

from sklstm import LSTMClassifier, from_long_format

ID, TIME = "account_id", "timestamp"
CATEGORICAL = ["merchant", "city", "channel"]
CHANNELS = ["web", "shop", "phone", "atm", "app"]
# The estimator of the epoch-cost comparison; only its input differs.
EPOCH_ESTIMATOR = dict(
    conv_filters=None,
    hidden_size=32,
    batch_size=256,
    early_stopping=False,
    device="cpu",
    random_state=0,
)


# ---------------------------------------------------------------------------
def make_table(n_sequences, mean_length=50, seed=0, numeric=False):
    """A shuffled long table of transactions, and a label per account id.

    Lengths are ``mean_length`` +- up to 80%, in pairs that add up to twice
    the mean, so the table has ``n_sequences * mean_length`` rows (even
    ``n_sequences``). ``numeric=True`` puts 3 float columns in the place of
    the 3 categorical ones: same ids, times, lengths and row order.
    """
    rng = np.random.default_rng(seed)
    spread = rng.integers(
        -(mean_length * 4 // 5), mean_length * 4 // 5 + 1, (n_sequences + 1) // 2
    )
    lengths = mean_length + np.concatenate([spread, -spread])[:n_sequences]
    rng.shuffle(lengths)
    n_rows = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    ids = 1_000_000 + 7 * rng.permutation(n_sequences)
    # Exponential gaps (mean 6 hours) after a start somewhere in 2025.
    gaps = rng.exponential(6 * 3600.0, n_rows)
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[starts] - gaps[starts], lengths)
    start = np.datetime64("2025-01-01", "ns") + rng.integers(
        0, 365 * 86400, n_sequences
    ).astype("timedelta64[s]")
    times = np.repeat(start, lengths) + (elapsed * 1e9).astype("timedelta64[ns]")
    amount = rng.gamma(2.0, 30.0, n_rows)
    amount[rng.random(n_rows) < 0.1] = np.nan
    balance = rng.normal(1000.0, 300.0, n_rows)
    # Merchants: 10,000, a few much more frequent than the rest.
    weights = 1.0 / (np.arange(10_000) + 10.0)
    merchant = rng.choice(10_000, n_rows, p=weights / weights.sum())
    city = rng.integers(0, 300, n_rows)
    channel = rng.integers(0, len(CHANNELS), n_rows)
    # Label: the account's last transaction is at one of the 100 most
    # frequent merchants (about 35% of accounts).
    labels = pd.Series((merchant[starts + lengths - 1] < 100).astype(np.int64), ids)
    order = rng.permutation(n_rows)  # rows as a database returns them
    columns = {
        ID: np.repeat(ids, lengths)[order],
        TIME: times[order],
        "amount": amount[order],
        "balance": balance[order],
    }
    if numeric:
        for name in CATEGORICAL:
            columns[name] = rng.normal(size=n_rows)[order]
    else:
        merchant_names = np.array([f"m{k:05d}" for k in range(10_000)], dtype=object)
        city_names = np.array([f"city{k:03d}" for k in range(300)], dtype=object)
        # Strings as a database driver returns them: one object per value.
        columns["merchant"] = pd.array(
            [str(v) for v in merchant_names[merchant[order]]], dtype="str"
        )
        columns["city"] = pd.array(
            [str(v) for v in city_names[city[order]]], dtype="str"
        )
        columns["channel"] = pd.Categorical.from_codes(channel[order], CHANNELS)
    return pd.DataFrame(columns), labels


def model_input(table):
    return from_long_format(table, id_column=ID, time_column=TIME, as_frame=True)


def convert(X, **params):
    # _to_sequences is private: it is what fit calls to turn X into the
    # padded arrays and codes the network reads (fit then trains on them).
    return LSTMClassifier(**params)._to_sequences(X, reset=True)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


# ---------------------------------------------------------------------------
def part_convert(args):
    table, _ = make_table(args.sequences)
    print(
        f"Conversion: {len(table):,} rows, {args.sequences:,} sequences, "
        f"table {table.memory_usage(deep=True).sum() / 2**20:.0f} MiB; median "
        f"of {args.repeats} interleaved repeats (seconds)"
    )
    print()
    sort_s, frame_s, arrays_s = [], [], []
    for _ in range(args.repeats):
        gc.collect()
        sort_s.append(timed(table.sort_values, [ID, TIME])[0])
        gc.collect()
        seconds, (X, _) = timed(model_input, table)
        frame_s.append(seconds)
        arrays_s.append(timed(convert, X)[0])
        del X
    both = [f + a for f, a in zip(frame_s, arrays_s, strict=True)]
    sort_m, both_m = statistics.median(sort_s), statistics.median(both)
    ratio = both_m / sort_m
    print("| step | seconds | / sort_values |")
    print("|---|---|---|")
    print(f"| (a) `table.sort_values([id, time])` | {sort_m:.2f} | 1.00 |")
    print(
        f"| (b) `from_long_format(as_frame=True)` + `_to_sequences` | "
        f"{both_m:.2f} | **{ratio:.2f}** |"
    )
    frame_m = statistics.median(frame_s)
    arrays_m = statistics.median(arrays_s)
    for label, seconds in (
        ("(b1) of which `from_long_format`", frame_m),
        ("(b2) of which `_to_sequences`", arrays_m),
    ):
        print(f"| {label} | {seconds:.2f} | {seconds / sort_m:.2f} |")

    # (c) One DataFrame per sequence, on fewer sequences when asked.
    n_frames = min(args.frames_sequences, args.sequences)
    X, _ = model_input(table)
    if n_frames < args.sequences:
        X = X[:n_frames]
    to_frames_s, frames = timed(X.to_frames)
    del X
    frames_s = statistics.median(
        timed(convert, frames)[0] for _ in range(max(1, args.repeats - 1))
    )
    rows = sum(len(f) for f in frames)
    print(
        f"| (c) `X.to_frames()` ({n_frames:,} sequences, {rows:,} rows; "
        f"for information) | {to_frames_s:.2f} | |"
    )
    print(
        f"| (c) `_to_sequences` on those {n_frames:,} DataFrames | {frames_s:.2f} | |"
    )
    print()
    verdict = "met" if ratio <= 3 else "NOT met"
    print(f"Target (b) <= 3x (a): {ratio:.2f}x, {verdict}")
    print()
    if args.profile or ratio > 3:
        profile_conversion(table)


def profile_conversion(table):
    profiler = cProfile.Profile()
    profiler.enable()
    X, _ = model_input(table)
    convert(X)
    profiler.disable()
    print(
        "cProfile of (b), by cumulative time (the profiler inflates loops "
        "over single values, such as the scalar check, several times):"
    )
    print("```")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
    print("```")


# ---------------------------------------------------------------------------
def part_epoch(args):
    n = args.epoch_sequences
    categorical, labels = make_table(n)
    numeric, _ = make_table(n, numeric=True)
    X_categorical, ids = model_input(categorical)
    X_numeric, numeric_ids = model_input(numeric)
    assert (ids == numeric_ids).all()
    y = labels.loc[ids].to_numpy()
    del categorical, numeric
    # name: (X, extra parameters); the last row, for information, shrinks
    # the embeddings to tell the LSTM's wider input from the embeddings' cost.
    inputs = {
        "categorical": (X_categorical, {}),
        "numeric": (X_numeric, {}),
        "categorical, embedding_size=2 (information)": (
            X_categorical,
            {"embedding_size": 2},
        ),
    }
    epochs = args.epochs
    print(
        f"Epoch cost: {n:,} sequences ({len(X_numeric.frame):,} rows), "
        f"LSTMClassifier({_params(EPOCH_ESTIMATOR)}, max_epochs={epochs}); "
        f"{args.repeats} interleaved rounds; epoch s: skorch's EpochTimer "
        "(`history_[:, 'dur']`, the training batches of an epoch), epochs 2 "
        f"to {epochs} of each fit"
    )
    print()
    for X, extra in inputs.values():  # warm-up: torch's lazy imports, caches
        LSTMClassifier(max_epochs=1, **EPOCH_ESTIMATOR, **extra).fit(X[:512], y[:512])
    widths = {}
    epoch_s = {name: [] for name in inputs}
    fit_s = {name: [] for name in inputs}
    convert_s = {name: [] for name in inputs}
    for round_index in range(args.repeats):
        names = list(inputs)
        shift = round_index % len(names)  # no input always goes first
        for name in names[shift:] + names[:shift]:
            X, extra = inputs[name]
            gc.collect()
            convert_s[name].append(timed(convert, X)[0])
            clf = LSTMClassifier(max_epochs=epochs, **EPOCH_ESTIMATOR, **extra)
            seconds, _ = timed(clf.fit, X, y)
            fit_s[name].append(seconds)
            # The first epoch is left out (warm-up of allocator and caches).
            epoch_s[name].extend(clf.history_[1:, "dur"])
            widths[name] = clf.net_.module_.rnn.input_size
    print(
        "| input | LSTM input width | epoch s (median) | / numeric | "
        "fit s (median) | conversion s (median) | (fit - conversion) / epochs |"
    )
    print("|---|---|---|---|---|---|---|")
    medians = {name: statistics.median(epoch_s[name]) for name in inputs}
    for name in inputs:
        fit_m = statistics.median(fit_s[name])
        convert_m = statistics.median(convert_s[name])
        print(
            f"| {name} | {widths[name]} | {medians[name]:.2f} | "
            f"{medians[name] / medians['numeric']:.2f} | {fit_m:.2f} | "
            f"{convert_m:.2f} | {(fit_m - convert_m) / epochs:.2f} |"
        )
    ratio = medians["categorical"] / medians["numeric"]
    print()
    verdict = "met" if ratio <= 1.3 else "NOT met"
    print(f"Target categorical epoch <= 1.3x numeric epoch: {ratio:.2f}x, {verdict}")
    print()
    if ratio > 1.3 or args.profile:
        profile_epoch(X_categorical, y)
        profile_epoch(X_numeric, y)


def profile_epoch(X, y):
    clf = LSTMClassifier(max_epochs=2, **EPOCH_ESTIMATOR)
    clf.fit(X, y)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    clf.fit(X, y)
    profiler.disable()
    kind = "categorical" if getattr(clf, "categories_", None) else "numeric"
    print(f"cProfile of a 2-epoch fit on the {kind} input, by own time:")
    print("```")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    print("```")


def _params(params):
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


# ---------------------------------------------------------------------------
def resident_mib():
    """Current resident memory of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mib():
    """Peak resident memory since the last :func:`reset_peak` (VmHWM).

    ``ru_maxrss`` reads the same high-water mark, but also keeps the peak
    of any thread that has exited since, so it cannot be reset reliably.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak():
    """Start the peak afresh (Linux: "5" in clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def release_free_memory():
    """Hand freed heap back to the system (glibc), so the baseline is live data.

    Without it, memory freed while building the table stays resident and
    absorbs what the conversion and the fit allocate next, which would hide
    part of their cost.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def memory_child(args):
    """In a fresh process: the peak over the table's own memory.

    ``--warm``: a 1-epoch fit on 200 sequences first, so that torch's
    one-off allocations (kernels, thread pools, allocator caches; about
    160 MiB, whatever the data) are in the baseline.
    """
    if args.warm:
        small, small_labels = make_table(200, seed=1)
        X, ids = model_input(small)
        LSTMClassifier(max_epochs=1, random_state=0).fit(
            X, small_labels.loc[ids].to_numpy()
        )
        del small, small_labels, X, ids
        gc.collect()
    table, labels = make_table(args.sequences)
    gc.collect()
    release_free_memory()
    table_mib = table.memory_usage(deep=True).sum() / 2**20
    reset_peak()
    baseline = resident_mib()
    seconds_frame, (X, ids) = timed(model_input, table)
    y = labels.loc[ids].to_numpy()
    peak_frame = peak_mib()
    after_frame = resident_mib()
    reset_peak()
    clf = LSTMClassifier(max_epochs=1, random_state=0)
    seconds_fit, _ = timed(clf.fit, X, y)
    peak_fit = peak_mib()
    print(
        json.dumps(
            dict(
                rows=len(table),
                table=table_mib,
                baseline=baseline,
                peak_frame=peak_frame,
                after_frame=after_frame,
                peak_fit=peak_fit,
                seconds_frame=seconds_frame,
                seconds_fit=seconds_fit,
            )
        )
    )


MEMORY_RUNS = {
    "cold": ([], {}),
    "torch warmed up (a 200-sequence fit first)": (["--warm"], {}),
    # For information: glibc's dynamic mmap threshold keeps freed activation
    # buffers of varying sizes in the heap; a fixed threshold returns them.
    "cold, `MALLOC_MMAP_THRESHOLD_=131072` (information)": (
        [],
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
    ),
}


def part_memory(args):
    runs = {}
    for label, (flags, env) in MEMORY_RUNS.items():
        command = [sys.executable, __file__, "--part", "memory-child", *flags]
        command += ["--sequences", str(args.sequences)]
        command += ["--threads", str(torch.get_num_threads())]
        output = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        )
        runs[label] = json.loads(output.stdout.strip().splitlines()[-1])
    first = next(iter(runs.values()))
    print(
        f"Memory (a fresh process each, MiB): {first['rows']:,} rows, "
        f"{args.sequences:,} sequences; `X, ids = from_long_format(table, ..., "
        "as_frame=True)` then `LSTMClassifier(max_epochs=1, random_state=0)"
        ".fit(X, y)` (defaults otherwise), the table kept alive; peak: VmHWM, "
        "reset before each step; baseline: resident after building the table "
        "and handing freed heap back (malloc_trim)"
    )
    print()
    print(
        "| process | table (`memory_usage(deep=True)`) | baseline | "
        "peak in from_long_format | resident after it | peak in fit | fit s | "
        "(peak - baseline) / table |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ratios = {}
    for label, m in runs.items():
        peak = max(m["peak_frame"], m["peak_fit"])
        ratios[label] = (peak - m["baseline"]) / m["table"]
        print(
            f"| {label} | {m['table']:.0f} | {m['baseline']:.0f} | "
            f"{m['peak_frame']:.0f} | {m['after_frame']:.0f} | "
            f"{m['peak_fit']:.0f} | {m['seconds_fit']:.1f} | "
            f"**{ratios[label]:.2f}** |"
        )
    print()
    for label, ratio in ratios.items():
        verdict = "met" if ratio < 3 else "NOT met"
        print(
            f"Target peak under 3x the table's memory ({label}): {ratio:.2f}x, "
            f"{verdict}"
        )
    print()


# ---------------------------------------------------------------------------
EVENTS = ["login", "transfer", "view", "search", "pay", "logout", "settings"]
QUICK = 300.0  # seconds: a transfer this soon after a login is suspicious


def event_table(n_sequences, seed, timing):
    """Event logs whose label depends on timing, or only on order.

    Every step has an event type, an amount and a time (gaps exponential,
    mean 2 hours). Half the sequences get a login directly followed by a
    transfer. ``timing=True``: the label is whether some transfer comes
    within 5 minutes of the login just before it; the other half get the
    same pair but a long gap, so only the gap tells the classes apart.
    ``timing=False``: the label is whether a login is directly followed by a
    transfer, however long after; the gaps carry nothing.
    """
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    for sequence in range(n_sequences):
        n = int(rng.integers(10, 31))
        events = rng.choice(len(EVENTS), n, p=[0.05, 0.05, 0.4, 0.2, 0.1, 0.1, 0.1])
        gaps = rng.exponential(7200.0, n)
        positive = rng.random() < 0.5
        at = int(rng.integers(0, n - 1))
        if positive or timing:  # the pair, with a short or a long gap
            events[at], events[at + 1] = 0, 1
        if timing:
            gaps[at + 1] = (
                rng.uniform(10, QUICK) if positive else rng.uniform(1800, 14_400)
            )
        else:  # break accidental pairs in the negatives
            for i in range(n - 1):
                if events[i] == 0 and events[i + 1] == 1 and not positive:
                    events[i + 1] = 2
        pairs = (events[:-1] == 0) & (events[1:] == 1)
        if timing:
            pairs &= gaps[1:] < QUICK
        labels.append(int(pairs.any()))
        frames.append(
            pd.DataFrame(
                {
                    ID: sequence,
                    TIME: np.datetime64("2025-01-01", "ns")
                    + (np.cumsum(gaps) * 1e9).astype("timedelta64[ns]"),
                    "event": np.array(EVENTS, dtype=object)[events],
                    "amount": rng.gamma(2.0, 30.0, n),
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    table["event"] = table["event"].astype("category")
    table = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    X, ids = model_input(table)
    return X, np.asarray(labels)[ids]


def part_deltas(args):
    params = dict(conv_filters=None, max_epochs=args.deltas_epochs)
    print(
        f"time_deltas: {args.deltas_train:,} training and 2,000 test sequences "
        f"of 10-30 events; LSTMClassifier({_params(params)}, time_deltas=..., "
        "random_state=seed), defaults otherwise; test accuracy"
    )
    print()
    print("| task | time_deltas | seed 0 | seed 1 | seed 2 | mean | fit s (mean) |")
    print("|---|---|---|---|---|---|---|")
    means = {}
    for timing in (True, False):
        task = "label depends on timing" if timing else "label ignores timing"
        data = {
            seed: (
                event_table(args.deltas_train, seed, timing),
                event_table(2000, 100 + seed, timing),
            )
            for seed in range(3)
        }
        for deltas in ("auto", False):
            scores, seconds = [], []
            for seed, ((X, y), (X_test, y_test)) in data.items():
                clf = LSTMClassifier(time_deltas=deltas, random_state=seed, **params)
                fit_seconds, _ = timed(clf.fit, X, y)
                # "auto" turns them on: X is a SequenceFrame with times.
                assert clf._layout["time_deltas"] == bool(deltas)
                seconds.append(fit_seconds)
                scores.append(clf.score(X_test, y_test))
            means[timing, bool(deltas)] = statistics.mean(scores)
            label = '"auto" (on: X has times)' if deltas else "False"
            print(
                f"| {task} | {label} | "
                + " | ".join(f"{s:.3f}" for s in scores)
                + f" | **{means[timing, bool(deltas)]:.3f}** | "
                + f"{statistics.mean(seconds):.1f} |"
            )
    print()
    gain = means[True, True] - means[True, False]
    cost = means[False, False] - means[False, True]
    print(
        f"time_deltas on (auto) vs off: {gain:+.3f} accuracy when timing "
        f"matters; {-cost:+.3f} when it does not"
    )
    print()


# ---------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        default="all",
        choices=["all", "convert", "epoch", "memory", "deltas", "memory-child"],
    )
    parser.add_argument("--sequences", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--frames-sequences",
        type=int,
        default=20_000,
        help="sequences for the list-of-DataFrames form (c)",
    )
    parser.add_argument("--epoch-sequences", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--deltas-train", type=int, default=2000)
    parser.add_argument("--deltas-epochs", type=int, default=60)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's); 1 keeps the timings "
        "steady on a machine that other jobs share",
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part == "memory-child":
        memory_child(args)
        return
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"pandas {pd.__version__}, numpy {np.__version__}"
    )
    print()
    parts = {
        "convert": part_convert,
        "epoch": part_epoch,
        "memory": part_memory,
        "deltas": part_deltas,
    }
    for name, part in parts.items():
        if args.part in ("all", name):
            part(args)


if __name__ == "__main__":
    main()

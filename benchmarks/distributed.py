"""Data-parallel training throughput: one process against several.

Each row fits the same ``LSTMClassifier`` on the same generated sequences
under ``torchrun`` (``python -m torch.distributed.run``), with
``distributed="auto"``: one process trains alone, several train one model
data-parallel. Throughput is sequences per second of fit time (epochs x
sequences / the slowest process's fit, start to end; the launcher's and
imports' start-up is not counted). ``batch_size`` is per process, so a row
with k processes takes k times as many sequences per optimiser step; the
row "1 process" with ``batch k x b`` takes the same steps as k processes.
The last row ("none") runs k processes that exchange nothing, each fitting
its own 1/k of the sequences alone (``distributed=False``): the time k
processes would take with free gradient exchange, so the gap to it is the
exchange's cost, and its gap to the first row is the machine's (cores or
memory bandwidth shared, other work running).

On the CPU every process runs with one thread and the gloo backend. With
``--device cuda`` each process takes the GPU of its local rank and the nccl
backend when there are enough GPUs; with fewer GPUs than processes, the
processes share them over gloo, which measures the cost of the gradient
exchange rather than a speed-up. Prints one table:

``python benchmarks/distributed.py [--device cpu --processes 1 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def _worker(config):
    import numpy as np
    import torch
    import torch.distributed as dist

    from sklstm import LSTMClassifier

    if config["device"] == "cuda":
        # As a DDP script does: collectives of this process (the barrier
        # below) run on its own GPU; device="auto" picks the same one.
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(config["backend"])
    rng = np.random.default_rng(0)
    shape = (config["samples"], config["timesteps"], config["features"])
    X = rng.standard_normal(shape).astype(np.float32)
    y = (X[:, : config["timesteps"] // 2, 0].sum(axis=1) > 0).astype(int)
    clf = LSTMClassifier(
        hidden_size=config["hidden"],
        max_epochs=config["epochs"],
        batch_size=config["batch"],
        early_stopping=False,
        device="cpu" if config["device"] == "cpu" else "auto",
        n_threads=1 if config["device"] == "cpu" else "auto",
        random_state=0,
    )
    if config["alone"]:
        clf.set_params(distributed=False)
        share = slice(dist.get_rank(), None, dist.get_world_size())
        X, y = X[share], y[share]
    dist.barrier()
    start = time.perf_counter()
    clf.fit(X, y)
    if clf.device_.type == "cuda":
        torch.cuda.synchronize(clf.device_)
    seconds = torch.tensor(
        [time.perf_counter() - start], dtype=torch.float64, device=clf.device_
    )
    # The slowest process bounds the fit.
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    if dist.get_rank() == 0:
        print(json.dumps({"seconds": seconds.item(), "device": str(clf.device_)}))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_fit(config, n_processes):
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])
        ),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={n_processes}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        __file__,
        "--worker",
        json.dumps(config),
    ]
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--timesteps", type=int, default=50)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(json.loads(args.worker))
        return

    import torch

    n_gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    if args.device == "cuda" and n_gpus == 0:
        print("no CUDA device here: nothing to measure")
        return
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, {n_gpus} GPU(s), torch {torch.__version__}; default "
        f"LSTMClassifier, hidden_size={args.hidden}, {args.samples} x "
        f"{args.timesteps} x {args.features}, {args.epochs} epochs"
    )
    rows = []
    for n_processes in args.processes:
        rows.append((n_processes, args.batch, False))
        if n_processes > 1 and (1, n_processes * args.batch, False) not in rows:
            rows.insert(-1, (1, n_processes * args.batch, False))
    if max(args.processes) > 1:
        rows.append((max(args.processes), args.batch, True))
    header = (
        f"{'processes':>9} {'backend':>8} {'batch':>6} {'per step':>8} "
        f"{'fit s':>7} {'seq/s':>8} {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    baseline = None
    for n_processes, batch, alone in rows:
        if args.device == "cpu":
            backend = "gloo"
        else:
            # nccl needs a GPU per process; shared GPUs go over gloo.
            backend = "nccl" if n_gpus >= n_processes else "gloo"
        config = dict(vars(args), batch=batch, backend=backend, alone=alone)
        config.pop("worker")
        result = time_fit(config, n_processes)
        throughput = args.epochs * args.samples / result["seconds"]
        if baseline is None:
            baseline = throughput
        print(
            f"{n_processes:>9} {'none' if alone else backend:>8} {batch:>6} "
            f"{batch if alone else n_processes * batch:>8} "
            f"{result['seconds']:>7.1f} "
            f"{throughput:>8.0f} {throughput / baseline:>7.2f}x",
            flush=True,
        )
    if args.device == "cuda" and n_gpus < max(args.processes):
        print(
            f"# {n_gpus} GPU(s) for up to {max(args.processes)} processes: "
            "processes beyond the GPUs share them, so those rows measure "
            "the gradient exchange's cost, not a speed-up."
        )


if __name__ == "__main__":
    main()

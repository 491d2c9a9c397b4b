"""Data-parallel training over a ``torch.distributed`` process group.

The launcher (``torchrun``, or anything that sets up a process group) starts
one process per device; the user's script initialises the default process
group and every process calls ``fit`` with the same data. Each process then
trains on its own share of every epoch's batches (see
:class:`~sklstm._data.Batches`), and after each backward pass the
gradients are averaged over the processes, so that all of them take the
same optimiser step and end with the same weights. sklstm never creates or
destroys the process group: its lifetime and backend are the script's.

Everything here is plain ``torch.distributed`` on the default group;
nothing depends on skorch or on the estimators.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ._device import resolve_device


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel fit."""

    rank: int
    world_size: int


def data_parallel(setting):
    """The data-parallel group a fit trains in, or None to train alone.

    ``setting`` is the estimators' ``distributed`` parameter: "auto" trains
    data-parallel when the default process group is initialised with more
    than one process, True requires an initialised group, False never uses
    one.
    """
    if setting is False:
        return None
    initialised = dist.is_available() and dist.is_initialized()
    if not initialised:
        if setting is True:
            raise ValueError(
                "distributed=True, but no torch.distributed process group is "
                "initialised in this process. Launch the script with torchrun "
                "(e.g. torchrun --nproc_per_node=2 train.py) and call "
                "torch.distributed.init_process_group() before fit, or set "
                "distributed='auto' or False to train in this process alone."
            )
        if _launched_world_size() > 1:
            warnings.warn(
                f"This process was launched as one of "
                f"{_launched_world_size()} (WORLD_SIZE), but no "
                "torch.distributed process group is initialised, so each "
                "process trains a model of its own on all the data. Call "
                "torch.distributed.init_process_group() before fit to train "
                "one model data-parallel, or set distributed=False to silence "
                "this warning.",
                UserWarning,
                stacklevel=6,
            )
        return None
    world_size = dist.get_world_size()
    if world_size == 1:
        return None
    return DataParallel(rank=dist.get_rank(), world_size=world_size)


def _launched_world_size():
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def training_device(device, group):
    """The device this process trains on, for the ``device`` parameter.

    "auto" gives each process of a data-parallel fit on CUDA the GPU of its
    local rank (``LOCAL_RANK``, which torchrun sets), so that the processes
    of one machine share its GPUs one each.
    """
    if group is None or device != "auto" or not torch.cuda.is_available():
        resolved = resolve_device(device)
    else:
        local_rank = int(os.environ.get("LOCAL_RANK", group.rank))
        resolved = torch.device("cuda", local_rank % torch.cuda.device_count())
    if group is not None and resolved.type != "cuda" and dist.get_backend() == "nccl":
        raise ValueError(
            f"This data-parallel fit trains on {str(resolved)!r}, but the "
            "process group's backend is nccl, which exchanges CUDA tensors "
            "only. Train on a GPU (device='auto' or 'cuda'), or initialise "
            "the process group with backend='gloo' to train on CPUs."
        )
    return resolved


def agree_on_fit(group, seed, n_samples, arrays, device):
    """Rank 0's ``seed``, after checking that every process has the same data.

    ``arrays`` are this process's ``n_samples`` training sequences, their
    targets and weights, as numpy arrays (None for what it lacks). Every
    process must pass the same: each trains on its own share of batches
    cut from all of it. On a mismatch every process raises the same
    ``ValueError``, rather than some raising while the others wait for
    them.
    """
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        if array is None:
            digest.update(b"-")
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array.reshape(-1)).cast("B"))
    own = [seed, n_samples, *np.frombuffer(digest.digest(), np.int64).tolist()]
    first = torch.tensor(own, dtype=torch.int64, device=device)
    dist.broadcast(first, src=0)
    first = first.tolist()
    differs = torch.zeros(group.world_size, dtype=torch.int64, device=device)
    differs[group.rank] = int(first[1:] != own[1:])
    dist.all_reduce(differs)
    ranks = np.flatnonzero(differs.cpu().numpy()).tolist()
    if ranks:
        sizes = (
            f"rank 0 has {first[1]} sequences"
            if n_samples == first[1]
            else f"rank 0 has {first[1]} sequences, this process (rank "
            f"{group.rank}) {n_samples}"
        )
        raise ValueError(
            f"The processes of this data-parallel fit passed different data "
            f"to fit: the X, y or sample_weight of rank(s) {ranks} differ "
            f"from rank 0's ({sizes}). Every process must pass the same, "
            "whole data set: each trains on its own share of its batches. To "
            "fit a separate model in each process, set distributed=False."
        )
    return first[0]


def broadcast_module(module):
    """Give every process rank 0's weights and buffers.

    Processes that seeded alike already hold the same; this makes sure of
    it whatever each built or loaded, as ``DistributedDataParallel`` does.
    """
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(parameters, loss, world_size):
    """Average the gradients of ``parameters`` over the processes, in place.

    Returns the loss averaged too, which every process then records. One
    all-reduce carries the loss, every gradient and, per parameter, whether
    any process computed one: a parameter no process reached keeps no
    gradient, and the optimiser leaves it alone as it would in one process.
    """
    parameters = [p for p in parameters if p.requires_grad]
    dtype = parameters[0].dtype
    device = parameters[0].device
    present = torch.tensor(
        [p.grad is not None for p in parameters], dtype=dtype, device=device
    )
    pieces = [loss.detach().reshape(1).to(dtype), present]
    pieces.extend(
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype)
        for p in parameters
    )
    flat = torch.cat(pieces)
    dist.all_reduce(flat)
    flat /= world_size
    sizes = [1, len(parameters)] + [p.numel() for p in parameters]
    averaged_loss, present, *gradients = flat.split(sizes)
    for parameter, reached, gradient in zip(
        parameters, present.tolist(), gradients, strict=True
    ):
        if not reached:
            continue
        gradient = gradient.view_as(parameter)
        if parameter.grad is None:
            parameter.grad = gradient.to(parameter.dtype).clone()
        else:
            parameter.grad.copy_(gradient)
    return averaged_loss[0].to(loss.dtype)


_BATCH_NORMS = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
)


def average_running_statistics(module, world_size):
    """Average the batch-norm running statistics over the processes.

    Each process normalises its own shard by the shard's statistics (as
    ``DistributedDataParallel`` does without ``SyncBatchNorm``), and so
    updates its running averages with them. The running averages are linear
    in those updates: their mean over the processes is what one process
    would hold had it seen every shard's statistics, averaged step by step.
    """
    statistics = [
        buffer
        for layer in module.modules()
        if isinstance(layer, _BATCH_NORMS) and layer.track_running_stats
        for buffer in (layer.running_mean, layer.running_var)
    ]
    if not statistics:
        return
    flat = torch.cat([buffer.reshape(-1) for buffer in statistics])
    dist.all_reduce(flat)
    flat /= world_size
    with torch.no_grad():
        for buffer, value in zip(
            statistics, flat.split([b.numel() for b in statistics]), strict=True
        ):
            buffer.copy_(value.view_as(buffer))


def broadcast_values(values, device):
    """Rank 0's floats ``values``: every process takes the same decisions."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


__all__ = [
    "DataParallel",
    "agree_on_fit",
    "average_gradients",
    "average_running_statistics",
    "broadcast_module",
    "broadcast_values",
    "data_parallel",
    "training_device",
]

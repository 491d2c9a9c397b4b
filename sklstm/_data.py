"""Training data as tensors: placement on the device and mini-batches.

One :class:`TensorData` holds the padded sequences, their lengths, targets
and weights; :class:`Batches` cuts it into mini-batches. Batches have the
``(X, y)`` form skorch expects: ``X`` is a dict of the network's inputs
(``padded``, ``lengths``) and, when sequences are weighted, their
``weights``; ``y`` holds the targets. Weights travel in ``X``, as skorch
recommends for sample weights, so that ``y`` stays what skorch's scoring
callbacks expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

# Ragged batches are drawn from pools this many batches large, sorted by
# length within the pool: batches then hold similar lengths (little padding)
# while the pools keep the order random from epoch to epoch.
_BUCKET_POOL_BATCHES = 50

# Data goes to the GPU whole only when it takes at most this share of the
# free device memory; the rest is left for weights, activations and kernels.
_RESIDENT_SHARE = 0.4


@dataclass(eq=False)
class TensorData(Dataset):
    """Sequences, targets and weights as tensors, ready for batching.

    ``padded``, ``targets`` and ``weights`` live on the training device when
    they fit there; ``lengths`` always stays on the CPU (reading it never
    waits for the device). ``rows`` selects the sequences this object
    stands for, so that training and validation sets share one copy of the
    data; None means all of them.
    """

    padded: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    equal_lengths: bool = True
    per_step: bool = False
    rows: torch.Tensor | None = None
    # Tabular sequences: categorical codes per step, static features.
    codes: torch.Tensor | None = None
    static: torch.Tensor | None = None
    static_codes: torch.Tensor | None = None

    def __len__(self):
        return len(self.lengths) if self.rows is None else len(self.rows)

    def __getitem__(self, index):
        row = index if self.rows is None else int(self.rows[index])
        length = int(self.lengths[row])
        inputs = {"padded": self.padded[row, :length], "lengths": self.lengths[row]}
        if self.weights is not None:
            inputs["weights"] = self.weights[row]
        return inputs, None if self.targets is None else self.targets[row]

    def subset(self, rows, *, weighted=True):
        """The same data restricted to ``rows`` (an index array), no copy.

        ``weighted=False`` drops the weights: all of them are 1, and the
        loss then takes its plain, cheaper form.
        """
        if len(rows) == len(self.lengths) and self.rows is None:
            rows = None
        else:
            rows = torch.as_tensor(np.asarray(rows), dtype=torch.int64)
        return replace(self, rows=rows, weights=self.weights if weighted else None)


def place(array, device):
    """Move an array to ``device`` once; stream it from the host if too big.

    On CUDA, data that fits stays on the device for the whole fit, so no
    batch waits for a host-to-device copy. Larger data stays where it is, in
    ordinary host memory with no second copy, and is streamed: each training
    batch is gathered into pinned memory and copied asynchronously (see
    :class:`Batches`).
    """
    tensor = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
    if device.type == "cpu":
        return tensor
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        if tensor.nbytes > _RESIDENT_SHARE * free_bytes:
            return tensor
    try:
        return tensor.to(device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return tensor


class Batches:
    """Mini-batches of a :class:`TensorData`, cut to each batch's longest.

    skorch builds one per fit (``iterator_train`` / ``iterator_valid``) and
    iterates it once per epoch. Equal-length data is shuffled by one
    ``randperm`` per epoch, as in a hand-written loop. Ragged data is
    bucketed: similar lengths are batched together so that little time is
    spent on padding.

    Parameters
    ----------
    data : TensorData
    batch_size : int
    shuffle : bool, default=False
        Draw a new order every epoch, from ``generator`` or, when None, from
        a generator seeded by torch's global one (as ``DataLoader`` does).
    generator : torch.Generator or None, default=None
        The estimators pass one seeded from ``random_state``, so that no fit
        draws from (or depends on) torch's global generator.
    device : torch.device or None, default=None
        Where batches go; None: where ``data.padded`` is.
    """

    def __init__(self, data, batch_size, *, shuffle=False, generator=None, device=None):
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device) if device is not None else None

    def __len__(self):
        return math.ceil(len(self.data) / self.batch_size)

    def _epoch_generator(self):
        if self.generator is not None or not self.shuffle:
            return self.generator
        seed = int(torch.empty((), dtype=torch.int64).random_())
        return torch.Generator().manual_seed(seed)

    def _batch_indices(self):
        n_samples = len(self.data)
        if not self.shuffle and self.data.equal_lengths and self.data.rows is None:
            # In order and uncut: plain slices, whose batches are views.
            return [
                slice(start, min(start + self.batch_size, n_samples))
                for start in range(0, n_samples, self.batch_size)
            ]
        generator = self._epoch_generator()
        if self.shuffle:
            order = torch.randperm(n_samples, generator=generator)
        else:
            order = torch.arange(n_samples)
        if self.data.rows is not None:
            order = self.data.rows[order]
        if self.data.equal_lengths:
            return _even_split(order, self.batch_size)
        pool_size = self.batch_size * _BUCKET_POOL_BATCHES
        batches = []
        for pool in torch.split(order, pool_size):
            by_length = pool[torch.argsort(self.data.lengths[pool], stable=True)]
            batches.extend(_even_split(by_length, self.batch_size))
        if self.shuffle:
            shuffled = torch.randperm(len(batches), generator=generator)
            batches = [batches[i] for i in shuffled.tolist()]
        return batches

    def __iter__(self):
        for _, batch in self.with_indices():
            yield batch

    def with_indices(self):
        """Yield ``(indices, batch)``: which sequences each batch holds.

        ``indices`` is an index tensor, or a slice for in-order batches.
        """
        data = self.data
        target_device = self.device if self.device is not None else data.padded.device
        # Where batches must be copied to; None when the data is already there.
        device = None if _holds(target_device, data.padded) else target_device
        pinned = device is not None and device.type == "cuda" and self.shuffle
        per_step = data.per_step
        batch_indices = self._batch_indices()
        gather_indices = batch_indices
        if data.padded.device.type != "cpu" and _index_tensors(batch_indices):
            # One host-to-device copy of the epoch's order, not one per
            # batch: a copy from pageable memory waits for the device, so
            # per-batch copies would stall the host before every step. The
            # host keeps its own indices for lengths and placing outputs.
            sizes = [len(indices) for indices in batch_indices]
            order = torch.cat(batch_indices).to(data.padded.device)
            gather_indices = order.split(sizes)
        for indices, index in zip(batch_indices, gather_indices, strict=True):
            lengths = data.lengths[indices]
            # Gather only the steps this batch needs.
            n_steps = None if data.equal_lengths else int(lengths.max())
            inputs = {
                "padded": _take(data.padded, index, n_steps, True, device, pinned),
                "lengths": lengths,
            }
            for name in ("codes", "static", "static_codes", "weights"):
                values = getattr(data, name)
                if values is not None:
                    by_step = name == "codes" or (name == "weights" and per_step)
                    inputs[name] = _take(
                        values, index, n_steps, by_step, device, pinned
                    )
            targets = _take(data.targets, index, n_steps, per_step, device, pinned)
            yield indices, (inputs, targets)


def _holds(device, tensor):
    """Whether ``tensor`` is on ``device``, where "cuda" means the current one."""
    if device.type != tensor.device.type:
        return False
    return device.index is None or device.index == tensor.device.index


def _index_tensors(batch_indices):
    return bool(batch_indices) and not isinstance(batch_indices[0], slice)


def _even_split(order, batch_size):
    """Split into as few batches as ``batch_size`` allows, of equal sizes.

    67 sequences in batches of 16 become 14+14+13+13+13 rather than
    16+16+16+16+3: a 3-sequence batch gives batch norm noisy statistics and
    the optimiser one noisy step per epoch.
    """
    if len(order) == 0:
        return []
    n_batches = math.ceil(len(order) / batch_size)
    return list(torch.tensor_split(order, n_batches))


def _take(tensor, index, n_steps, per_step, device, pinned=False):
    """Rows ``index`` of ``tensor``, cut to ``n_steps`` if given and per step.

    With a ``device``, the rows are copied there. With ``pinned`` (shuffled
    training batches on CUDA), they are gathered straight into pinned
    memory, from torch's caching host allocator, which keeps each buffer
    until its copy is done: so the copy runs asynchronously and the host can
    prepare the next batch meanwhile. Other batches are copied from ordinary
    memory: prediction waits for each batch's outputs anyway, and its
    batches are large enough that pinned buffers kept in torch's cache
    would hold hundreds of MB of locked host memory.
    """
    if tensor is None:
        return None
    cut = per_step and n_steps is not None
    if device is None:
        return tensor[index, :n_steps] if cut else tensor[index]
    if cut:
        tensor = tensor[:, :n_steps]
    if not pinned:
        return tensor[index].to(device, non_blocking=True)
    shape = (len(index),) + tensor.shape[1:]
    buffer = torch.empty(shape, dtype=tensor.dtype, pin_memory=True)
    torch.index_select(tensor, 0, index, out=buffer)
    return buffer.to(device, non_blocking=True)


def round_up_rows(inputs, multiple=8):
    """Pad a batch with dummy full-length rows to a multiple of ``multiple``.

    Matrix kernels pick different code paths (and summation orders) for
    very small row counts, so a sequence predicted alone could differ from
    the same sequence predicted in a batch by a float32 rounding step.
    Giving every batch a row count that is a multiple of 8 makes predictions
    independent of batch composition, bit for bit, for equal-length data.
    """
    padded = inputs["padded"]
    missing = -len(padded) % multiple
    if not missing:
        return inputs
    rounded = {}
    for name, values in inputs.items():
        if name == "lengths":
            filler = values.new_full((missing,), padded.shape[1])
        else:
            filler = values.new_zeros((missing,) + values.shape[1:])
        rounded[name] = torch.cat([values, filler])
    return rounded

"""Training data as tensors: placement on the device and mini-batches.

One :class:`TensorData` holds the time steps of all sequences back to back,
their lengths, targets and weights; :class:`Batches` cuts it into
mini-batches, each padded to its own longest sequence only. Batches have the
``(X, y)`` form skorch expects: ``X`` is a dict of the network's inputs
(``padded``, ``lengths``) and, when sequences are weighted, their
``weights``; ``y`` holds the targets. Weights travel in ``X``, as skorch
recommends for sample weights, so that ``y`` stays what skorch's scoring
callbacks expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import Dataset

# Ragged batches are drawn from pools this many batches large, sorted by
# length within the pool: batches then hold similar lengths (little padding)
# while the pools keep the order random from epoch to epoch.
_BUCKET_POOL_BATCHES = 50
# When the training data makes one pool, the sort is by length times a
# random factor in [1, this), drawn every epoch. Sorted by length alone, one
# pool is cut into the same batches every epoch, each of one length range,
# so that batch-norm statistics and each gradient step follow the length
# (and whatever the length predicts). Larger data sets are drawn into new
# pools every epoch, and their batches change with them; there the spread
# would only add padding (it doubled the epoch of benchmarks/tabular.py).
_BUCKET_SPREAD = 4.0

# Data goes to the GPU whole only when it takes at most this share of the
# free device memory; the rest is left for weights, activations and kernels.
_RESIDENT_SHARE = 0.4


@dataclass(eq=False)
class TensorData(Dataset):
    """Sequences, targets and weights as tensors, ready for batching.

    Values per step (``steps``, ``codes``, and with ``per_step`` the
    ``targets`` and ``weights``) have one row per time step, sequence after
    sequence, as :class:`~sklstm._sequences.Sequences` holds them; values
    per sequence have one row per sequence. ``steps``, ``targets`` and
    ``weights`` live on the training device when they fit there;
    ``lengths`` and ``starts`` always stay on the CPU (reading them never
    waits for the device). ``rows`` selects the sequences this object
    stands for, so that training and validation sets share one copy of the
    data; None means all of them.
    """

    steps: torch.Tensor
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
    # Where each sequence's steps begin.
    starts: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.starts = torch.cumsum(self.lengths, 0) - self.lengths

    def __len__(self):
        return len(self.lengths) if self.rows is None else len(self.rows)

    @property
    def iterator(self):
        """The class that cuts this data into batches."""
        return Batches

    @property
    def n_steps(self):
        """Time steps of all sequences (selected by ``rows`` or not)."""
        return len(self.steps)

    def __getitem__(self, index):
        row = index if self.rows is None else int(self.rows[index])
        start = int(self.starts[row])
        steps = slice(start, start + int(self.lengths[row]))
        inputs = {"padded": self.steps[steps], "lengths": self.lengths[row]}
        by_step = steps if self.per_step else row
        if self.weights is not None:
            inputs["weights"] = self.weights[by_step]
        return inputs, None if self.targets is None else self.targets[by_step]

    def dense(self, values):
        """Values per step of equal-length data as ``(n, n_timesteps, ...)``.

        A view: equal-length data keeps one dense block, as a 3-D array
        holds it.
        """
        n_samples = len(self.lengths)
        n_timesteps = int(self.lengths[0]) if n_samples else 0
        return values.view((n_samples, n_timesteps) + values.shape[1:])

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
    spent on padding (in training on data of one pool, lengths up to about
    ``_BUCKET_SPREAD`` times apart, mixed anew every epoch), and each batch
    is padded only to its own longest sequence when it is gathered (in
    training and validation, rounded up by :func:`padded_length`).

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
        Where batches go; None: where ``data.steps`` is.
    by_length : bool, default=False
        For prediction: sort all sequences by length and never batch
        together lengths more than twice apart, so that padding at most
        doubles a batch's work and a few long sequences cost about what
        they cost on their own. Without it (training and validation),
        ragged batches come from pools of ``50 * batch_size`` sequences in
        the given order, each pool sorted by length and cut into batches of
        equal sizes; skorch averages validation losses per batch, so
        validation keeps the batches training has always had.
    shard : tuple of int, default=(0, 1)
        ``(rank, world_size)``: this process's share of a data-parallel
        epoch. Every process cuts the epoch into the same batches, a
        multiple of ``world_size`` of them; each optimiser step takes
        ``world_size`` neighbouring batches, one per process, and this
        process yields the ``rank``-th of each. ``(0, 1)``: all batches.
    """

    def __init__(
        self,
        data,
        batch_size,
        *,
        shuffle=False,
        generator=None,
        device=None,
        by_length=False,
        shard=(0, 1),
    ):
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device) if device is not None else None
        self.by_length = by_length
        self.shard = shard

    def __len__(self):
        if self.by_length and not self.shuffle and not self.data.equal_lengths:
            return len(self._batch_indices())
        # Ragged pools hold a whole number of steps' batches, so this holds
        # for them too.
        return math.ceil(len(self.data) / (self.batch_size * self.shard[1]))

    def _epoch_generator(self):
        if self.generator is not None or not self.shuffle:
            return self.generator
        seed = int(torch.empty((), dtype=torch.int64).random_())
        return torch.Generator().manual_seed(seed)

    def _batch_indices(self):
        n_samples = len(self.data)
        rank, world_size = self.shard
        in_order = not self.shuffle and world_size == 1
        if in_order and self.data.equal_lengths and self.data.rows is None:
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
            batches = _even_split(order, self.batch_size, world_size)
            return batches[rank::world_size]
        if self.by_length and not self.shuffle:
            return _length_groups(order, self.data.lengths, self.batch_size)
        pool_size = self.batch_size * world_size * _BUCKET_POOL_BATCHES
        batches = []
        for pool in torch.split(order, pool_size):
            key = self.data.lengths[pool].double().log()
            if self.shuffle and len(pool) == len(order):
                spread = torch.rand(len(pool), generator=generator, dtype=key.dtype)
                key = key + spread * math.log(_BUCKET_SPREAD)
            by_length = pool[torch.argsort(key, stable=True)]
            batches.extend(_even_split(by_length, self.batch_size, world_size))
        # Whole steps are shuffled: the batches of one step, cut from
        # neighbouring lengths, keep the processes' step times alike.
        steps = torch.arange(len(batches) // world_size)
        if self.shuffle:
            steps = torch.randperm(len(steps), generator=generator)
        return [batches[step * world_size + rank] for step in steps.tolist()]

    def __iter__(self):
        for _, batch in self.with_indices():
            yield batch

    def with_indices(self):
        """Yield ``(indices, batch)``: which sequences each batch holds.

        ``indices`` is an index tensor, or a slice for in-order batches.
        """
        data = self.data
        data_device = data.steps.device
        target_device = self.device if self.device is not None else data_device
        # Where batches must be copied to; None when the data is already there.
        device = None if _holds(target_device, data.steps) else target_device
        pinned = device is not None and device.type == "cuda" and self.shuffle
        fields = {name: getattr(data, name) for name in _FIELDS}
        by_step = {"steps", "codes"}
        if data.per_step:
            by_step |= {"targets", "weights"}
        if data.equal_lengths:
            for name in by_step:
                if fields[name] is not None:
                    fields[name] = data.dense(fields[name])
        batch_indices = self._batch_indices()
        gather_indices = batch_indices
        starts, lengths = data.starts, data.lengths
        if data_device.type != "cpu" and _index_tensors(batch_indices):
            # One host-to-device copy of the epoch's order, not one per
            # batch: a copy from pageable memory waits for the device, so
            # per-batch copies would stall the host before every step. The
            # host keeps its own indices for lengths and placing outputs.
            sizes = [len(indices) for indices in batch_indices]
            order = torch.cat(batch_indices).to(data_device)
            gather_indices = order.split(sizes)
            if not data.equal_lengths:
                starts = starts.to(data_device)
                lengths = lengths.to(data_device)
        for indices, index in zip(batch_indices, gather_indices, strict=True):
            batch_lengths = data.lengths[indices]
            positions = None
            if not data.equal_lengths:
                # Gather only the steps this batch needs: up to its longest,
                # in a fit rounded up to a coarse grid. Prediction passes
                # over the data once, so its batches keep their exact length.
                n_steps = int(batch_lengths.max())
                if not self.by_length:
                    n_steps = padded_length(n_steps)
                positions = step_positions(starts, lengths, index, n_steps)
            batch = {}
            for name, values in fields.items():
                if values is None:
                    continue
                if positions is not None and name in by_step:
                    batch[name] = _gather_steps(values, positions, device, pinned)
                else:
                    batch[name] = _take(values, index, device, pinned)
            inputs = {"padded": batch.pop("steps"), "lengths": batch_lengths}
            targets = batch.pop("targets", None)
            inputs.update(batch)
            yield indices, (inputs, targets)


# The tensors of a TensorData that a batch takes its share of.
_FIELDS = ("steps", "codes", "static", "static_codes", "weights", "targets")


def step_positions(starts, lengths, index, n_steps):
    """Where the steps of sequences ``index`` are: ``(len(index), n_steps)``.

    Row ``i`` holds the positions in ``steps`` of sequence ``index[i]``'s
    steps, then -1 past its end. ``index`` may also be a slice.
    """
    offsets = torch.arange(n_steps, device=starts.device)
    positions = starts[index, None] + offsets
    return positions.masked_fill(offsets >= lengths[index, None], -1)


def padded_length(n_steps):
    """``n_steps`` rounded up to 3 significant bits: 4 sizes per octave.

    A training batch's activations are allocated and freed at every
    optimiser step. Were every batch padded to its own longest sequence,
    ragged data would give nearly every batch a different size, and the C
    allocator, which keeps freed blocks for reuse rather than returning
    them, would fragment its heap with blocks that fit no later batch:
    resident memory would climb through an epoch to several times what a
    batch needs. With a few sizes the freed blocks are reused. Padding never
    changes an output, and the grid adds under a quarter of a batch's
    steps, about 8% on average.
    """
    step = 1 << max(0, n_steps.bit_length() - 3)
    return -(-n_steps // step) * step


def _length_groups(order, lengths, batch_size):
    """Batches of ``order`` sorted by length, each within a factor of two.

    A batch then spends at most half its work on padding. The lengths are
    cut into groups, a new one at the first length more than twice its
    group's shortest; each group is split into batches of equal sizes.
    """
    by_length = order[torch.argsort(lengths[order], stable=True)]
    sorted_lengths = lengths[by_length]
    shortest = []
    for length in torch.unique_consecutive(sorted_lengths).tolist():
        if not shortest or length > 2 * shortest[-1]:
            shortest.append(length)
    cuts = torch.searchsorted(sorted_lengths, sorted_lengths.new_tensor(shortest[1:]))
    batches = []
    for group in torch.tensor_split(by_length, cuts):
        batches.extend(_even_split(group, batch_size))
    return batches


def _holds(device, tensor):
    """Whether ``tensor`` is on ``device``, where "cuda" means the current one."""
    if device.type != tensor.device.type:
        return False
    return device.index is None or device.index == tensor.device.index


def _index_tensors(batch_indices):
    return bool(batch_indices) and not isinstance(batch_indices[0], slice)


def _even_split(order, batch_size, multiple=1):
    """Split into as few batches as ``batch_size`` allows, of equal sizes.

    67 sequences in batches of 16 become 14+14+13+13+13 rather than
    16+16+16+16+3: a 3-sequence batch gives batch norm noisy statistics and
    the optimiser one noisy step per epoch. The number of batches is a
    multiple of ``multiple`` (the processes of a data-parallel fit, which
    each take one batch per step).
    """
    if len(order) == 0:
        return []
    n_batches = multiple * math.ceil(len(order) / (batch_size * multiple))
    if n_batches > len(order):
        # Fewer sequences than processes need batches: some are repeated,
        # as torch's DistributedSampler pads, so that no batch is empty.
        order = order[torch.arange(n_batches) % len(order)]
    return list(torch.tensor_split(order, n_batches))


def _take(tensor, index, device, pinned=False):
    """Rows ``index`` of ``tensor``.

    With a ``device``, the rows are copied there. With ``pinned`` (shuffled
    training batches on CUDA), they are gathered straight into pinned
    memory, from torch's caching host allocator, which keeps each buffer
    until its copy is done: so the copy runs asynchronously and the host can
    prepare the next batch meanwhile. Other batches are copied from ordinary
    memory: prediction waits for each batch's outputs anyway, and its
    batches are large enough that pinned buffers kept in torch's cache
    would hold hundreds of MB of locked host memory.
    """
    if device is None:
        return tensor[index]
    if not pinned:
        return tensor[index].to(device, non_blocking=True)
    shape = (len(index),) + tensor.shape[1:]
    buffer = torch.empty(shape, dtype=tensor.dtype, pin_memory=True)
    torch.index_select(tensor, 0, index, out=buffer)
    return buffer.to(device, non_blocking=True)


def _gather_steps(values, positions, device, pinned=False):
    """Values per step, padded: ``positions.shape + values.shape[1:]``.

    ``positions`` comes from :func:`step_positions`; padding is zero, as a
    value, a target, a weight (padded steps weigh nothing) and a code (the
    unknown category), though the network masks it anyway. Copied to
    ``device`` as :func:`_take` copies rows.
    """
    flat = positions.reshape(-1)
    shape = positions.shape + values.shape[1:]
    if pinned:
        padded = torch.empty(shape, dtype=values.dtype, pin_memory=True)
        torch.index_select(
            values, 0, flat.clamp(min=0), out=padded.view(-1, *shape[2:])
        )
    else:
        padded = values.index_select(0, flat.clamp(min=0)).view(shape)
    padding = (positions < 0).view(positions.shape + (1,) * (values.dim() - 1))
    padded.masked_fill_(padding, 0)
    if device is None:
        return padded
    return padded.to(device, non_blocking=True)


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

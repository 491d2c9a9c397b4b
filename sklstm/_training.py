"""Training and inference machinery: batching, device placement, the skorch net.

skorch runs the loop (callbacks, history, early stopping, checkpoints); this
module feeds it tensors that already live on the training device and keeps
the per-batch work to what a hand-written torch loop would do.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNet
from skorch.callbacks import EpochTimer
from torch import nn

# Ragged batches are drawn from pools this many batches large, sorted by
# length within the pool: batches then hold similar lengths (little padding)
# while the pools keep the order random from epoch to epoch.
_BUCKET_POOL_BATCHES = 50


class TrainingDiverged(RuntimeError):
    """Raised inside the loop when the training loss stops being finite."""


@dataclass
class TensorData:
    """Sequences, targets and weights as tensors, ready for batching.

    ``padded``, ``targets`` and ``weights`` live on the training device when
    they fit there; ``lengths`` always stays on the CPU (packing needs it
    there, and reading it never waits for the device).
    """

    padded: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor | None
    weights: torch.Tensor | None
    equal_lengths: bool
    per_step: bool = False

    def __len__(self):
        return len(self.lengths)


@dataclass
class SplitData:
    """What ``SequenceNet.fit`` receives: training and optional validation."""

    train: TensorData
    valid: TensorData | None = None


def place(array, device):
    """Move an array to ``device`` once; stay on the CPU if it does not fit."""
    tensor = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
    if device.type == "cpu":
        return tensor
    try:
        return tensor.to(device)
    except torch.OutOfMemoryError:
        # Stream from pinned host memory instead, batch by batch.
        torch.cuda.empty_cache()
        return tensor.pin_memory()


class Batches:
    """Mini-batches of a :class:`TensorData`, cut to each batch's longest.

    Equal-length data is shuffled by one ``randperm`` per epoch, as in a
    hand-written loop. Ragged data is bucketed: similar lengths are batched
    together so that little time is spent on padding.
    """

    def __init__(self, data, batch_size, *, shuffle, generator=None, device=None):
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = device if device is not None else data.padded.device

    def __len__(self):
        return math.ceil(len(self.data) / self.batch_size)

    def _batch_indices(self):
        n_samples = len(self.data)
        if self.shuffle:
            order = torch.randperm(n_samples, generator=self.generator)
        else:
            order = torch.arange(n_samples)
        if self.data.equal_lengths:
            return _even_split(order, self.batch_size)
        pool_size = self.batch_size * _BUCKET_POOL_BATCHES
        batches = []
        for pool in torch.split(order, pool_size):
            by_length = pool[torch.argsort(self.data.lengths[pool], stable=True)]
            batches.extend(_even_split(by_length, self.batch_size))
        if self.shuffle:
            shuffled = torch.randperm(len(batches), generator=self.generator)
            batches = [batches[i] for i in shuffled.tolist()]
        return batches

    def __iter__(self):
        for _, batch in self.with_indices():
            yield batch

    def with_indices(self):
        """Yield ``(indices, batch)``: which sequences each batch holds."""
        data = self.data
        on_device = data.padded.device == self.device
        for indices in self._batch_indices():
            lengths = data.lengths[indices]
            if data.equal_lengths:
                n_steps = data.padded.shape[1]
            else:
                n_steps = int(lengths.max())
            index = indices.to(data.padded.device, non_blocking=True)
            padded = data.padded[index, :n_steps]
            targets = _take(data.targets, index, n_steps, data.per_step)
            weights = _take(data.weights, index, n_steps, data.per_step)
            if not on_device:
                padded = padded.to(self.device, non_blocking=True)
                targets = _move(targets, self.device)
                weights = _move(weights, self.device)
            yield indices, (padded, lengths, targets, weights)


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


def _take(tensor, index, n_steps, per_step):
    if tensor is None:
        return None
    # Per-step targets and weights are cut like the inputs.
    return tensor[index, :n_steps] if per_step else tensor[index]


def _move(tensor, device):
    return None if tensor is None else tensor.to(device, non_blocking=True)


class WeightedLoss(nn.Module):
    """Weighted mean of per-sample (or per-step) losses.

    Weights already hold sample and class weights, and are zero on padded
    steps, so one ``sum(weights * losses) / sum(weights)`` serves every task.
    """

    def __init__(self, task="classification"):
        super().__init__()
        self.task = task

    def forward(self, outputs, targets, weights):
        if outputs.dtype in (torch.float16, torch.bfloat16):
            outputs = outputs.float()
        if self.task == "classification":
            losses = F.cross_entropy(
                outputs.reshape(-1, outputs.shape[-1]),
                targets.reshape(-1),
                reduction="none",
            ).view(targets.shape)
        else:
            losses = (outputs - targets).square().mean(dim=-1)
        return (losses * weights).sum() / weights.sum()


def autocast_context(precision, device):
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class SequenceNet(NeuralNet):
    """skorch net that trains on :class:`SplitData` with lean batching.

    The epoch loop, callbacks (early stopping, schedulers, clipping, user
    callbacks) and history are skorch's. What changes: batches come from
    :class:`Batches` instead of a DataLoader, the loss is recorded per epoch
    rather than per batch (no device sync per step), and the validation pass
    also records ``valid_score``.
    """

    def __init__(self, module, *args, precision="32", seed=0, score_fn=None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.precision = precision
        self.seed = seed
        self.score_fn = score_fn

    @property
    def _default_callbacks(self):
        return [("epoch_timer", EpochTimer())]

    def check_data(self, X, y=None):
        if not isinstance(X, SplitData):
            raise TypeError("SequenceNet is fed by sklstm estimators only.")

    def get_split_datasets(self, X, y=None, **fit_params):
        return X.train, X.valid

    def get_iterator(self, dataset, training=False):
        if not hasattr(self, "shuffle_generator_"):
            self.shuffle_generator_ = torch.Generator().manual_seed(self.seed)
        return Batches(
            dataset,
            self.batch_size,
            shuffle=training,
            generator=self.shuffle_generator_,
            device=torch.device(self.device),
        )

    def train_step_single(self, batch, **fit_params):
        padded, lengths, targets, weights = batch
        with autocast_context(self.precision, padded.device):
            outputs = self.module_(padded, lengths)
        loss = self.criterion_(outputs, targets, weights)
        loss.backward()
        return {"loss": loss, "y_pred": outputs}

    def validation_step(self, batch, **fit_params):
        padded, lengths, targets, weights = batch
        with torch.no_grad(), autocast_context(self.precision, padded.device):
            outputs = self.module_(padded, lengths)
        loss = self.criterion_(outputs, targets, weights)
        return {"loss": loss, "y_pred": outputs}

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        self.module_.train(training)
        total_loss = 0.0
        total_weight = 0.0
        collected = []
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            batch_weight = batch[3].sum()
            total_loss = total_loss + step["loss"].detach() * batch_weight
            total_weight = total_weight + batch_weight
            if not training and self.score_fn is not None:
                collected.append((step["y_pred"].float(), batch))
            self.notify("on_batch_end", batch=batch, training=training, **step)
        epoch_loss = float(total_loss / total_weight)
        if training and not math.isfinite(epoch_loss):
            raise TrainingDiverged(epoch_loss)
        self.history.record(prefix + "_loss", epoch_loss)
        if collected:
            self.history.record("valid_score", self.score_fn(collected))

    def predict_outputs(self, data, batch_size):
        """Network outputs for every sequence, as float64 numpy arrays.

        Returns an array ``(n, n_outputs)`` or, for per-step outputs, a
        padded ``(n, max_timesteps, n_outputs)`` array.
        """
        self.module_.eval()
        device = torch.device(self.device)
        batches = Batches(data, batch_size, shuffle=False, device=device)
        result = None
        with torch.inference_mode(), autocast_context(self.precision, device):
            for indices, (padded, lengths, _, _) in batches.with_indices():
                padded, lengths = _round_up_rows(padded, lengths)
                outputs = self.module_(padded, lengths)[: len(indices)]
                outputs = outputs.double().cpu().numpy()
                if result is None:
                    # Ragged batches are grouped by length: put rows back in
                    # input order, padding per-step outputs to full length.
                    shape = (
                        (len(data),)
                        + data.padded.shape[1:2] * (outputs.ndim == 3)
                        + outputs.shape[-1:]
                    )
                    result = np.zeros(shape)
                if outputs.ndim == 3:
                    result[indices.numpy(), : outputs.shape[1]] = outputs
                else:
                    result[indices.numpy()] = outputs
        return result


def _round_up_rows(padded, lengths, multiple=8):
    """Pad a batch with dummy rows to a multiple of ``multiple`` rows.

    Matrix kernels pick different code paths (and summation orders) for
    very small row counts, so a sequence predicted alone could differ from
    the same sequence predicted in a batch by a float32 rounding step.
    Giving every batch a row count that is a multiple of 8 makes predictions
    independent of batch composition, bit for bit, for equal-length data.
    """
    missing = -len(lengths) % multiple
    if not missing:
        return padded, lengths
    filler = padded.new_zeros((missing,) + padded.shape[1:])
    filler_lengths = lengths.new_full((missing,), padded.shape[1])
    return torch.cat([padded, filler]), torch.cat([lengths, filler_lengths])


@contextlib.contextmanager
def seeded(seed, device):
    """Run with torch's global RNG seeded, restoring the caller's RNG after.

    Weight initialisation and dropout draw from the global generator; forking
    it keeps ``random_state`` reproducible without touching user state.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def resolve_device(device):
    """Turn the ``device`` parameter into a usable ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device={device!r} is not a torch device. Use 'auto', 'cpu', "
            "'cuda' or 'cuda:N'."
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available "
                "on this machine. Use device='auto' or device='cpu'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} was requested but MPS is not available. Use "
            "device='auto' or device='cpu'."
        )
    return resolved

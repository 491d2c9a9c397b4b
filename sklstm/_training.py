"""Training and inference machinery: batching, device placement, the skorch net.

skorch runs the loop (callbacks, history, early stopping, checkpoints); this
module feeds it tensors that already live on the training device and keeps
the per-batch work to what a hand-written torch loop would do.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNet
from skorch.callbacks import Callback, EpochTimer
from skorch.utils import TeeGenerator
from torch import nn

from ._network import direct_kernels

# Ragged batches are drawn from pools this many batches large, sorted by
# length within the pool: batches then hold similar lengths (little padding)
# while the pools keep the order random from epoch to epoch.
_BUCKET_POOL_BATCHES = 50


class TrainingDiverged(RuntimeError):
    """Raised inside the loop when the training loss stops being finite."""


class DeviceOutOfMemoryError(torch.OutOfMemoryError, MemoryError):
    """Training or prediction ran out of memory; the message says what to lower.

    Both a ``MemoryError`` and a ``torch.OutOfMemoryError``, so code that
    already catches either keeps working.
    """


def is_out_of_memory(exc):
    """Whether ``exc`` reports an allocation failure, on a GPU or the CPU."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    # torch's CPU allocator raises a plain RuntimeError.
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def parameters_finite(module):
    """True when every parameter of ``module`` is finite (one device sync)."""
    checks = [torch.isfinite(p).all() for p in module.parameters()]
    return bool(torch.stack(checks).all()) if checks else True


@dataclass
class TensorData:
    """Sequences, targets and weights as tensors, ready for batching.

    ``padded``, ``targets`` and ``weights`` live on the training device when
    they fit there; ``lengths`` always stays on the CPU (reading it never
    waits for the device). ``rows`` selects the sequences this object
    stands for, so that training and validation sets share one copy of the
    data; None means all of them.
    """

    padded: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor | None
    weights: torch.Tensor | None
    equal_lengths: bool
    per_step: bool = False
    rows: torch.Tensor | None = None

    def __len__(self):
        return len(self.lengths) if self.rows is None else len(self.rows)


@dataclass
class SplitData:
    """What ``SequenceNet.fit`` receives: training and optional validation."""

    train: TensorData
    valid: TensorData | None = None


# Data goes to the GPU whole only when it takes at most this share of the
# free device memory; the rest is left for weights, activations and kernels.
_RESIDENT_SHARE = 0.4


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
        if not self.shuffle and self.data.equal_lengths and self.data.rows is None:
            # In order and uncut: plain slices, whose batches are views.
            return [
                slice(start, min(start + self.batch_size, n_samples))
                for start in range(0, n_samples, self.batch_size)
            ]
        if self.shuffle:
            order = torch.randperm(n_samples, generator=self.generator)
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
            shuffled = torch.randperm(len(batches), generator=self.generator)
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
        # Where batches must be copied to; None when the data is already there.
        device = None if _holds(self.device, data.padded) else self.device
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
            if data.equal_lengths:
                # None tells the network every row is full length.
                lengths = None
                n_steps = None
            else:
                # Gather only the steps this batch needs.
                lengths = data.lengths[indices]
                n_steps = int(lengths.max())
            yield (
                indices,
                (
                    _take(data.padded, index, n_steps, True, device, pinned),
                    lengths,
                    _take(data.targets, index, n_steps, per_step, device, pinned),
                    _take(data.weights, index, n_steps, per_step, device, pinned),
                ),
            )


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
        if weights is None:
            # Every weight is 1: the plain mean, with no extra kernels.
            if self.task == "classification":
                return F.cross_entropy(outputs, targets)
            return F.mse_loss(outputs, targets)
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
    if precision == "16-mixed" and device.type == "cuda":
        # Off CUDA (a model fitted on a GPU and loaded on a CPU) this
        # precision computes in float32: the CPU has no float16 LSTM kernel.
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def check_precision(precision, device):
    """Refuse, before fitting, a precision that ``device`` cannot train in."""
    if precision == "16-mixed" and device.type != "cuda":
        raise ValueError(
            f"precision='16-mixed' needs a CUDA device, but this fit runs on "
            f"{device.type!r}: float16 recurrent kernels exist only on CUDA. "
            "Use precision='bf16-mixed' or '32' instead."
        )


def new_grad_scaler(precision, device):
    """A loss scaler for float16 training, or None when none is needed.

    float16 gradients of small losses underflow to zero; the scaler
    multiplies the loss before ``backward``, divides the gradients before the
    step, and skips steps whose gradients overflowed.
    """
    if precision != "16-mixed":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


class SequenceNet(NeuralNet):
    """skorch net that trains on :class:`SplitData` with lean batching.

    The epoch loop, callbacks (early stopping, schedulers, clipping, user
    callbacks) and history are skorch's. What changes: batches come from
    :class:`Batches` instead of a DataLoader, the loss is recorded per epoch
    rather than per batch (no device sync per step), and the validation pass
    also records ``valid_score``.
    """

    # Set for the duration of fit_loop when precision is "16-mixed".
    _grad_scaler = None

    def __init__(self, module, *args, precision="32", seed=0, score_fn=None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.precision = precision
        self.seed = seed
        self.score_fn = score_fn

    def __setstate__(self, state):
        super().__setstate__(state)
        # Unpickled recurrent weights are separate tensors. cuDNN wants each
        # layer's weights in one block and would otherwise copy them together
        # on every call; on the CPU this does nothing.
        module = self.__dict__.get("module_")
        if isinstance(module, nn.Module):
            for layer in module.modules():
                if isinstance(layer, nn.RNNBase):
                    layer.flatten_parameters()

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

    def _listening(self, event):
        """Whether any callback does something on ``event``.

        Callbacks inherit no-op hooks from skorch's ``Callback``; calling
        them for every batch is pure overhead, so per-batch events are only
        sent when some callback overrides the hook.
        """
        base_hook = getattr(Callback, event)
        return any(
            getattr(type(callback), event, base_hook) is not base_hook
            for _, callback in self.callbacks_
        )

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        # The loss scaler lives for one fit (or partial_fit) only: a fitted
        # net carries no device state besides its module and optimizer.
        self._grad_scaler = new_grad_scaler(self.precision, self.device)
        try:
            with direct_kernels():
                return super().fit_loop(X, y, epochs=epochs, **fit_params)
        finally:
            self._grad_scaler = None

    def train_step(self, batch, **fit_params):
        # skorch's version wraps the step in an optimizer closure and builds
        # a parameter generator for every batch; Adam, SGD, AdamW and
        # RMSprop need no closure, so take the direct route.
        self.optimizer_.zero_grad(set_to_none=True)
        step = self.train_step_single(batch, **fit_params)
        scaler = self._grad_scaler
        if scaler is not None:
            # Gradient clipping and other callbacks see the true gradients.
            scaler.unscale_(self.optimizer_)
        if self._grad_listeners:
            self.notify(
                "on_grad_computed",
                named_parameters=TeeGenerator(self.get_all_learnable_params()),
                batch=batch,
                training=True,
            )
        if scaler is None:
            self.optimizer_.step()
        else:
            scaler.step(self.optimizer_)  # skipped if a gradient overflowed
            scaler.update()
        return step

    def train_step_single(self, batch, **fit_params):
        padded, lengths, targets, weights = batch
        with autocast_context(self.precision, padded.device):
            outputs = self.module_(padded, lengths)
        loss = self.criterion_(outputs, targets, weights)
        scaler = self._grad_scaler
        (loss if scaler is None else scaler.scale(loss)).backward()
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
        self._grad_listeners = self._listening("on_grad_computed")
        batch_listeners = self._listening("on_batch_begin") or self._listening(
            "on_batch_end"
        )
        losses = []
        batch_weights = []
        collected = []
        for batch in iterator:
            if batch_listeners:
                self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            # Kept as tensors: reading a loss would wait for the device.
            losses.append(step["loss"].detach())
            weights = batch[3]
            batch_weights.append(len(batch[0]) if weights is None else weights.sum())
            if not training and self.score_fn is not None:
                collected.append((step["y_pred"].float(), batch))
            if batch_listeners:
                self.notify("on_batch_end", batch=batch, training=training, **step)
        if isinstance(batch_weights[0], int):
            batch_weights = torch.tensor(batch_weights, device=losses[0].device)
        else:
            batch_weights = torch.stack(batch_weights)
        batch_weights = batch_weights.to(losses[0].dtype)
        epoch_loss = float(
            (torch.stack(losses) * batch_weights).sum() / batch_weights.sum()
        )
        if training and not math.isfinite(epoch_loss):
            raise TrainingDiverged(epoch_loss)
        self.history.record(prefix + "_loss", epoch_loss)
        if collected:
            self.history.record("valid_score", self.score_fn(collected))

    def predict_outputs(self, data, batch_size, transform=None):
        """Network outputs for every sequence, as float64 numpy arrays.

        ``transform`` (e.g. a softmax) is applied to each batch's outputs on
        the device, before they are copied back. Returns an array
        ``(n, n_outputs)`` or, for per-step outputs, a padded
        ``(n, max_timesteps, n_outputs)`` array.
        """
        # Training leaves the module in eval mode; switching only when needed
        # keeps concurrent predictions from writing to the shared module.
        if self.module_.training:
            self.module_.eval()
        device = torch.device(self.device)
        batches = Batches(data, batch_size, shuffle=False, device=device)
        result = None
        with (
            torch.inference_mode(),
            autocast_context(self.precision, device),
            direct_kernels(),
        ):
            for indices, (padded, lengths, _, _) in batches.with_indices():
                n_rows = len(padded)
                padded, lengths = _round_up_rows(padded, lengths)
                outputs = self.module_(padded, lengths)[:n_rows]
                if transform is not None:
                    outputs = transform(outputs)
                outputs = outputs.to("cpu", torch.float64)
                if result is None:
                    # Ragged batches are grouped by length: put rows back in
                    # input order, padding per-step outputs to full length.
                    shape = (
                        (len(data),)
                        + data.padded.shape[1:2] * (outputs.ndim == 3)
                        + outputs.shape[-1:]
                    )
                    result = torch.zeros(shape, dtype=torch.float64)
                # ``indices`` is a slice or an index tensor: either indexes.
                if outputs.ndim == 3:
                    result[indices, : outputs.shape[1]] = outputs
                else:
                    result[indices] = outputs
        return result.numpy()


def _round_up_rows(padded, lengths, multiple=8):
    """Pad a batch with dummy full-length rows to a multiple of ``multiple``.

    Matrix kernels pick different code paths (and summation orders) for
    very small row counts, so a sequence predicted alone could differ from
    the same sequence predicted in a batch by a float32 rounding step.
    Giving every batch a row count that is a multiple of 8 makes predictions
    independent of batch composition, bit for bit, for equal-length data.
    """
    missing = -len(padded) % multiple
    if not missing:
        return padded, lengths
    filler = padded.new_zeros((missing,) + padded.shape[1:])
    if lengths is not None:
        filler_lengths = lengths.new_full((missing,), padded.shape[1])
        lengths = torch.cat([lengths, filler_lengths])
    return torch.cat([padded, filler]), lengths


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


# On a GPU, prediction batches grow with the free memory, within these bounds.
# No activations are kept for a backward pass, so big batches are cheap, and
# they are much faster: on an H100 (hidden 256, 100 steps, 32 features),
# predict_proba ran about 1.4x as many sequences per second at 4,096 rows and
# 1.7x at 16,384 as at 1,024.
_GPU_PREDICT_ROWS = (1024, 16384)
# The share of free GPU memory one prediction batch may plan to take.
_GPU_PREDICT_SHARE = 0.25


def prediction_rows(module, device, n_timesteps, cpu_rows):
    """Rows per prediction batch for ``module`` on ``device``.

    CPUs get ``cpu_rows``. On CUDA, the batch is as large as a quarter of the
    free memory allows, by a generous count of the float32 values that live
    at once per time step: the input and its normalised copy, the
    convolution outputs, and for the recurrent layers two layers' states and
    four gates each (``head.in_features`` bounds a layer's state width). Too
    large a guess still works: prediction halves the batch on running out
    of memory.
    """
    if device.type != "cuda":
        return cpu_rows
    n_inputs = module.feature_mean.numel()
    conv_width = sum(layer.out_channels for layer in module.convolutions)
    width = 2 * n_inputs + conv_width + 6 * module.head.in_features
    free_bytes, _ = torch.cuda.mem_get_info(device)
    rows = int(_GPU_PREDICT_SHARE * free_bytes) // (4 * max(n_timesteps, 1) * width)
    low, high = _GPU_PREDICT_ROWS
    # Multiples of 8 keep predictions independent of batch composition
    # (see _round_up_rows).
    return max(low, min(high, rows // 8 * 8))


def release_cached_memory():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class TrainingSnapshot:
    """Weights, optimizer state and history of a fitted net, to roll back to."""

    def __init__(self, net):
        self.module_state = {
            key: value.detach().clone()
            for key, value in net.module_.state_dict().items()
        }
        self.optimizer_state = copy.deepcopy(net.optimizer_.state_dict())
        self.n_epochs = len(net.history)

    def restore(self, net):
        net.module_.load_state_dict(self.module_state)
        net.optimizer_.load_state_dict(self.optimizer_state)
        del net.history[self.n_epochs :]
        net.module_.eval()


def drop_unfinished_epoch(history, *, validating):
    """Forget the history row of an epoch that an interrupt cut short."""
    required = {"train_loss"} | ({"valid_loss", "valid_score"} if validating else set())
    if len(history) and not required <= set(history[-1]):
        history.pop()

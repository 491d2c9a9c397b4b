"""The training engine: the only module of sklstm that imports skorch.

skorch runs the loop: epochs, batches, callbacks, history, early stopping,
checkpoints. sklstm plugs into it through skorch's documented extension
points only: its data is a torch ``Dataset`` (:class:`~sklstm._data.TensorData`)
split by ``train_split`` and batched by ``iterator_train`` /
``iterator_valid`` (:class:`~sklstm._data.Batches`); :class:`SequenceNet`
overrides ``initialize_module``, ``infer``, ``get_loss`` and the three step
methods (for float16 loss scaling, time-warped training batches, and to
skip per-batch work the optimizers offered here do not need), and, for
data-parallel fits
(:mod:`sklstm._distributed`), ``get_iterator`` (each process's share of the
batches), ``train_step`` (gradients averaged over the processes) and
``run_single_epoch`` (batch-norm statistics averaged); everything else
sklstm needs per epoch (the validation score, divergence, progress, the
processes' agreement on scores) is a callback.
So a stock skorch callback passed in ``callbacks`` sees the net, its history
(per batch too) and its events exactly as skorch documents them.
"""

from __future__ import annotations

import copy
import math
import sys

import torch
from skorch import NeuralNet
from skorch.callbacks import (
    Callback,
    EarlyStopping,
    EpochTimer,
    GradientNormClipping,
    LRScheduler,
    PassthroughScoring,
)
from skorch.history import History
from skorch.utils import TeeGenerator, noop

from ._augment import time_warp
from ._data import Batches, round_up_rows, step_positions
from ._device import (
    autocast_context,
    is_out_of_memory,
    new_generator,
    new_grad_scaler,
    out_of_memory,
    release_cached_memory,
)
from ._distributed import (
    average_gradients,
    average_running_statistics,
    broadcast_module,
    broadcast_values,
)
from ._network import GeneratorDropout

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


class TrainingDiverged(RuntimeError):
    """The training loss stopped being finite, or the weights did."""


def check_callbacks(callbacks):
    """Refuse a ``callbacks`` parameter that skorch could not use."""
    for callback in callbacks or []:
        if not isinstance(callback, Callback) and not (
            isinstance(callback, tuple)
            and len(callback) == 2
            and isinstance(callback[0], str)
            and isinstance(callback[1], Callback)
        ):
            raise TypeError(
                f"callbacks must hold skorch Callback instances or "
                f"(name, Callback) tuples, got {callback!r}."
            )


# ---------------------------------------------------------------------------
class SequenceNet(NeuralNet):
    """skorch net over :class:`~sklstm._data.TensorData` batches.

    A batch is ``(X, y)`` with ``X = {"padded": ..., "lengths": ...}``, the
    network's inputs, plus ``"weights"`` for weighted sequences (or steps),
    and ``y`` the targets.

    Parameters
    ----------
    module, criterion, **kwargs
        As for ``skorch.NeuralNet``.
    precision : {"32", "64", "bf16-mixed", "16-mixed"}, default="32"
        Arithmetic of the module: "64" makes it float64, the mixed ones
        autocast its forward pass.
    seed : int, default=0
        Seeds every random draw of training: the module's initial weights
        and dropout masks (passed to it as ``seed``), the order of the
        training batches and their time warps. Nothing is drawn from
        torch's global generator.
    time_warp : float, default=0.0
        Each training batch's sequences are re-read at random speeds whose
        log varies with this standard deviation (see
        :func:`~sklstm._augment.time_warp`); 0: as they are.
    """

    # The float16 loss scaler, set by ``train`` for one fit only: a fitted
    # net carries no device state besides its module and optimizer.
    grad_scaler = None
    # This process's DataParallel place, set by ``train`` for one
    # data-parallel fit only (see sklstm._distributed); None: training alone.
    data_parallel = None
    # The time warps' generator: made on the batches' device by the first
    # warped step of a fit, dropped by ``train`` when the fit ends.
    warp_generator = None

    def __init__(self, module, *args, precision="32", seed=0, time_warp=0.0, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.precision = precision
        self.seed = seed
        self.time_warp = time_warp

    @property
    def _default_callbacks(self):
        # skorch's defaults less PrintLog: sklstm prints by its own
        # ``verbose`` (see progress_callbacks); a PrintLog passed in
        # ``callbacks`` still prints as skorch documents.
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
        ]

    def initialize_module(self):
        # As skorch's, plus the seed: the module draws its initial weights
        # and dropout masks from generators of its own. It builds them in
        # float32 whatever default dtype the caller set (so a seed gives the
        # same weights); its dtype then follows the precision.
        kwargs = {**self.get_params_for("module"), "seed": self.seed}
        self.module_ = self.initialized_instance(self.module, kwargs)
        if self.precision == "64":
            self.module_.double()
        else:
            self.module_.float()
        return self

    def get_iterator(self, dataset, training=False):
        iterator = super().get_iterator(dataset, training=training)
        if training and getattr(iterator, "generator", False) is None:
            # skorch builds the training batches once per fit (and once per
            # partial_fit); their order is drawn from a generator seeded by
            # this net's seed, not from torch's global one. sklstm builds a
            # net, with a seed of its own, for every fit and partial_fit.
            iterator.generator = new_generator(self.seed, "shuffle")
        if training and self.data_parallel is not None:
            # Every process draws the same batches (same seed), and takes
            # its own share of each step's.
            group = self.data_parallel
            iterator.shard = (group.rank, group.world_size)
        return iterator

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        if training and self.data_parallel is not None:
            # Before validation (or prediction) reads them, the processes'
            # running statistics, each from its own shards, become one.
            average_running_statistics(self.module_, self.data_parallel.world_size)

    def infer(self, x, **fit_params):
        # Unlike skorch's infer, the lengths stay on the CPU where the
        # network reads them without waiting for the device.
        padded = x["padded"]
        network_inputs = {key: value for key, value in x.items() if key != "weights"}
        with autocast_context(self.precision, padded.device):
            return self.module_(**network_inputs, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        weights = None if X is None else X.get("weights")
        return self.criterion_(y_pred, y_true, weights)

    def train_step_single(self, batch, **fit_params):
        # As skorch's, except that the module switches to training mode only
        # when it is not already in it (switching walks every submodule, a
        # cost per batch on small networks), float16 losses are scaled, and
        # the batch's sequences are time-warped when ``time_warp`` asks.
        if not self.module_.training:
            self.module_.train()
        inputs, targets = batch
        if self.time_warp:
            generator = self._warp_generator(inputs["padded"].device)
            inputs = time_warp(inputs, self.time_warp, generator)
        y_pred = self.infer(inputs, **fit_params)
        loss = self.get_loss(y_pred, targets, X=inputs, training=True)
        scaler = self.grad_scaler
        (loss if scaler is None else scaler.scale(loss)).backward()
        return {"loss": loss, "y_pred": y_pred}

    def _warp_generator(self, device):
        generator = self.warp_generator
        if generator is None or generator.device != device:
            # Each process of a data-parallel fit warps its shards its own way.
            rank = 0 if self.data_parallel is None else self.data_parallel.rank
            generator = new_generator(self.seed, "time_warp", device, rank)
            self.warp_generator = generator
        return generator

    def validation_step(self, batch, **fit_params):
        if self.module_.training:
            self.module_.eval()
        inputs, targets = batch
        with torch.no_grad():
            y_pred = self.infer(inputs, **fit_params)
            loss = self.get_loss(y_pred, targets, X=inputs, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch, **fit_params):
        # skorch's train_step passes a closure to the optimizer, for
        # optimizers such as LBFGS that evaluate the loss several times; the
        # optimizers sklstm offers take one step per gradient, and skorch's
        # docs point here for finer control. Callbacks still see
        # on_grad_computed before the step, with true (unscaled) gradients.
        self.optimizer_.zero_grad()
        step = self.train_step_single(batch, **fit_params)
        if self.data_parallel is not None:
            # Before anything reads the gradients (clipping, the scaler's
            # overflow check, the step): every process then does the same.
            step["loss"] = average_gradients(
                self.module_.parameters(),
                step["loss"],
                self.data_parallel.world_size,
            )
        scaler = self.grad_scaler
        if scaler is not None:
            scaler.unscale_(self.optimizer_)
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


# ---------------------------------------------------------------------------
# sklstm's own callbacks
class ValidationScore(Callback):
    """Records ``valid_score``, the estimator's score on the validation batches.

    ``score_fn`` takes a list of ``(outputs, targets, weights)`` per batch
    (weights None when all are 1) and returns a float (accuracy for the
    classifier, R^2 for the regressor).
    """

    def __init__(self, score_fn):
        self.score_fn = score_fn

    def on_epoch_begin(self, net, **kwargs):
        self.collected_ = []

    def on_batch_end(self, net, batch=None, training=False, y_pred=None, **kwargs):
        if not training:
            inputs, targets = batch
            weights = inputs.get("weights")
            self.collected_.append((y_pred.detach().float(), targets, weights))

    def on_epoch_end(self, net, **kwargs):
        if self.collected_:
            net.history.record("valid_score", self.score_fn(self.collected_))
        self.collected_ = []


class RankAgreement(Callback):
    """In a data-parallel fit, every process records rank 0's epoch scores.

    Processes hold the same weights, but each records the training loss
    over its own batches, and validation on different hardware may round
    differently: decisions taken from these scores (early stopping, the
    plateau schedule, divergence) must be the same in every process, or
    one would stop while the others wait for it. Does nothing otherwise.
    """

    _SCORES = ("train_loss", "valid_loss", "valid_score")

    def on_epoch_end(self, net, **kwargs):
        if net.data_parallel is None:
            return
        row = net.history[-1]
        names = [name for name in self._SCORES if name in row]
        if not names:
            return
        values = broadcast_values(
            [row[name] for name in names], torch.device(net.device)
        )
        for name, value in zip(names, values, strict=True):
            net.history.record(name, value)


class DivergenceCheck(Callback):
    """Stops training, with :class:`TrainingDiverged`, once the loss explodes.

    Exploding means not finite, or above ``limit``: a loss that large (a
    million times what guessing would give) is an optimiser running away,
    even while it stays finite.
    """

    def __init__(self, limit=None):
        self.limit = limit

    def on_epoch_end(self, net, **kwargs):
        loss = net.history[-1].get("train_loss")
        if loss is None:
            return
        if not math.isfinite(loss) or (self.limit is not None and loss > self.limit):
            raise TrainingDiverged(f"train_loss={loss}")


class WeightAveraging(Callback):
    """Validates, and keeps, an exponential moving average of the weights.

    After every optimiser step the average moves ``1 - decay`` of the way
    to the new weights (an exponential form of Polyak averaging),
    normalised over the steps taken. Each validation runs on the
    averaged weights, which stay in the module through ``on_epoch_end``, so
    that early stopping scores and snapshots them; the next epoch trains on
    from the weights the optimiser left. After training the module holds
    the average (or, with ``load_best``, the best epoch's average).
    Buffers (batch-norm statistics) are not averaged: they are running
    averages already.

    Must come before early stopping among the callbacks: its
    ``on_train_end`` loads the average, and early stopping's then loads the
    best epoch's.
    """

    def __init__(self, decay):
        self.decay = decay

    def on_train_begin(self, net, **kwargs):
        self.average_ = _copies(net.module_)
        self.trained_ = None
        self.steps_ = 0

    def on_epoch_begin(self, net, **kwargs):
        if self.trained_ is not None:
            _load(net.module_, self.trained_)
            self.trained_ = None

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training and self.trained_ is None:
            self.trained_ = _copies(net.module_)
            _load(net.module_, self.average_)

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            # Normalised over the steps taken so far (as Adam corrects its
            # moments): the first step's weights are the average, not a
            # blend with the initial ones, so short fits do not lag.
            self.steps_ += 1
            weight = (1.0 - self.decay) / (1.0 - self.decay**self.steps_)
            with torch.no_grad():
                for average, param in zip(
                    self.average_, net.module_.parameters(), strict=True
                ):
                    average.lerp_(param.detach(), weight)

    def on_train_end(self, net, **kwargs):
        if self.trained_ is None:
            # Not validated since the last step (no validation split, or
            # an interrupt): the module still holds the trained weights.
            _load(net.module_, self.average_)
        # A fitted net keeps no copies of its weights.
        self.average_ = self.trained_ = None


def _copies(module):
    """Copies of ``module``'s parameters, in ``parameters()`` order."""
    return [param.detach().clone() for param in module.parameters()]


def _load(module, values):
    """Copy ``values`` (see :func:`_copies`) into ``module``'s parameters."""
    with torch.no_grad():
        for param, value in zip(module.parameters(), values, strict=True):
            param.copy_(value)


class ValidationEarlyStopping(EarlyStopping):
    """skorch's ``EarlyStopping``, sitting out epochs with no validation.

    ``partial_fit`` holds no data out, so a net built by ``fit`` with early
    stopping keeps training there without it.
    """

    def on_epoch_end(self, net, **kwargs):
        if self.monitor in net.history[-1]:
            super().on_epoch_end(net, **kwargs)


def latest_loss(net):
    """The loss a plateau schedule watches: validation loss when there is one."""
    row = net.history[-1]
    return row["valid_loss"] if "valid_loss" in row else row["train_loss"]


def _epoch_summary(row):
    parts = [f"train_loss={row['train_loss']:.4f}"]
    if "valid_loss" in row:
        parts.append(f"valid_loss={row['valid_loss']:.4f}")
    if "valid_score" in row:
        parts.append(f"valid_score={row['valid_score']:.4f}")
    return parts


class EpochLines(Callback):
    """``verbose=2``: one line per epoch."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.printed_ = len(net.history)

    def on_epoch_end(self, net, **kwargs):
        self._print_new_epochs(net)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        # Early stopping ends training from its own on_epoch_end, which can
        # run before ours: print the epoch it stopped at here.
        self._print_new_epochs(net)

    def _print_new_epochs(self, net):
        for row in net.history[getattr(self, "printed_", len(net.history) - 1) :]:
            if "train_loss" not in row:
                continue  # an epoch cut short by an interrupt
            parts = [f"epoch {row['epoch']:>4d}"] + _epoch_summary(row)
            parts.append(f"{row['dur']:.2f}s")
            print("  ".join(parts), file=sys.stdout, flush=True)
        self.printed_ = len(net.history)


class EpochProgressBar(Callback):
    """``verbose=1``: a tqdm bar over epochs showing loss and score.

    The bar spans the epochs this call may run (``net.max_epochs``: the
    estimator's for ``fit``, one for ``partial_fit``); when early stopping
    ends training sooner, it closes where training stopped and says so.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        from tqdm.auto import tqdm

        # A fit that raised (e.g. diverged) never reached on_train_end.
        self._close()
        self.first_epoch_ = len(net.history)
        self.bar_ = tqdm(
            total=net.max_epochs, unit="epoch", leave=True, file=sys.stderr
        )

    def on_epoch_end(self, net, **kwargs):
        self._advance(net)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        bar = getattr(self, "bar_", None)
        if bar is None:
            return
        # Early stopping ends training from its own on_epoch_end, which can
        # run before ours: count the epoch it stopped at here.
        self._advance(net)
        if bar.n < bar.total:
            bar.set_description_str("stopped early", refresh=False)
        self._close()

    def _advance(self, net):
        done = len(net.history) - self.first_epoch_
        if done > self.bar_.n and "train_loss" in net.history[-1]:
            row = net.history[-1]
            self.bar_.set_postfix_str(", ".join(_epoch_summary(row)), refresh=False)
            self.bar_.update(done - self.bar_.n)

    def _close(self):
        bar = getattr(self, "bar_", None)
        if bar is not None:
            bar.close()
            del self.bar_


def progress_callbacks(verbose):
    """The callbacks that report progress at this ``verbose`` level."""
    if not verbose:
        return []
    if verbose == 1:
        return [("progress", EpochProgressBar())]
    return [("progress", EpochLines())]


# ---------------------------------------------------------------------------
def build_net(
    *,
    module,
    module_kwargs,
    criterion,
    optimizer,
    lr,
    weight_decay,
    max_epochs,
    batch_size,
    gradient_clip,
    lr_schedule,
    weight_averaging=None,
    time_warp=0.0,
    n_iter_no_change,
    tol,
    use_validation,
    score_fn,
    loss_limit=None,
    verbose,
    callbacks,
    device,
    precision,
    seed,
    iterator=Batches,
):
    """The skorch net for an estimator's settings (not yet initialised).

    ``iterator`` batches its training and validation data: the data's own
    ``iterator``, for data in memory or read from disk.
    """
    steps = [
        ("valid_score", ValidationScore(score_fn)),
        ("rank_agreement", RankAgreement()),
        ("diverged", DivergenceCheck(loss_limit)),
    ]
    if gradient_clip is not None:
        steps.append(("gradient_clip", GradientNormClipping(gradient_clip)))
    if lr_schedule == "cosine":
        steps.append(
            ("lr_schedule", LRScheduler("CosineAnnealingLR", T_max=max_epochs))
        )
    elif lr_schedule == "plateau":
        steps.append(
            (
                "lr_schedule",
                LRScheduler(
                    "ReduceLROnPlateau",
                    monitor=latest_loss,
                    factor=0.5,
                    patience=max(1, n_iter_no_change // 2),
                ),
            )
        )
    if weight_averaging is not None:
        # Before early stopping, which must see (and keep) the averages.
        steps.append(("weight_averaging", WeightAveraging(weight_averaging)))
    if use_validation:
        steps.append(
            (
                "early_stopping",
                ValidationEarlyStopping(
                    monitor="valid_score",
                    lower_is_better=False,
                    patience=n_iter_no_change,
                    threshold=tol,
                    threshold_mode="abs",
                    load_best=True,
                    # A module-level function, not a lambda: the fitted
                    # estimator must stay picklable.
                    sink=noop,
                ),
            )
        )
    steps.extend(progress_callbacks(verbose))
    steps.extend(callbacks or [])
    return SequenceNet(
        module,
        criterion=criterion,
        optimizer=OPTIMIZERS[optimizer],
        optimizer__weight_decay=weight_decay,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        iterator_train=iterator,
        iterator_train__shuffle=True,
        iterator_train__device=device,
        iterator_valid=iterator,
        iterator_valid__device=device,
        train_split=None,
        callbacks=steps,
        # skorch's own messages (e.g. a PrintLog passed in callbacks) print;
        # sklstm's progress follows the estimator's verbose instead.
        verbose=1,
        device=str(device),
        precision=precision,
        seed=seed,
        time_warp=time_warp,
        **{f"module__{key}": value for key, value in module_kwargs.items()},
    )


class _RowSplit:
    """``train_split`` for skorch: fixed training and validation rows."""

    def __init__(self, train_rows, valid_rows, weighted):
        self.train_rows = train_rows
        self.valid_rows = valid_rows
        self.weighted = weighted

    def __call__(self, dataset, y=None, **fit_params):
        return (
            dataset.subset(self.train_rows, weighted=self.weighted[0]),
            dataset.subset(self.valid_rows, weighted=self.weighted[1]),
        )


def train(
    net,
    data,
    train_rows,
    valid_rows,
    *,
    epochs,
    weighted=(True, True),
    data_parallel=None,
):
    """Train ``net`` for ``epochs`` epochs on ``data``; True if interrupted.

    ``valid_rows`` (or None) are held out for validation. ``weighted`` says,
    for training and validation rows, whether their weights differ from 1.
    ``data_parallel`` (a :class:`~sklstm._distributed.DataParallel`) trains
    this process's share of a data-parallel fit: every process passes the
    same data and an identically built net, and all end with the same
    weights; validation runs on all ``valid_rows`` in every process.
    Raises :class:`TrainingDiverged` when the loss explodes or the weights
    become non-finite, and :class:`~sklstm._device.DeviceOutOfMemoryError` when a
    batch does not fit in memory (with the failed batch's memory released);
    the caller then keeps no part of this training.
    """
    if valid_rows is None:
        dataset = data.subset(train_rows, weighted=weighted[0])
        split = None
    else:
        dataset = data
        split = _RowSplit(train_rows, valid_rows, weighted)
    n_epochs_before = len(net.history)
    net.set_params(train_split=split, max_epochs=epochs)
    net.grad_scaler = new_grad_scaler(net.precision, torch.device(net.device))
    net.data_parallel = data_parallel
    net.warp_generator = None
    failure = None
    try:
        if data_parallel is not None:
            broadcast_module(net.module_)
            _draw_dropout_for(net.module_, data_parallel.rank)
        # skorch's partial_fit: on_train_begin, the epochs, on_train_end;
        # an interrupt (the user's, or a callback's stop) ends it quietly.
        net.partial_fit(dataset)
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        failure = out_of_memory(exc)
    finally:
        # The fitted net keeps no reference to this fit's data.
        net.set_params(train_split=None)
        net.grad_scaler = None
        net.warp_generator = None
        if data_parallel is not None:
            net.data_parallel = None
            _draw_dropout_for(net.module_, 0)
    if failure is not None:
        # Raised out here, where the failed batch's activations are already
        # free; gradients go too, so a retry with a smaller batch_size in the
        # same process finds the memory released.
        net.optimizer_.zero_grad(set_to_none=True)
        release_cached_memory()
        raise failure
    # An epoch without a training loss was cut short by an interrupt; an
    # early stop (skorch's EarlyStopping or another callback) comes after an
    # epoch is complete.
    interrupted = len(net.history) > n_epochs_before and (
        "train_loss" not in net.history[-1]
        or (valid_rows is not None and "valid_score" not in net.history[-1])
    )
    if interrupted:
        net.history.pop()
        if len(net.history) == n_epochs_before:
            raise KeyboardInterrupt
    # The loss is checked once per epoch; the very last optimizer step (or
    # an interrupted epoch) can still have left non-finite weights.
    if not parameters_finite(net.module_):
        raise TrainingDiverged("non-finite weights")
    # Prediction then never has to switch modes on a shared module.
    net.module_.eval()
    return interrupted


def _draw_dropout_for(module, rank):
    for layer in module.modules():
        if isinstance(layer, GeneratorDropout):
            layer.draw_for_process(rank)


def parameters_finite(module):
    """True when every parameter of ``module`` is finite (one device sync)."""
    checks = [torch.isfinite(p).all() for p in module.parameters()]
    return bool(torch.stack(checks).all()) if checks else True


def predict_outputs(net, data, batch_size, transform=None):
    """Network outputs for every sequence of ``data``, as float64 numpy arrays.

    ``transform`` (e.g. a softmax) is applied to each batch's outputs on the
    device, before they are copied back. Returns an array ``(n, n_outputs)``,
    rows in the order of ``data``, or for per-step outputs
    ``(total_steps, n_outputs)``, one row per step as ``data.steps`` holds
    them (no padding). On running out of memory the batch is halved and
    prediction retried; if even one sequence does not fit,
    :class:`~sklstm._device.DeviceOutOfMemoryError` is raised.
    """
    while True:
        try:
            return _predict_in_batches(net, data, batch_size, transform)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            failure = out_of_memory(exc) if batch_size == 1 else None
        if failure is not None:
            raise failure
        # Prediction keeps no gradients, so halving the batch halves the
        # memory it needs. Out here, the failed attempt's tensors are no
        # longer held by the exception.
        release_cached_memory()
        batch_size //= 2


def _predict_in_batches(net, data, batch_size, transform):
    device = torch.device(net.device)
    batches = data.iterator(
        data, batch_size, shuffle=False, device=device, by_length=True
    )
    result = None
    # skorch's evaluation_step would set every submodule's mode again for
    # each batch; training leaves the module in eval mode, so this switches
    # only when needed, and infer (skorch's documented hook) runs the batch.
    if net.module_.training:
        net.module_.eval()
    with torch.inference_mode():
        for indices, (inputs, _) in batches.with_indices():
            n_rows = len(inputs["padded"])
            outputs = net.infer(round_up_rows(inputs))[:n_rows]
            if transform is not None:
                outputs = transform(outputs)
            outputs = outputs.to("cpu", torch.float64)
            per_step = outputs.ndim == 3
            if result is None:
                n_rows = data.n_steps if per_step else len(data)
                shape = (n_rows,) + outputs.shape[-1:]
                result = torch.zeros(shape, dtype=torch.float64)
            # Ragged batches are grouped by length: put rows back in input
            # order, and per-step outputs where their steps are.
            # ``indices`` is a slice or an index tensor: either indexes.
            if not per_step:
                result[indices] = outputs
            elif data.equal_lengths:
                data.dense(result)[indices] = outputs
            else:
                positions = step_positions(
                    data.starts, data.lengths, indices, outputs.shape[1]
                )
                valid = positions >= 0
                result[positions[valid]] = outputs[valid]
    return result.numpy()


def continue_training(net, fitted, *, lr, weight_decay):
    """Give a new, initialised ``net`` what the ``fitted`` net has learned.

    The weights and history carry over, and the optimizer's state when the
    optimizer is of the same kind, with this fit's ``lr`` and
    ``weight_decay``. ``fitted`` is left as it is.
    """
    net.module_.load_state_dict(fitted.module_.state_dict())
    if type(net.optimizer_) is type(fitted.optimizer_):
        net.optimizer_.load_state_dict(fitted.optimizer_.state_dict())
        # Where a setting is unchanged, the optimizer goes on where it was
        # (a schedule may have lowered its learning rate since).
        for group in net.optimizer_.param_groups:
            if lr != fitted.lr:
                group["lr"] = lr
            if weight_decay != fitted.optimizer__weight_decay:
                group["weight_decay"] = weight_decay
    for group in net.optimizer_.param_groups:
        # Schedulers resuming at a later epoch look for the rate they
        # started from.
        group.setdefault("initial_lr", group["lr"])
    net.history = History(copy.deepcopy(fitted.history.to_list()))
    return net


def restore_net(net, state_dict, history):
    """Give an initialised ``net`` saved weights and a saved history."""
    # The optimizer starts afresh; schedulers resuming at a later epoch
    # look for the learning rate they started from.
    for group in net.optimizer_.param_groups:
        group.setdefault("initial_lr", group["lr"])
    net.module_.load_state_dict(state_dict, strict=True)
    net.module_.eval()
    net.history = History(history)
    return net


__all__ = [
    "OPTIMIZERS",
    "SequenceNet",
    "TrainingDiverged",
    "continue_training",
    "build_net",
    "check_callbacks",
    "predict_outputs",
    "restore_net",
    "train",
]

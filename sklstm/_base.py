"""Estimator logic shared by :class:`LSTMClassifier` and :class:`LSTMRegressor`."""

from __future__ import annotations

import math
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from ._data import Batches, TensorData, place
from ._device import (
    DeviceOutOfMemoryError,
    check_precision,
    check_prediction_precision,
    cpu_threads,
    is_out_of_memory,
    prediction_rows,
)
from ._distributed import agree_on_fit, data_parallel, training_device
from ._model_file import write_model_file
from ._network import (
    AUTO_DIFFERENCES,
    AUTO_POOLING,
    RecurrentNetwork,
    chunked_convolutions,
)
from ._out_of_core import StreamedSequences, is_out_of_core, stream_sequences
from ._sequences import (
    check_features,
    difference_scale,
    feature_moments,
    missing_features,
    record_features,
    to_sequences,
    warn_if_channels_first,
)
from ._streaming import StreamedData
from ._tabular import (
    Layout,
    is_tabular_input,
    read_columns,
    resolve_layout,
    tabular_network_arguments,
    tabular_tensors,
    to_tabular_sequences,
)
from ._targets import check_total_weight, check_weight_shape
from ._trainer import (
    OPTIMIZERS,
    TrainingDiverged,
    build_net,
    check_callbacks,
    continue_training,
    predict_outputs,
    train,
)
from ._typing import ArrayLike, FileLike, PathLike, Self, SequencesLike, TargetsLike

# Prediction runs in large batches: no gradients are kept, so memory allows it
# and per-batch overhead vanishes. This is the CPU's; GPUs take larger ones
# (see prediction_rows).
_PREDICT_BATCH_SIZE = 1024

# A training loss this many times the loss of guessing (see the criteria's
# chance_loss) is an optimiser running away, even while it stays finite.
_EXPLODED = 1e6

# Bounds of batch_size="auto" (n_train // 16 in between).
_AUTO_MIN_BATCH = 16
_AUTO_MAX_BATCH = 64
# max_epochs="auto": at least this many optimiser steps (more for sequences
# longer than _AUTO_LONG steps), within these epochs (the most, too, grows
# with the length)...
_AUTO_MIN_STEPS = 500
_AUTO_LONG = 100
_AUTO_MIN_EPOCHS = 100
_AUTO_MAX_EPOCHS = 300
# ...and at most this many sequence steps in all (epochs x the training
# sequences' steps), which bounds a default fit's time, but never fewer
# than _AUTO_FLOOR_EPOCHS epochs.
_AUTO_WORK = 5_000_000
_AUTO_FLOOR_EPOCHS = 10
# The share of a default training step's time spent on every time step
# whatever recurrent_stride is (preparing the input, the first convolution):
# with recurrent_stride=s the budget counts a time step as
# _UNSTRIDED_SHARE + (1 - _UNSTRIDED_SHARE) / s of one. Where the
# convolutions all read every step (conv_placement="before", or a network
# built before they followed the stride) they take _FULL_RESOLUTION_SHARE.
# Measured on 2 CPU cores against a step at stride 1 (427 steps): at stride
# 3 (1,460 steps) a time step cost about 0.39 of one with the later
# convolutions on chunk means and about two thirds without.
_UNSTRIDED_SHARE = 0.1
_FULL_RESOLUTION_SHARE = 0.5


def _epoch_work(train_steps, stride, full_resolution_convs=False):
    """An epoch's work in the units of _AUTO_WORK: its sequence steps, each
    counted as its share of a step read by the recurrent layers one by one."""
    share = _FULL_RESOLUTION_SHARE if full_resolution_convs else _UNSTRIDED_SHARE
    return train_steps * (share + (1 - share) / stride)


def _budget_pace(module_kwargs):
    """What the budget counts of a network built from ``module_kwargs``: its
    recurrent stride, and whether its convolutions read every step while
    the recurrent layers stride (the arguments of _epoch_work after the
    steps)."""
    stride = module_kwargs.get("recurrent_stride", 1)
    conv_stride = module_kwargs.get("conv_stride", 1)
    return stride, bool(module_kwargs.get("conv_filters")) and conv_stride < stride


# early_stopping="auto" holds out a validation set from this many sequences.
_AUTO_EARLY_STOPPING_MIN_SAMPLES = 50
# length_aware: the least spread of log lengths the length is scaled by.
_MIN_LOG_LENGTH_SCALE = 0.2
# recurrent_stride="auto": at most this many recurrent steps per sequence.
_AUTO_RECURRENT_STEPS = 500
# Parallel convolutions after the first read pairs of steps (their first
# layer's output averaged two by two) when every training sequence has at
# least this many steps, and recurrent_stride's chunks when it is larger.
_CONV_PAIRS_MIN_STEPS = 100
# differences="auto": univariate series of equal length get differences
# (AUTO_DIFFERENCES) from this many steps (the classifier's; the regressor
# sets its own), up to where recurrent_stride="auto" starts reading several
# steps at once.
_AUTO_DIFFERENCES_MIN_STEPS = 100


class BaseLSTM(BaseEstimator, metaclass=ABCMeta):
    """Base class for recurrent-network estimators.

    Warning: this class should not be used directly. Use derived classes
    instead.
    """

    # differences="auto" from this many steps (see _AUTO_DIFFERENCES_MIN_STEPS).
    _auto_differences_min_steps = _AUTO_DIFFERENCES_MIN_STEPS

    _parameter_constraints: dict = {
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "num_layers": [Interval(Integral, 1, None, closed="left")],
        "bidirectional": ["boolean"],
        "cell": [StrOptions({"lstm", "gru"})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "output_mode": [StrOptions({"last", "sequence"})],
        "pooling": [StrOptions({"auto", "last", "mean", "max", "attention"})],
        "conv_filters": [None, tuple, list],
        "conv_kernel_size": [
            Interval(Integral, 1, None, closed="left"),
            tuple,
            list,
            StrOptions({"auto"}),
        ],
        "conv_placement": [StrOptions({"parallel", "before"})],
        "recurrent_stride": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "conv_stride": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "forget_bias": [Interval(Real, None, None, closed="neither")],
        "standardize": ["boolean"],
        "sequence_norm": [None, StrOptions({"append", "replace"})],
        "differences": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "length_aware": ["boolean"],
        "categorical_features": [
            None,
            StrOptions({"from_dtype"}),
            "array-like",
            str,
            Integral,
        ],
        "static_features": [None, "array-like", str, Integral],
        "embedding_size": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "min_frequency": [Interval(Integral, 1, None, closed="left")],
        "time_deltas": ["boolean", StrOptions({"auto"})],
        "max_epochs": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "batch_size": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "gradient_clip": [None, Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [None, StrOptions({"cosine", "plateau"})],
        "weight_averaging": [None, Interval(Real, 0, 1, closed="neither")],
        "time_warp": [Interval(Real, 0, 1, closed="both")],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "device": [str],
        "precision": [StrOptions({"32", "64", "bf16-mixed", "16-mixed"})],
        "n_threads": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "distributed": ["boolean", StrOptions({"auto"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [None, list],
    }

    @abstractmethod
    def __init__(
        self,
        *,
        hidden_size,
        num_layers,
        bidirectional,
        cell,
        dropout,
        output_mode,
        pooling,
        conv_filters,
        conv_kernel_size,
        conv_placement,
        recurrent_stride,
        conv_stride,
        forget_bias,
        standardize,
        sequence_norm,
        differences,
        length_aware,
        categorical_features,
        static_features,
        embedding_size,
        min_frequency,
        time_deltas,
        max_epochs,
        batch_size,
        lr,
        optimizer,
        weight_decay,
        gradient_clip,
        lr_schedule,
        weight_averaging,
        time_warp,
        early_stopping,
        validation_fraction,
        n_iter_no_change,
        tol,
        warm_start,
        device,
        precision,
        n_threads,
        distributed,
        random_state,
        verbose,
        callbacks,
    ):
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.cell = cell
        self.dropout = dropout
        self.output_mode = output_mode
        self.pooling = pooling
        self.conv_filters = conv_filters
        self.conv_kernel_size = conv_kernel_size
        self.conv_placement = conv_placement
        self.recurrent_stride = recurrent_stride
        self.conv_stride = conv_stride
        self.forget_bias = forget_bias
        self.standardize = standardize
        self.sequence_norm = sequence_norm
        self.differences = differences
        self.length_aware = length_aware
        self.categorical_features = categorical_features
        self.static_features = static_features
        self.embedding_size = embedding_size
        self.min_frequency = min_frequency
        self.time_deltas = time_deltas
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.lr_schedule = lr_schedule
        self.weight_averaging = weight_averaging
        self.time_warp = time_warp
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.n_threads = n_threads
        self.distributed = distributed
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------
    # Hooks: what the thin subclasses fill in. Everything else is shared.
    @property
    @abstractmethod
    def _criterion(self):
        """The loss, a ``torch.nn.Module`` class called as
        ``criterion(outputs, targets, weights)``."""

    @abstractmethod
    def _encode_targets(self, y, sequences, *, reset, classes=None):
        """Validate ``y``; return (targets array, target state).

        The target state is what :meth:`_store_target_state` keeps after a
        successful fit (classes, target scale); ``reset=False`` encodes with
        the stored state of the fitted estimator.
        """

    @abstractmethod
    def _store_target_state(self, state):
        """Keep the target state of a successful fit as fitted attributes."""

    @abstractmethod
    def _n_outputs(self, target_state):
        """Outputs of the network per sequence (or per step)."""

    @abstractmethod
    def _step_weights(self, targets, sample_weight, sequences, state):
        """Per-sample (or per-step) training weights, float32."""

    @abstractmethod
    def _validation_score(self, collected):
        """Validation score from ``(outputs, targets, weights)`` per batch."""

    @abstractmethod
    def _prediction_head(self):
        """A torch module mapping network outputs to what predict returns.

        The ONNX export appends it to the network.
        """

    def _extra_network_arguments(self, target_state):
        """Network arguments only this estimator passes (none by default:
        files then name no argument an earlier sklstm does not know)."""
        return {}

    def _stratify_labels(self, targets):
        """Labels to stratify the validation split by; None for a random one."""
        return None

    def _centre(self, net, sequences, targets, weights, train_rows, valid_rows):
        """Adjust ``net``, a fit's newly trained net, on its training rows
        and its held-out ``valid_rows`` (None when it held none out) before
        the fit calibrates or stores anything (nothing by default;
        ``partial_fit`` does not call it)."""

    def _calibrate(self, net, sequences, targets, weights, valid_rows):
        """State learned from the validation rows by ``net``, a fit's newly
        trained net, before the fit stores anything; None when there is
        none. ``valid_rows`` is None when the fit held nothing out."""
        return None

    def _store_calibration(self, calibration):
        """Keep what :meth:`_calibrate` returned as fitted attributes."""

    # ------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        # NaN in a numeric feature is a missing value the network handles.
        tags.input_tags.allow_nan = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X: SequencesLike,
        y: TargetsLike,
        sample_weight: ArrayLike | None = None,
    ) -> Self:
        """Train the network on sequences ``X`` and targets ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features), \
                (n_samples, n_timesteps), or list of array-like
            Sequences. A 2-D array holds one univariate sequence per row; a
            list may hold sequences of different lengths, each
            ``(n_timesteps_i, n_features)`` or ``(n_timesteps_i,)``.
        y : array-like
            Targets: one per sequence (``output_mode="last"``) or one per
            time step (``output_mode="sequence"``).
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sequence in the loss.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, *, incremental, classes=None):
        # Training needs gradients and ordinary tensors, whatever the caller
        # has switched off around the call (torch.no_grad, inference_mode).
        with (
            cpu_threads(self.n_threads),
            torch.inference_mode(False),
            torch.enable_grad(),
        ):
            return self._fit_with_gradients(
                X, y, sample_weight, incremental=incremental, classes=classes
            )

    def _fit_with_gradients(self, X, y, sample_weight, *, incremental, classes):
        self._check_parameters()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target "
                "y is None. Pass the targets as the second argument of fit."
            )
        continuing = hasattr(self, "net_") and (self.warm_start or incremental)
        if continuing:
            changed = self._architecture_changes()
            if changed:
                warnings.warn(
                    f"{'partial_fit' if incremental else 'warm_start=True'}, but "
                    f"{', '.join(changed)} changed since the network was built: "
                    "the fitted network cannot take that, so this fit trains a "
                    "new one from scratch.",
                    UserWarning,
                    stacklevel=4,
                )
                continuing = False
        sequences, tabular_state = self._to_sequences(X, reset=not continuing)
        if isinstance(sequences, StreamedSequences):
            # One pass over data read from disk, before any training: values
            # checked, feature statistics computed.
            sequences.scan()
        if continuing:
            check_features(self, X, sequences)
        else:
            warn_if_channels_first(sequences)
        targets, target_state = self._encode_targets(
            y, sequences, reset=not continuing, classes=classes
        )
        sample_weight = self._check_sample_weight(sample_weight, sequences)
        group = data_parallel(self.distributed)
        if group is not None and isinstance(sequences, StreamedSequences):
            raise ValueError(
                f"X is a {type(X).__name__} read from disk batch by batch, and "
                "data-parallel training does not stream yet: each process "
                "needs the whole data in memory. Load it with np.asarray(X), "
                "or set distributed=False to train in this process alone."
            )
        device = training_device(self.device, group)
        check_precision(self.precision, device)
        if continuing:
            seed = self._seed + len(self.net_.history)
        else:
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        weights = self._step_weights(targets, sample_weight, sequences, target_state)
        if group is not None:
            # One seed for all processes (random_state=None draws one in
            # each): the same split, initial weights and batch order.
            seed = agree_on_fit(
                group,
                seed,
                sequences.n_samples,
                [
                    sequences.steps,
                    sequences.lengths,
                    sequences.codes,
                    sequences.static,
                    sequences.static_codes,
                    targets,
                    weights,
                ],
                device,
            )

        use_validation = not incremental and self._early_stopping_on(
            sequences.n_samples
        )
        train_rows, valid_rows = self._split(targets, sequences, seed, use_validation)
        totals = weights
        if self.output_mode == "sequence":
            # Weights per step: a sequence weighs what its steps weigh.
            totals = np.add.reduceat(weights, sequences.offsets[:-1])
        check_total_weight(totals, train_rows, valid_rows)
        data = self._tensor_data(sequences, targets, weights, device)
        train_steps = int(sequences.lengths[train_rows].sum())
        if continuing:
            # A new net with this fit's settings (lr, optimizer, batch
            # size, schedule, callbacks, dropout...) takes over the fitted
            # one's weights, optimizer state and history; the fitted net
            # stays as it was until this fit succeeds.
            module_kwargs = dict(self.net_.get_params_for("module"))
            module_kwargs["dropout"] = self.dropout
            net = self._net_for(
                module_kwargs,
                device,
                n_train=len(train_rows),
                train_steps=train_steps,
                use_validation=use_validation,
                seed=seed,
                iterator=data.iterator,
                incremental=incremental,
            )
            net.initialize()
            continue_training(
                net, self.net_, lr=self.lr, weight_decay=self.weight_decay
            )
        else:
            net = self._build_net(
                sequences,
                target_state,
                tabular_state,
                device,
                n_train=len(train_rows),
                train_steps=train_steps,
                use_validation=use_validation,
                seed=seed,
                iterator=data.iterator,
                incremental=incremental,
            )
            try:
                net.initialize()
            except (RuntimeError, MemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                raise self._out_of_memory_error(exc, "build", device) from exc
        # The net was built for this fit's max_epochs (its schedule spans them).
        epochs = 1 if incremental else net.max_epochs
        interrupted = self._train_checked(
            net, data, train_rows, valid_rows, epochs, weights, group, device
        )
        # Before anything is stored: if this fails, the estimator keeps the
        # model it had.
        if not incremental:
            self._centre(net, sequences, targets, weights, train_rows, valid_rows)
        folds = []
        if valid_rows is not None and not continuing and not interrupted:
            epoch = _epoch_work(
                train_steps, *_budget_pace(net.get_params_for("module"))
            )
            work = (len(net.history) * epoch, net.max_epochs * epoch)
            folds = self._calibration_folds(
                sequences, (train_rows, valid_rows), seed, work
            )
        if folds:
            calibration = self._cross_calibration(
                net,
                valid_rows,
                folds,
                sequences=sequences,
                targets=targets,
                weights=weights,
                data=data,
                device=device,
                group=group,
            )
        else:
            calibration = self._calibrate(net, sequences, targets, weights, valid_rows)

        self.net_ = net
        self._seed = seed
        if not continuing:
            # What resolved the "auto" parameters; sklstm.load needs them.
            self._n_train = len(train_rows)
            self._train_steps = train_steps
            self._use_validation = use_validation
        self._store_target_state(target_state)
        self._store_calibration(calibration)
        record_features(self, sequences)
        self._layout, categories = tabular_state
        if categories is None:
            self.__dict__.pop("categories_", None)
        else:
            self.categories_ = categories
        self.history_ = net.history
        self.n_iter_ = len(net.history)
        self.loss_curve_ = list(net.history[:, "train_loss"])
        self.validation_scores_ = (
            list(net.history[:, "valid_score"]) if use_validation else None
        )
        self.best_validation_score_ = (
            max(self.validation_scores_) if use_validation else None
        )
        if interrupted:
            warnings.warn(
                f"Training was interrupted after {self.n_iter_} epochs; the "
                "estimator keeps the weights learned so far.",
                RuntimeWarning,
                stacklevel=3,
            )
        return self

    def _train_checked(
        self, net, data, train_rows, valid_rows, epochs, weights, group, device
    ):
        """``train``, with its failures turned into errors that say what to
        change; True if the user interrupted it."""
        try:
            return train(
                net,
                data,
                train_rows,
                valid_rows,
                epochs=epochs,
                weighted=self._weighted_rows(weights, train_rows, valid_rows),
                data_parallel=group,
            )
        except BaseException as exc:
            n_epochs = len(net.history)
            if isinstance(exc, TrainingDiverged):
                raise self._diverged_error(n_epochs) from None
            if isinstance(exc, DeviceOutOfMemoryError):
                raise self._out_of_memory_error(
                    exc, "train", device, batch_size=net.batch_size
                ) from None
            raise

    def _cross_calibration(
        self,
        net,
        valid_rows,
        folds,
        *,
        sequences,
        targets,
        weights,
        data,
        device,
        group,
    ):
        """What calibrates the intervals, in place of :meth:`_calibrate`:
        the errors of ``net``, the fit's trained net, on its ``valid_rows``,
        pooled with those of one more network per fold of
        :meth:`_calibration_folds`.

        Each trains as the fit's network did (a new network, this fit's
        settings and as many training sequences) on all rows but its
        held-out ones, which early-stop and calibrate it, and is then
        discarded: only its errors are kept. It trains silently and without
        the user's callbacks, which are there to watch or steer the
        network that ``fit`` keeps. The keyword arguments are the fit's. An
        interrupt ends this with the fit's own calibration and a warning.
        """
        # The same network arguments as ``net``'s (standardisation, changes'
        # scale, embeddings), learned once from the fit's data; each further
        # network draws its own weights from its seed.
        module_kwargs = net.get_params_for("module")
        scores = [
            self._calibration_scores(net, sequences, targets, weights, valid_rows)
        ]
        for member_seed, rows, held_out in folds:
            member = self._net_for(
                dict(module_kwargs),
                device,
                n_train=len(rows),
                train_steps=int(sequences.lengths[rows].sum()),
                use_validation=True,
                seed=member_seed,
                iterator=data.iterator,
                quiet=True,
            )
            member.initialize()
            try:
                interrupted = self._train_checked(
                    member,
                    data,
                    rows,
                    held_out,
                    member.max_epochs,
                    weights,
                    group,
                    device,
                )
            except KeyboardInterrupt:
                interrupted = True
            if interrupted:
                warnings.warn(
                    "Training of the networks that calibrate the intervals "
                    f"was interrupted after {len(scores) - 1} of {len(folds)}; "
                    "the intervals are calibrated on the validation split "
                    "alone.",
                    RuntimeWarning,
                    stacklevel=4,
                )
                return self._pooled_calibration(scores[:1])
            self._centre(member, sequences, targets, weights, rows, held_out)
            scores.append(
                self._calibration_scores(member, sequences, targets, weights, held_out)
            )
        return self._pooled_calibration(scores)

    def _calibration_folds(self, sequences, rows, seed, work):
        """``(seed, training rows, held-out rows)`` of each further network
        that :meth:`_cross_calibration` trains (none by default), given the
        fit's training and validation ``rows``, its ``seed`` and ``work``:
        what its network went through and the most one network of its
        ``max_epochs`` can (in the units of ``_AUTO_WORK``)."""
        return []

    def _calibration_scores(self, net, sequences, targets, weights, rows):
        """What :meth:`_calibrate` learns from, of ``net`` on ``rows``."""
        raise NotImplementedError

    def _pooled_calibration(self, scores):
        """The calibration learned from several networks'
        :meth:`_calibration_scores` (see :meth:`_cross_calibration`)."""
        raise NotImplementedError

    def _architecture_changes(self):
        """Parameters changed since the fitted network was built, that it
        cannot take: its shape, its dtype, what it outputs."""
        built = self.net_.get_params_for("module")
        now = {
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "cell": self.cell,
            "output_mode": self.output_mode,
            "pooling": self.pooling,
            "conv_filters": tuple(self.conv_filters or ()),
            "conv_kernel_size": self._conv_kernel_sizes(),
            "conv_placement": self.conv_placement,
            "recurrent_stride": self.recurrent_stride,
            "conv_stride": self.conv_stride,
            "sequence_norm": self.sequence_norm,
            "differences": self.differences,
            "length_aware": self.length_aware,
            "standardize": self.standardize,
            "precision": self.precision,
        }
        then = {
            **{key: built.get(key) for key in now},
            "conv_filters": tuple(built.get("conv_filters") or ()),
            "conv_kernel_size": tuple(built.get("conv_kernel_sizes") or ()),
            "standardize": built.get("feature_mean") is not None,
            "precision": self.net_.precision,
            "recurrent_stride": built.get("recurrent_stride", 1),
            "conv_stride": built.get("conv_stride", 1),
            "differences": built.get("differences", 0),
            "length_aware": built.get("length_scaling") is not None,
        }
        if self.recurrent_stride == "auto":
            # Resolved from the first fit's data; the network keeps it.
            now["recurrent_stride"] = then["recurrent_stride"]
        if self.conv_stride == "auto" or not self._chunked_convolutions():
            # Resolved as recurrent_stride is; and where the convolutions
            # read every step, the changes that rebuild them are named above.
            now["conv_stride"] = then["conv_stride"]
        if self.pooling == "auto" and then["pooling"] in AUTO_POOLING:
            now["pooling"] = then["pooling"]
        if self.differences == "auto":
            now["differences"] = then["differences"]
        if self.length_aware:
            # Also resolved from the first fit's data (were lengths unequal?).
            now["length_aware"] = then["length_aware"]
        return [
            f"{key} ({then[key]!r} -> {now[key]!r})"
            for key in now
            if then[key] != now[key]
        ]

    def _check_parameters(self):
        """Checks that the declarative constraints cannot express."""
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name)
            # scikit-learn's Interval counts True as the int 1 and the float
            # 1.0; a bool where a number is meant is a mistake, not a count.
            if isinstance(value, (bool, np.bool_)) and not (
                {"boolean", "verbose"} & {c for c in constraints if isinstance(c, str)}
            ):
                raise ValueError(
                    f"{name}={value!r} is a bool, but {name} takes a number or "
                    f"one of its named options; pass e.g. {name}=1 if that "
                    "is what you meant."
                )
        if self.conv_filters is not None:
            filters = list(self.conv_filters)
            if not all(isinstance(f, Integral) and f >= 1 for f in filters):
                raise ValueError(
                    f"conv_filters={self.conv_filters!r} must be a tuple of "
                    "positive ints (channels of each convolution), or None."
                )
        self._conv_kernel_sizes()
        if self.output_mode == "sequence" and self.recurrent_stride not in ("auto", 1):
            raise ValueError(
                f"recurrent_stride={self.recurrent_stride!r} needs "
                "output_mode='last': per-step predictions take one recurrent "
                "step per time step. Use recurrent_stride=1 or 'auto'."
            )
        if self.conv_stride not in ("auto", 1) and not self._chunked_convolutions():
            raise ValueError(
                f"conv_stride={self.conv_stride!r} needs convolutions "
                "(conv_filters) placed beside the recurrent layers "
                "(conv_placement='parallel') and output_mode='last': only "
                "there do the convolutions after the first read chunks of "
                f"steps (now conv_filters={self.conv_filters!r}, "
                f"conv_placement={self.conv_placement!r}, "
                f"output_mode={self.output_mode!r}). Use conv_stride='auto' "
                "or 1."
            )
        if self.output_mode == "sequence" and self.time_warp:
            raise ValueError(
                f"time_warp={self.time_warp!r} needs output_mode='last': a "
                "warped sequence's steps would no longer line up with its "
                "per-step targets. Use time_warp=0."
            )
        check_callbacks(self.callbacks)

    def _conv_kernel_sizes(self):
        """One odd kernel width per convolution, from ``conv_kernel_size``."""
        n_layers = len(self.conv_filters or ())
        if n_layers == 0:
            return ()
        if self.conv_kernel_size == "auto":
            # Wide to narrow, as in FCN (Wang et al. 2017): 7, 5, ..., 5, 3.
            if n_layers == 1:
                return (5,)
            return (7,) + (5,) * (n_layers - 2) + (3,)
        if isinstance(self.conv_kernel_size, Integral):
            widths = (self.conv_kernel_size,) * n_layers
        else:
            widths = tuple(self.conv_kernel_size)
            if len(widths) != n_layers:
                raise ValueError(
                    f"conv_kernel_size={self.conv_kernel_size!r} gives "
                    f"{len(widths)} widths for {n_layers} convolutions "
                    f"(conv_filters={self.conv_filters!r}); pass one int or "
                    "one width per convolution."
                )
        if not all(isinstance(w, Integral) and w >= 1 and w % 2 for w in widths):
            raise ValueError(
                f"conv_kernel_size={self.conv_kernel_size!r} must be odd "
                "positive ints (one, or one per convolution) so that "
                "convolutions keep every time step aligned; use e.g. 3, 5 or 7."
            )
        return widths

    def _check_sample_weight(self, sample_weight, sequences):
        if sample_weight is None:
            return np.ones(sequences.n_samples, dtype=np.float64)
        if not isinstance(sample_weight, Real):
            check_weight_shape(sample_weight, sequences.n_samples)
        weights = _check_sample_weight(
            sample_weight,
            sequences.lengths,
            dtype=np.float64,
            ensure_non_negative=True,
        )
        if not np.isfinite(weights).all():
            raise ValueError("sample_weight contains NaN or infinity.")
        with np.errstate(over="ignore"):
            total = weights.sum()
        if not np.isfinite(total) or weights.max() > np.finfo(np.float32).max:
            raise ValueError(
                "sample_weight holds values so large that their sum overflows "
                "(or they exceed float32, in which the loss is computed). "
                "Divide them by a constant: only their ratios matter."
            )
        if total <= 0:
            raise ValueError(
                "sample_weight sums to zero: at least one sequence needs a "
                "positive weight."
            )
        return weights

    def _split(self, targets, sequences, seed, use_validation):
        n_samples = sequences.n_samples
        everything = np.arange(n_samples)
        if not use_validation:
            return everything, None
        n_valid = int(round(self.validation_fraction * n_samples))
        if n_valid < 1 or n_samples - n_valid < 1:
            raise ValueError(
                f"early_stopping needs a validation set, but "
                f"validation_fraction={self.validation_fraction} of "
                f"n_samples={n_samples} leaves none. Pass more data, raise "
                "validation_fraction or set early_stopping=False."
            )
        rng = np.random.RandomState(seed)
        stratify = self._stratify_labels(targets)
        if stratify is not None:
            from sklearn.model_selection import train_test_split

            try:
                train, valid = train_test_split(
                    everything,
                    test_size=n_valid,
                    random_state=rng,
                    stratify=stratify,
                )
                return np.sort(train), np.sort(valid)
            except ValueError:
                pass  # a class too rare to stratify: fall back to random
        order = rng.permutation(n_samples)
        return np.sort(order[n_valid:]), np.sort(order[:n_valid])

    def _tensor_data(self, sequences, targets, weights, device):
        """All sequences, targets and weights as one copy on ``device``.

        Data read from disk stays there; its targets and weights, one row
        per sequence, stay in host memory and go to the device by batch.
        """
        per_step = self.output_mode == "sequence"
        if isinstance(sequences, StreamedSequences):
            return StreamedData(
                sequences.source,
                torch.from_numpy(np.ascontiguousarray(targets)),
                torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)),
                per_step=per_step,
            )
        return TensorData(
            steps=place(sequences.steps, device),
            lengths=torch.from_numpy(sequences.lengths),
            targets=place(np.ascontiguousarray(targets), device),
            weights=place(np.ascontiguousarray(weights, dtype=np.float32), device),
            equal_lengths=sequences.equal_lengths,
            per_step=per_step,
            **tabular_tensors(sequences, device),
        )

    def _weighted_rows(self, weights, train_rows, valid_rows):
        """Whether the training and the validation rows have weights other
        than 1; if not, the loss takes its plain, cheaper form."""
        if self.output_mode == "sequence":
            # Padded steps weigh zero.
            return True, True

        def weighted(rows):
            return rows is not None and not bool((weights[rows] == 1).all())

        return weighted(train_rows), weighted(valid_rows)

    def _feature_statistics(self, sequences):
        """Per-feature mean and scale over valid (unpadded), present steps.

        Also which features had missing values (NaN) in ``fit``. Mean and
        scale are None without ``standardize``.
        """
        streamed = isinstance(sequences, StreamedSequences)
        if not self.standardize:
            if streamed:
                return None, None, sequences.scan()[2]
            return None, None, missing_features(sequences)
        with np.errstate(over="ignore", invalid="ignore"):
            if streamed:
                mean, var, missing = sequences.scan()
            else:
                mean, var, missing = feature_moments(sequences)
        scale = np.sqrt(var)
        if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
            raise ValueError(
                "X holds values so large that their variance overflows "
                "float64, so the features cannot be standardised. Rescale X "
                "(e.g. with a log or by dividing by a constant) first."
            )
        # Constant features are centred but not scaled.
        scale[scale < 1e-8] = 1.0
        return mean, scale, missing

    def _resolve_batch_size(self, n_train):
        """``batch_size``, with "auto" resolved for ``n_train`` sequences."""
        if self.batch_size != "auto":
            return self.batch_size
        # Small data sets need many small steps per epoch to train in 100
        # epochs; large ones can afford bigger, faster batches.
        return min(_AUTO_MAX_BATCH, max(_AUTO_MIN_BATCH, n_train // 16))

    def _resolve_max_epochs(
        self, n_train, train_steps=None, stride=1, full_resolution_convs=False
    ):
        """``max_epochs``, with "auto" resolved for ``n_train`` sequences of
        ``train_steps`` time steps in all (None: not known, no budget), read
        by the recurrent layers ``stride`` steps at a time (and by the
        convolutions one by one if ``full_resolution_convs``)."""
        if self.max_epochs != "auto":
            return self.max_epochs
        # 100 epochs are few steps on a small data set (36 sequences: 300
        # steps); give it at least _AUTO_MIN_STEPS, more for long sequences,
        # which kept gaining accuracy well past that on the benchmark's long
        # data sets (benchmarks/RESULTS.md), within a cap.
        n_batches = math.ceil(n_train / self._resolve_batch_size(n_train))
        mean_length = 1.0 if train_steps is None else train_steps / n_train
        longer = max(1.0, mean_length / _AUTO_LONG)
        steps = _AUTO_MIN_STEPS * longer
        epochs = min(
            round(_AUTO_MAX_EPOCHS * longer),
            max(_AUTO_MIN_EPOCHS, math.ceil(steps / n_batches)),
        )
        if train_steps is not None:
            # A fit's time grows with the sequence steps it goes through:
            # large or long data sets get fewer epochs, not hour-long fits.
            # Most of a step's cost shrinks with the stride.
            work = _epoch_work(train_steps, stride, full_resolution_convs)
            epochs = min(epochs, max(_AUTO_FLOOR_EPOCHS, int(_AUTO_WORK // work)))
        return epochs

    def _resolve_recurrent_stride(self, sequences):
        """``recurrent_stride``, with "auto" resolved for the training data."""
        if self.recurrent_stride != "auto":
            return self.recurrent_stride
        if self.output_mode == "sequence":
            return 1
        longest = int(sequences.lengths.max())
        return max(1, math.ceil(longest / _AUTO_RECURRENT_STEPS))

    def _chunked_convolutions(self):
        """Whether these parameters build convolutions that may read chunk
        means (``conv_stride``)."""
        return chunked_convolutions(
            self.conv_filters, self.conv_placement, self.output_mode
        )

    def _stride_arguments(self, sequences):
        """The network's ``recurrent_stride`` and ``conv_stride``: parallel
        convolutions after the first read chunks of ``conv_stride`` steps,
        "auto" those of the recurrent layers' stride, or pairs of steps
        where every sequence is long."""
        stride = self._resolve_recurrent_stride(sequences)
        conv_stride = 1
        chunked = self._chunked_convolutions()
        if chunked and self.conv_stride != "auto":
            conv_stride = self.conv_stride
        elif chunked:
            # Kernels of 7, 5 and 3 reach 13 steps; on pairs they reach 23,
            # at about half the cost of the later layers.
            long = int(sequences.lengths.min()) >= _CONV_PAIRS_MIN_STEPS
            conv_stride = max(stride, 2 if long else 1)
        return {"recurrent_stride": stride, "conv_stride": conv_stride}

    def _resolve_pooling(self, sequences):
        """``pooling``, with "auto" resolved for the training data."""
        if self.pooling != "auto":
            return self.pooling
        # Equal lengths: the mean of the states sees the whole series, where
        # the last state of a long one mostly holds its recent steps. Unequal
        # lengths: a mean dilutes a pattern by the sequence's length, while
        # the last state is read at each sequence's own end.
        ragged, equal = AUTO_POOLING
        return equal if sequences.equal_lengths else ragged

    def _resolve_differences(self, sequences):
        """``differences``, with "auto" resolved for the training data."""
        if self.differences != "auto":
            return self.differences
        # The change around each step shows a shape's slopes and turns,
        # which the recurrent layers otherwise have to learn to find by
        # comparing neighbouring steps. With recurrent_stride > 1 they see
        # several consecutive steps side by side already. Several channels,
        # short, ragged or strided series were better without it on the
        # benchmark's data (benchmarks/RESULTS.md).
        univariate = (
            sequences.n_features == 1
            and sequences.codes is None
            and self.output_mode == "last"
        )
        if (
            univariate
            and sequences.equal_lengths
            and sequences.max_length >= self._auto_differences_min_steps
            and self._resolve_recurrent_stride(sequences) == 1
        ):
            return AUTO_DIFFERENCES
        return 0

    def _difference_arguments(self, sequences, mean, scale):
        """The network's ``differences`` and ``difference_scale``."""
        half_span = self._resolve_differences(sequences)
        if not half_span:
            return {"differences": 0, "difference_scale": None}
        return {
            "differences": half_span,
            "difference_scale": torch.as_tensor(
                difference_scale(sequences, half_span, mean, scale)
            ),
        }

    def _length_arguments(self, sequences):
        """The network's ``length_scaling`` and ``conv_max``, from
        ``length_aware`` and the training data."""
        if not (
            self.length_aware
            and not sequences.equal_lengths
            and self.output_mode == "last"
        ):
            return {"length_scaling": None, "conv_max": False}
        log_lengths = np.log(np.asarray(sequences.lengths, dtype=np.float64))
        # Lengths that barely vary would make a new length look extreme.
        scale = max(float(log_lengths.std()), _MIN_LOG_LENGTH_SCALE)
        return {
            "length_scaling": (float(log_lengths.mean()), scale),
            "conv_max": True,
        }

    def _early_stopping_on(self, n_samples):
        """``early_stopping``, with "auto" resolved for ``n_samples``."""
        if self.early_stopping != "auto":
            return self.early_stopping
        # As in HistGradientBoosting: hold data out only when there is
        # enough of it for the validation score to mean something.
        return n_samples >= _AUTO_EARLY_STOPPING_MIN_SAMPLES

    def _build_net(
        self,
        sequences,
        target_state,
        tabular_state,
        device,
        *,
        n_train,
        train_steps,
        use_validation,
        seed,
        iterator=Batches,
        incremental=False,
        quiet=False,
    ):
        """The skorch net (not yet initialised) for this estimator and data."""
        mean, scale, missing = self._feature_statistics(sequences)
        module_kwargs = dict(
            n_inputs=sequences.n_features,
            n_outputs=self._n_outputs(target_state),
            **self._extra_network_arguments(target_state),
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            cell=self.cell,
            dropout=self.dropout,
            output_mode=self.output_mode,
            pooling=self._resolve_pooling(sequences),
            conv_filters=tuple(self.conv_filters or ()),
            conv_kernel_sizes=self._conv_kernel_sizes(),
            conv_placement=self.conv_placement,
            **self._stride_arguments(sequences),
            **self._length_arguments(sequences),
            forget_bias=self.forget_bias,
            **self._difference_arguments(sequences, mean, scale),
            sequence_norm=self.sequence_norm,
            feature_mean=None if mean is None else torch.as_tensor(mean),
            feature_scale=None if scale is None else torch.as_tensor(scale),
            missing_indicators=tuple(np.flatnonzero(missing).tolist()),
            **tabular_network_arguments(
                sequences, *tabular_state, embedding_width=self.embedding_size
            ),
        )
        return self._net_for(
            module_kwargs,
            device,
            n_train=n_train,
            train_steps=train_steps,
            use_validation=use_validation,
            seed=seed,
            iterator=iterator,
            incremental=incremental,
            quiet=quiet,
        )

    def _net_for(
        self,
        module_kwargs,
        device,
        *,
        n_train,
        train_steps,
        use_validation,
        seed,
        iterator=Batches,
        incremental=False,
        quiet=False,
    ):
        """The skorch net for these parameters and the network's arguments.

        ``n_train`` (sequences), ``train_steps`` (their time steps in all,
        None when not known) and ``use_validation`` resolve the "auto"
        parameters;
        ``seed`` seeds every random draw of its training (see SequenceNet);
        ``iterator`` batches the training data (see the data's ``iterator``);
        ``incremental``: the net trains one epoch of ``partial_fit``, where
        an average of the weights, restarted in every call, would only lag
        behind them; ``quiet``: without ``verbose`` output and ``callbacks``.
        """
        return build_net(
            module=RecurrentNetwork,
            module_kwargs=module_kwargs,
            criterion=self._criterion,
            optimizer=self.optimizer,
            lr=self.lr,
            weight_decay=self.weight_decay,
            max_epochs=self._resolve_max_epochs(
                n_train, train_steps, *_budget_pace(module_kwargs)
            ),
            batch_size=self._resolve_batch_size(n_train),
            gradient_clip=self.gradient_clip,
            lr_schedule=self.lr_schedule,
            weight_averaging=None if incremental else self.weight_averaging,
            time_warp=float(self.time_warp),
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            use_validation=use_validation,
            score_fn=self._validation_score,
            loss_limit=_EXPLODED
            * max(1.0, self._criterion.chance_loss(module_kwargs["n_outputs"])),
            verbose=0 if quiet else self.verbose,
            callbacks=None if quiet else self.callbacks,
            device=device,
            precision=self.precision,
            seed=seed,
            iterator=iterator,
        )

    def _out_of_memory_error(self, exc, stage, device, batch_size=None):
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if stage == "build":
            advice = (
                f"the network itself does not fit (hidden_size="
                f"{self.hidden_size}, num_layers={self.num_layers}). Lower "
                "hidden_size or num_layers."
            )
        elif stage == "train":
            advice = (
                f"a training batch does not fit (batch_size={batch_size}). "
                f"Lower batch_size (e.g. batch_size={max(1, batch_size // 2)}"
                "), hidden_size or num_layers, or split long sequences into "
                "shorter windows; on a GPU, precision='bf16-mixed' also saves "
                "memory."
            )
        else:
            advice = (
                "even a single sequence does not fit (prediction already "
                "retried with smaller batches). Split long sequences into "
                "shorter windows or predict on a device with more memory."
            )
        return DeviceOutOfMemoryError(
            f"Out of memory on device {str(device)!r}: {advice} ({reason})"
        )

    def _diverged_error(self, n_epochs):
        return ValueError(
            f"Training diverged: the loss exploded or the weights became "
            f"non-finite in "
            f"epoch {n_epochs} with lr={self.lr}. Lower lr (e.g. "
            f"lr={self.lr / 10:g}), set gradient_clip=1.0, or check that X "
            "and y are on a moderate scale. No model was kept from this fit."
        )

    # ------------------------------------------------------------------
    def _outputs(self, X, transform=None):
        """Validated sequences and the network's outputs for ``X``."""
        sequences = self._validated_sequences(X)
        return sequences, self._network_outputs(sequences, transform)

    def _validated_sequences(self, X):
        """``X`` after fit, checked against what ``fit`` saw."""
        if "net_" not in self.__dict__:
            # scikit-learn's check raises its usual NotFittedError; when the
            # net is there, skipping it saves a scan of every attribute.
            check_is_fitted(self)
        sequences, _ = self._to_sequences(X, reset=False)
        check_features(self, X, sequences)
        return sequences

    def _to_sequences(self, X, *, reset):
        """Validated sequences, with ``(layout, categories)`` for tabular input.

        ``reset`` (a fresh fit) decides, from ``X`` and the parameters,
        whether the input is tabular and learns its layout and categories;
        otherwise the fitted ones apply. Out-of-core arrays (memory-mapped,
        zarr, Dask) stay where they are (see :mod:`sklstm._streaming`).
        """
        if is_out_of_core(X):
            return self._streamed_sequences(X, reset=reset), (None, None)
        if reset:
            tabular = is_tabular_input(
                X, self.categorical_features, self.static_features
            )
        else:
            tabular = getattr(self, "_layout", None) is not None
        if not tabular:
            precision = self.precision if reset else self.net_.precision
            return to_sequences(X, precision=precision, estimator=self), (
                None,
                None,
            )
        precision = self.precision if reset else self.net_.precision
        dtype = np.float64 if precision == "64" else np.float32
        if reset:
            raw = read_columns(X)
            layout = resolve_layout(
                raw,
                self.categorical_features,
                self.static_features,
                self.time_deltas,
            )
            categories = None
        else:
            raw = None
            layout = Layout.from_dict(self._layout)
            categories = self.categories_
        sequences, categories = to_tabular_sequences(
            X,
            layout,
            categories,
            dtype=dtype,
            min_frequency=self.min_frequency,
            estimator_name=type(self).__name__,
            raw=raw,
        )
        return sequences, (layout.to_dict(), categories)

    def _streamed_sequences(self, X, *, reset):
        """An out-of-core ``X``, checked but not read (see :func:`stream_sequences`)."""
        if reset:
            tabular = (
                self.categorical_features not in (None, "from_dtype")
                or self.static_features
            )
        else:
            tabular = getattr(self, "_layout", None) is not None
        if tabular:
            raise ValueError(
                f"X is a {type(X).__name__}, read from disk batch by batch, but "
                "categorical or static features need the whole data in memory "
                "(to learn and encode their categories). Load it with "
                "np.asarray(X) if it fits, or fit with "
                "categorical_features=None and static_features=None, encoding "
                "categories as numbers beforehand."
            )
        precision = self.precision if reset else self.net_.precision
        return stream_sequences(X, precision=precision)

    def _network_outputs(self, sequences, transform=None):
        """Network outputs, float64, for validated sequences.

        ``transform`` maps each batch of raw outputs on the device (see
        :func:`sklstm._trainer.predict_outputs`).
        """
        check_prediction_precision(self.net_.precision, torch.device(self.net_.device))
        with cpu_threads(self.n_threads):
            return self._outputs_of(self.net_, sequences, transform)

    def _outputs_of(self, net, sequences, transform=None):
        """Outputs of ``net`` (the fitted net, or one a fit has just trained),
        float64, for validated sequences, within the caller's thread setting."""
        if isinstance(sequences, StreamedSequences):
            # fit has not read these values: each batch is checked as read.
            data = StreamedData(sequences.source, check=True)
        else:
            data = TensorData(
                steps=torch.from_numpy(sequences.steps),
                lengths=torch.from_numpy(sequences.lengths),
                equal_lengths=sequences.equal_lengths,
                **tabular_tensors(sequences),
            )
        batch_size = prediction_rows(
            net.module_,
            torch.device(net.device),
            sequences.max_length,
            cpu_rows=_PREDICT_BATCH_SIZE,
        )
        try:
            outputs = predict_outputs(net, data, batch_size, transform)
        except DeviceOutOfMemoryError as exc:
            raise self._out_of_memory_error(exc, "predict", net.device) from None
        if not np.isfinite(outputs).all():
            raise ValueError(
                "The network produced non-finite outputs for this X. Its "
                "values are probably far outside the range seen during fit: "
                "scale X as during fit."
            )
        return outputs

    def _outputs_on_rows(self, net, sequences, targets, weights, rows):
        """``net``'s outputs on the sequences ``rows`` of a fit's data, with
        their targets and weights, one row per sequence (per step in
        ``output_mode="sequence"``), rows of weight zero left out. Data on
        disk gives an evenly spread sample that fits in memory."""
        if hasattr(sequences, "sample_rows"):
            rows = sequences.sample_rows(rows)
        if net.module_.output_mode == "sequence":
            target_rows = sequences.step_indices(rows)
        else:
            target_rows = rows
        outputs = self._outputs_of(net, sequences.take(rows))
        keep = weights[target_rows] > 0
        return outputs[keep], targets[target_rows][keep], weights[target_rows][keep]

    def _score_weights(self, sample_weight, sequences):
        """Per-sequence weights for ``score``, or per step in sequence mode."""
        if sample_weight is None:
            return None
        weights = self._check_sample_weight(sample_weight, sequences)
        if self._fitted_output_mode == "sequence":
            return np.repeat(weights, sequences.lengths)
        return weights

    def _shaped(self, values, sequences):
        """Predictions as the public methods return them: one row per
        sequence, or per step (one row per step) in the structure of the
        input, a list of arrays for a list, else ``(n, n_timesteps, ...)``."""
        if self._fitted_output_mode != "sequence":
            return values
        if sequences.ragged:
            return np.split(values, sequences.offsets[1:-1])
        return values.reshape((sequences.n_samples, -1) + values.shape[1:])

    @property
    def _fitted_output_mode(self):
        """The output mode the fitted network was built for.

        Prediction follows it, not the parameter, which ``set_params`` may
        have changed since ``fit``.
        """
        return self.net_.module_.output_mode

    @property
    def device_(self):
        """The torch device the fitted network lives on."""
        check_is_fitted(self)
        return torch.device(self.net_.device)

    # ------------------------------------------------------------------
    # Saving and export: thin entry points to sklstm._model_file and
    # sklstm._onnx, which hold the logic (the ONNX exporter loads only when
    # asked for).
    def save(self, path: FileLike) -> None:
        """Save the fitted estimator to a file that loads without pickle.

        The file is a zip archive of JSON (format version, parameters,
        ``classes_`` and other fitted attributes, training history) and
        safetensors weights. :func:`sklstm.load` reads it back without
        running any code from it, so files from others are safe to load.

        Which to use when: ``save``/:func:`sklstm.load` to keep and share
        models (safe to load, stable across versions); pickle or joblib for
        scikit-learn machinery (``n_jobs``, ``Pipeline(memory=...)``) and for
        estimators holding Python objects such as user ``callbacks``, loading
        only pickles you made yourself; :meth:`to_onnx` to serve predictions
        outside Python or without torch.

        Parameters
        ----------
        path : str, path-like or binary file object
            Where to write. An existing file is replaced only once the new
            one is complete, and keeps its permission bits; a new file gets
            those the umask allows; a symbolic link is written through, to
            the file it names. File objects must be open in binary mode.

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        ValueError
            If a parameter has no JSON form (user ``callbacks``, a
            ``RandomState`` instance), or the parameters were set to values
            that are invalid or do not fit the fitted network; the message
            says how to fix it.
        """
        write_model_file(self, path)

    def to_onnx(self, path: PathLike) -> None:
        """Export the fitted network to an ONNX file, for use without torch.

        The graph's input ``X`` is a float32 array ``(batch, time,
        features)`` with dynamic batch and time axes: equal-length sequences,
        as :meth:`predict` receives them in a 3-D array. Run sequences of
        different lengths one at a time (a batch of one) rather than padded;
        for a model fitted on a 2-D table, pass ``X[:, :, None]``.

        The first output is what ``predict_proba`` (classifier) or
        ``predict`` (regressor) returns for that array. The classifier's
        second output holds the index of the predicted class in
        ``classes_``, which the model's metadata lists as JSON under
        ``"classes"``. The graph computes in float32, also for
        ``precision="64"`` (ONNX Runtime's recurrent kernels take no
        float64) and the mixed precisions (whose predictions it then
        matches only to bfloat16 or float16 rounding).

        Needs the ``onnx`` extra: ``pip install "sklstm[onnx]"``.

        Parameters
        ----------
        path : str or path-like
            Where to write the ``.onnx`` file.

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        ImportError
            If ``onnx`` or ``onnxscript`` is not installed.
        ValueError
            If the network holds categorical or static features, or is a
            GRU (``cell="gru"``) that reads several steps at a time
            (``recurrent_stride`` > 1), which torch 2.13's exporter cannot
            convert.
        """
        from ._onnx import export_onnx

        export_onnx(self, path)


__all__ = ["BaseLSTM"]

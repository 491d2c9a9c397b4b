"""LSTMRegressor: sequence regression, multi-output and per-step."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import _check_y

from ._base import BaseLSTM
from ._docs import fill_doc
from ._intervals import IntervalsMixin
from ._network import TargetScale, WeightedErrorAndScale, WeightedSquaredError
from ._targets import check_per_step_targets, check_target_count
from ._typing import ArrayLike, Predictions, Self, SequencesLike, TargetsLike


@fill_doc
class LSTMRegressor(RegressorMixin, IntervalsMixin, BaseLSTM):
    """Recurrent-network regressor for sequences.

    Targets are standardised internally (and predictions mapped back), so
    their scale needs no tuning.

    Parameters
    ----------
    {hidden_size}
    {num_layers}
    {bidirectional}
    {cell}
    {dropout}
    {output_mode}
    {pooling}
    {conv_filters}
    {conv_kernel_size}
    {conv_placement}
    {recurrent_stride}
    {conv_stride}
    {forget_bias}
    {standardize}
    {sequence_norm}
    {differences}
    {length_aware}
    {categorical_features}
    {static_features}
    {embedding_size}
    {min_frequency}
    {time_deltas}
    {max_epochs}
    {batch_size}
    {lr}
    {optimizer}
    {weight_decay}
    {gradient_clip}
    {lr_schedule}
    {weight_averaging}
    {time_warp}
    {early_stopping}
        The score is R^2, averaged over outputs. Small regression data sets
        are overfitted within a few epochs; the held-out R^2 is what stops
        training before that.
    {validation_fraction}
    {n_iter_no_change}
    {tol}
    {interval_width}
    {calibration}
    {warm_start}
    {device}
    {precision}
    {n_threads}
    {distributed}
    {random_state}
    {verbose}
    {callbacks}

    Attributes
    ----------
    n_features_in_ : int
        Features seen during fit: per time step for sequences, columns for a
        2-D table.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when ``X`` was a DataFrame with string column names.
    n_outputs_ : int
        Targets per sequence (or per step).
    n_iter_ : int
        Epochs trained.
    loss_curve_ : list of float
        Training loss (on standardised targets) after each epoch.
    validation_scores_ : list of float or None
        Validation R^2 after each epoch (with ``early_stopping``).
    best_validation_score_ : float or None
        Best validation R^2 (with ``early_stopping``).
    history_ : skorch.History
        Everything skorch recorded, per epoch and (under ``"batches"``) per batch.
    net_ : skorch.NeuralNet
        The trained skorch net; ``net_.module_`` is the torch module.

    See Also
    --------
    LSTMClassifier : The same network for classification.

    Notes
    -----
    **Centred predictions.** At the end of ``fit`` the output layer's bias
    is moved so that the predictions' mean error on the sequences it
    trained on (weighted by ``sample_weight``; per output, over every step
    in ``output_mode="sequence"``) is zero, as a fitted intercept makes it.
    An early-stopped network often stops before its bias has settled, and
    on a set with little signal that constant offset alone made it worse
    than predicting the training mean. Where there is a validation split,
    the shrinking below then moves that mean only if the split asks for it.
    ``partial_fit`` does not centre.
    With data read from disk, an evenly spread sample of the training
    sequences, up to 2**21 time steps, sets the shift (and one of the
    validation sequences the share below).

    **Shrunk predictions.** Where ``fit`` holds out a validation split,
    each output's predictions are then moved towards the (weighted) mean
    of all the targets it was given, validation split included:
    ``mean + share * (prediction - mean)``, with the share between 0 and 1
    that fits the validation targets best in (``sample_weight``-weighted)
    least squares. A network that fits the split keeps its predictions
    (share 1; they are never stretched); one whose deviations from the
    mean are noise there, or point the wrong way, as an early-stopped
    network on a small set with little signal can, is pulled towards the
    mean, or onto it. So on its own validation split a fitted regressor is
    never worse than predicting the training mean. The share is folded
    into the output layer, so intervals, model files and ONNX include it;
    each further network of the cross calibration is shrunk on the
    sequences it held out.

    **Prediction intervals.** :meth:`predict_interval` and
    :meth:`predict_quantiles` are calibrated by split conformal prediction
    (Vovk et al. 2005; Lei et al. 2018) on the validation split that
    ``early_stopping`` holds out: after training, each validation error is
    divided by the error the network expects there (the same everywhere
    with ``interval_width="constant"``, a learned scale with
    ``"adaptive"``), and a ``coverage`` interval is the prediction plus or
    minus the expected error times the ``ceil((n + 1) * coverage)``-th
    smallest of those ``n`` ratios. On new data exchangeable with the
    training data, each output's interval then holds its target with
    probability at least ``coverage``, averaged over data sets (the
    validation sequences also chose the epoch early stopping kept and each
    output's share above, choices of one number that leak very little).
    Intervals need that split: ``fit`` with ``early_stopping=True`` (or
    "auto" with 50 sequences or more); the ``n`` validation sequences (steps in
    ``output_mode="sequence"``) give coverages up to ``n / (n + 1)``.

    On fewer than 100 validation sequences the split alone calibrates
    poorly: over fits, coverage scatters around
    ``ceil((n + 1) * coverage) / (n + 1)``, which is above ``coverage``.
    With ``calibration="auto"`` (the default), where the fit stays within a
    default fit's budget of sequence steps even if the further networks
    train all their epochs (small sets train in seconds), ``fit`` trains up
    to 4 more networks as it trained the first, each holding out another
    part of the training sequences, and pools their errors on what they
    held out with the first network's (cross-conformal prediction, Vovk
    2015): with the default ``validation_fraction`` every sequence, or
    nearly every one, is held out once, and ``n`` is their number. The
    further networks are discarded; their errors stand in for those of the
    kept network, which trained as they did on about as many sequences.
    The guarantee is then approximate (Barber et al. 2021 bound the related
    CV+ method's coverage at ``1 - 2 * (1 - coverage)`` in the worst case);
    on the benchmark sets it brought coverage closer to the nominal one.

    Why calibrated scales, not trained quantiles: any coverage and any
    quantile then come from one fit, where quantile regression (CQR)
    calibrates only the levels it was trained for; and ``predict`` stays
    the network's mean prediction, the middle of every interval.
    Intervals are symmetric about it, so quantile ``q`` and ``1 - q`` are
    the ends of the ``|2q - 1|`` interval: calibrated as a pair, and as
    single quantiles where errors are symmetric.

    In ``output_mode="sequence"`` the calibration pools the errors of every
    real (not padded) step of the validation sequences; steps of one
    sequence are not exchangeable, so there coverage holds on average
    over steps, approximately. ``fit`` (also with ``warm_start``)
    recalibrates on its own validation split; ``partial_fit`` holds
    nothing out and leaves the regressor without intervals, as does a fit
    without early stopping. ``sample_weight`` does not weigh the
    calibration; sequences of weight zero are left out of it. With data
    read from disk (a memmap, zarr or Dask array), the calibration reads
    an evenly spread sample of the validation sequences, up to 2**21 time
    steps, into memory.
    :meth:`to_onnx` exports the point prediction only.

    Examples
    --------
    >>> import numpy as np
    >>> from sklstm import LSTMRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(60, 12, 2)).astype("float32")
    >>> y = X[:, -3:, 0].sum(axis=1)
    >>> reg = LSTMRegressor(max_epochs=5, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    >>> reg.predict_interval(X[:3], coverage=0.8).shape  # lower, upper
    (3, 2)
    """

    # differences="auto" from 60 steps, not the classifier's 100: the
    # changes helped a univariate regression set at lengths where
    # classification sets lost with them (benchmarks/RESULTS.md).
    _auto_differences_min_steps = 60

    _parameter_constraints: dict = {
        **BaseLSTM._parameter_constraints,
        "interval_width": [StrOptions({"constant", "adaptive"})],
        "calibration": [StrOptions({"auto", "split", "cross"})],
    }

    def __init__(
        self,
        *,
        hidden_size=64,
        num_layers=1,
        bidirectional=False,
        cell="lstm",
        dropout=0.3,
        output_mode="last",
        pooling="last",
        conv_filters=(64, 128, 64),
        conv_kernel_size="auto",
        conv_placement="parallel",
        recurrent_stride="auto",
        conv_stride="auto",
        forget_bias=1.0,
        standardize=True,
        sequence_norm="append",
        differences="auto",
        length_aware=True,
        categorical_features="from_dtype",
        static_features=None,
        embedding_size="auto",
        min_frequency=2,
        time_deltas="auto",
        max_epochs="auto",
        batch_size="auto",
        lr=1e-3,
        optimizer="adam",
        weight_decay=0.0,
        gradient_clip=None,
        lr_schedule="cosine",
        weight_averaging=0.97,
        time_warp=0.0,
        early_stopping="auto",
        validation_fraction=0.2,
        n_iter_no_change=10,
        tol=1e-4,
        interval_width="constant",
        calibration="auto",
        warm_start=False,
        device="auto",
        precision="32",
        n_threads="auto",
        distributed="auto",
        random_state=None,
        verbose=0,
        callbacks=None,
    ):
        super().__init__(
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            cell=cell,
            dropout=dropout,
            output_mode=output_mode,
            pooling=pooling,
            conv_filters=conv_filters,
            conv_kernel_size=conv_kernel_size,
            conv_placement=conv_placement,
            recurrent_stride=recurrent_stride,
            conv_stride=conv_stride,
            forget_bias=forget_bias,
            standardize=standardize,
            sequence_norm=sequence_norm,
            differences=differences,
            length_aware=length_aware,
            categorical_features=categorical_features,
            static_features=static_features,
            embedding_size=embedding_size,
            min_frequency=min_frequency,
            time_deltas=time_deltas,
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            weight_decay=weight_decay,
            gradient_clip=gradient_clip,
            lr_schedule=lr_schedule,
            weight_averaging=weight_averaging,
            time_warp=time_warp,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            warm_start=warm_start,
            device=device,
            precision=precision,
            n_threads=n_threads,
            distributed=distributed,
            random_state=random_state,
            verbose=verbose,
            callbacks=callbacks,
        )
        self.interval_width = interval_width
        self.calibration = calibration

    @property
    def _criterion(self):
        if self.interval_width == "adaptive":
            return WeightedErrorAndScale
        return WeightedSquaredError

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode_targets(self, y, sequences, *, reset, classes=None):
        if self.output_mode == "last":
            values = self._numeric_targets(y)
            check_target_count(sequences, values)
        else:
            _, values = check_per_step_targets(y, sequences)
            values = self._numeric_targets(values)
        single = values.ndim == 1
        if values.ndim > 2:
            unit = "step" if self.output_mode == "sequence" else "sequence"
            raise ValueError(
                f"y has {values.ndim - 1} dimensions per {unit}; pass a scalar "
                f"or a 1-D vector of targets per {unit}."
            )
        values = values.reshape(len(values), -1).astype(np.float64)
        # Checked here too: scikit-learn's assume_finite skips its own check.
        if not np.isfinite(values).all():
            raise ValueError(
                "y contains NaN or infinity. Drop or fill those targets first."
            )
        if reset:
            with np.errstate(over="ignore", invalid="ignore"):
                mean = values.mean(axis=0)
                scale = values.std(axis=0)
            if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
                raise ValueError(
                    "y holds values so large that their mean or spread "
                    "overflows float64, so the targets cannot be standardised. "
                    "Rescale y first (e.g. divide it by a constant or take a "
                    "log); predictions can be scaled back."
                )
            scale[scale < 1e-12] = 1.0
        else:
            mean, scale = self._target_mean, self._target_scale
            if values.shape[1] != len(mean):
                raise ValueError(
                    f"y has {values.shape[1]} outputs but the estimator was "
                    f"fitted with {len(mean)}."
                )
        dtype = np.float64 if self.precision == "64" else np.float32
        with np.errstate(over="ignore"):
            standardized = ((values - mean) / scale).astype(dtype)
        if not np.isfinite(standardized).all():
            raise ValueError(
                "y holds values too far from the targets seen in fit to be "
                f"represented in {np.dtype(dtype).name} once standardised. "
                "Check the scale of y."
            )
        state = {"mean": mean, "scale": scale, "single": single}
        return standardized, state

    def _numeric_targets(self, y):
        """``y`` as a finite numeric array, or an error naming what is wrong."""
        if hasattr(y, "dtype") and getattr(y.dtype, "kind", "O") == "c":
            raise ValueError(
                "Complex data not supported: y holds complex numbers and "
                "LSTMRegressor predicts real values. Split real and imaginary "
                "parts into two outputs."
            )
        try:
            values = _check_y(y, multi_output=True, y_numeric=True, estimator=self)
        except ValueError as exc:
            if "convert" not in str(exc) and "Complex" not in str(exc):
                raise
            values = None
            error = str(exc).splitlines()[0]
        else:
            error = f"dtype {values.dtype}"
        if values is None or values.dtype.kind not in "biuf":
            raise ValueError(
                f"y holds non-numeric values ({error}); LSTMRegressor needs "
                "numbers. For class labels use LSTMClassifier."
            )
        return values

    def _store_target_state(self, state):
        self._target_mean = state["mean"]
        self._target_scale = state["scale"]
        self._single_output = state["single"]
        self.n_outputs_ = len(state["mean"])

    def _n_outputs(self, target_state):
        return len(target_state["mean"])

    def _extra_network_arguments(self, target_state):
        if self.interval_width == "adaptive":
            # A log-scale per target, after the predictions.
            return {"n_scale_outputs": len(target_state["mean"])}
        return {}

    @property
    def _fitted_interval_width(self):
        """The ``interval_width`` the fitted network was built for."""
        scales = self.net_.get_params_for("module").get("n_scale_outputs", 0)
        return "adaptive" if scales else "constant"

    def _architecture_changes(self):
        changes = super()._architecture_changes()
        fitted = self._fitted_interval_width
        if fitted != self.interval_width:
            changes.append(f"interval_width ({fitted!r} -> {self.interval_width!r})")
        return changes

    def _prediction_head(self):
        return TargetScale(
            self._target_mean,
            self._target_scale,
            single_output=self._single_output,
        )

    def _step_weights(self, targets, sample_weight, sequences, state):
        if self.output_mode == "last":
            return sample_weight.astype(np.float32)
        return np.repeat(sample_weight, sequences.lengths).astype(np.float32)

    def _centre(self, net, sequences, targets, weights, train_rows, valid_rows):
        """Shift the predictions so that their weighted mean error on the
        training rows is zero per output, as a fitted intercept makes it;
        then, given held-out ``valid_rows``, shrink them towards the mean of
        all the targets as far as those rows ask (:meth:`_shrink`).

        A network stopped early (often after a few epochs, on small noisy
        sets) or averaged has not settled its output bias, and its
        predictions are off by a constant: on a set with little signal that
        alone makes it worse than predicting the mean.
        """
        outputs, truths, row_weights = self._outputs_on_rows(
            net, sequences, targets, weights, train_rows
        )
        errors = np.asarray(truths, dtype=np.float64) - outputs[:, : truths.shape[-1]]
        row_weights = np.asarray(row_weights, dtype=np.float64)
        shift = row_weights @ errors / row_weights.sum()
        bias = net.module_.head.bias
        with torch.no_grad():
            bias += torch.as_tensor(shift, dtype=bias.dtype, device=bias.device)
        if valid_rows is not None:
            self._shrink(net, sequences, targets, weights, valid_rows)

    def _shrink(self, net, sequences, targets, weights, valid_rows):
        """Move each output's predictions towards the weighted mean of all
        ``targets`` (what predicting the training mean predicts, in the
        network's units), keeping the share of their deviation from it that
        fits the held-out rows best in weighted least squares, between none
        and all of it.

        On little data early stopping can keep a network whose deviations
        from the mean are noise, or point the wrong way, on data it has not
        seen: there the held-out rows pull it to the mean, which no
        prediction of the form ``mean + share * deviation`` beats on them.
        Predictions are never stretched, so a network that fits them keeps
        its own. It is folded into the output layer, so everything that
        reads the network (intervals, model files, ONNX) sees it.
        """
        outputs, truths, row_weights = self._outputs_on_rows(
            net, sequences, targets, weights, valid_rows
        )
        if not len(truths):
            return
        everywhere = np.asarray(weights, dtype=np.float64)
        mean = everywhere @ np.asarray(targets, dtype=np.float64) / everywhere.sum()
        n_outputs = truths.shape[-1]
        deviations = outputs[:, :n_outputs].astype(np.float64) - mean
        misses = np.asarray(truths, dtype=np.float64) - mean
        row_weights = np.asarray(row_weights, dtype=np.float64)[:, None]
        spread = (row_weights * deviations**2).sum(axis=0)
        agreement = (row_weights * deviations * misses).sum(axis=0)
        share = np.ones(n_outputs)
        varied = spread > 0
        share[varied] = np.clip(agreement[varied] / spread[varied], 0.0, 1.0)
        head = net.module_.head
        with torch.no_grad():
            kept = torch.as_tensor(
                share, dtype=head.weight.dtype, device=head.weight.device
            )
            centre = torch.as_tensor(
                mean, dtype=head.bias.dtype, device=head.bias.device
            )
            head.weight.mul_(kept[:, None])
            head.bias.mul_(kept).add_((1 - kept) * centre)

    def _validation_score(self, collected):
        predictions, truths, weights = [], [], []
        for outputs, targets, step_weights in collected:
            n_outputs = targets.shape[-1]
            outputs = outputs[..., :n_outputs]  # without the log-scales
            if step_weights is None:
                step_weights = outputs.new_ones(outputs.shape[:-1])
            keep = step_weights.reshape(-1) > 0
            predictions.append(outputs.reshape(-1, n_outputs)[keep])
            truths.append(targets.reshape(-1, n_outputs)[keep].to(outputs.dtype))
            weights.append(step_weights.reshape(-1)[keep].to(outputs.dtype))
        prediction = torch.cat(predictions)
        truth = torch.cat(truths)
        weight = torch.cat(weights)[:, None]
        centre = (weight * truth).sum(0) / weight.sum()
        residual = (weight * (truth - prediction).square()).sum(0)
        spread = (weight * (truth - centre).square()).sum(0).clamp_min(1e-12)
        return float((1 - residual / spread).mean())

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self,
        X: SequencesLike,
        y: TargetsLike,
        sample_weight: ArrayLike | None = None,
    ) -> Self:
        """Train for one epoch on ``(X, y)``, continuing from earlier calls.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.
        y : array-like
            Targets, as in :meth:`fit`.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sequence in the loss.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: SequencesLike) -> Predictions:
        """Predicted targets.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs), or per
            step ``(n_samples, n_timesteps[, n_outputs])`` (a list of arrays
            for a list input) when ``output_mode="sequence"``.
        """
        sequences, outputs = self._outputs(X)
        values = self._predictions(outputs)
        if self._single_output:
            values = values[..., 0]
        return self._shaped(values, sequences)

    def _predictions(self, outputs):
        """Predictions ``(rows, n_outputs)`` on the targets' scale."""
        return outputs[:, : self.n_outputs_] * self._target_scale + self._target_mean

    def score(
        self,
        X: SequencesLike,
        y: TargetsLike,
        sample_weight: ArrayLike | None = None,
    ) -> float:
        """R^2 of the predictions; over all valid steps in sequence mode.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.
        y : array-like
            True targets, as in :meth:`fit`.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sequence.

        Returns
        -------
        score : float
        """
        # Everything is checked before the network runs.
        sequences = self._validated_sequences(X)
        if self._fitted_output_mode == "last":
            if y is None:
                raise ValueError("score needs the true targets y, got None.")
            truth = self._numeric_targets(y)
            check_target_count(sequences, truth)
        else:
            _, truth = check_per_step_targets(y, sequences)
            truth = self._numeric_targets(truth)
        n_outputs = 1 if truth.ndim == 1 else truth.shape[1]
        if n_outputs != self.n_outputs_:
            raise ValueError(
                f"y has {n_outputs} outputs but the estimator was fitted with "
                f"{self.n_outputs_}."
            )
        weights = self._score_weights(sample_weight, sequences)
        outputs = self._network_outputs(sequences)
        # Per step, values come one row per step, as ``truth`` does.
        values = self._predictions(outputs)
        predicted = values[..., 0] if truth.ndim == 1 else values
        return r2_score(truth, predicted, sample_weight=weights)

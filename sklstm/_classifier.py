"""LSTMClassifier: sequence-to-label and per-step classification."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_y

from ._base import BaseLSTM
from ._docs import fill_doc
from ._network import ClassProbabilities, WeightedCrossEntropy
from ._targets import check_per_step_targets, check_target_count
from ._typing import ArrayLike, Predictions, Self, SequencesLike, TargetsLike


def _softmax(logits):
    """Class probabilities from logits, computed where the logits are.

    In float64 whatever the network's precision, so that every row sums to
    1 to float64 rounding with no pass over the result afterwards.
    """
    return torch.softmax(logits, dim=-1, dtype=torch.float64)


def _log_softmax(logits):
    """Log class probabilities from logits, in float64: finite where a
    probability itself would underflow to 0."""
    return torch.log_softmax(logits, dim=-1, dtype=torch.float64)


@fill_doc
class LSTMClassifier(ClassifierMixin, BaseLSTM):
    """Recurrent-network classifier for sequences.

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
        The score is accuracy; with ``output_mode="last"`` the hold-out is
        stratified by class when every class has enough sequences.
    {validation_fraction}
    {n_iter_no_change}
    {tol}
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, multiplying ``sample_weight``:
        ``{label: weight}`` (unlisted classes weigh 1), or "balanced" for
        weights inversely proportional to the class frequencies in ``y``.
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
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Features seen during fit: per time step for sequences, columns for a
        2-D table.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when ``X`` was a DataFrame with string column names.
    n_iter_ : int
        Epochs trained.
    loss_curve_ : list of float
        Training loss after each epoch.
    validation_scores_ : list of float or None
        Validation accuracy after each epoch (with ``early_stopping``).
    best_validation_score_ : float or None
        Best validation accuracy (with ``early_stopping``).
    history_ : skorch.History
        Everything skorch recorded, per epoch and (under ``"batches"``) per batch.
    net_ : skorch.NeuralNet
        The trained skorch net; ``net_.module_`` is the torch module.

    See Also
    --------
    LSTMRegressor : The same network for regression.

    Examples
    --------
    >>> import numpy as np
    >>> from sklstm import LSTMClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(60, 12, 2)).astype("float32")
    >>> y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    >>> clf = LSTMClassifier(max_epochs=5, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    """

    _parameter_constraints: dict = {
        **BaseLSTM._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }
    _criterion = WeightedCrossEntropy

    def __init__(
        self,
        *,
        hidden_size=64,
        num_layers=1,
        bidirectional=False,
        cell="lstm",
        dropout=0.3,
        output_mode="last",
        pooling="auto",
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
        lr=3e-3,
        optimizer="adam",
        weight_decay=0.0,
        gradient_clip=None,
        lr_schedule="cosine",
        weight_averaging=None,
        time_warp=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        class_weight=None,
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
        self.class_weight = class_weight

    def _encode_targets(self, y, sequences, *, reset, classes=None):
        if getattr(getattr(y, "dtype", None), "kind", None) == "c":
            raise ValueError(
                "Complex data not supported: y holds complex numbers, which "
                "cannot be class labels. Use ints or strings as labels."
            )
        if self.output_mode == "last":
            labels = _check_y(y, estimator=self)
            check_target_count(sequences, labels)
        else:
            items, labels = check_per_step_targets(y, sequences)
            for index, item in enumerate(items):
                if item.ndim > 1:
                    raise ValueError(
                        "output_mode='sequence' takes one label per time step, "
                        f"but y[{index}] has shape {item.shape}. For several "
                        "targets per step use LSTMRegressor, or one classifier "
                        "per target."
                    )
        _check_present(labels)
        _check_orderable(labels, "y")
        check_classification_targets(labels)
        if reset:
            if classes is not None:
                _check_orderable(np.asarray(classes), "classes")
            known = np.unique(labels) if classes is None else np.unique(classes)
            if len(known) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes "
                    f"in the data, but the data contains only one class: "
                    f"{known[0]!r}."
                )
        else:
            known = self.classes_
        unseen = np.setdiff1d(labels, known)
        if len(unseen):
            raise ValueError(
                f"y contains labels {unseen[:5].tolist()} that are not among the "
                f"classes {known.tolist()}. Pass all labels in `classes` on the "
                "first call to partial_fit."
            )
        codes = np.searchsorted(known, labels).astype(np.int64)
        return codes, {"classes": known, "labels": labels}

    def _store_target_state(self, state):
        self.classes_ = state["classes"]

    def _n_outputs(self, target_state):
        return len(target_state["classes"])

    def _prediction_head(self):
        return ClassProbabilities()

    def _class_weights(self, state):
        classes = state["classes"]
        if self.class_weight is None:
            return np.ones(len(classes))
        if isinstance(self.class_weight, str):
            present = np.unique(state["labels"])
            weights = np.ones(len(classes))
            weights[np.searchsorted(classes, present)] = compute_class_weight(
                "balanced", classes=present, y=state["labels"]
            )
            return weights
        unknown = [key for key in self.class_weight if key not in set(classes)]
        if unknown:
            raise ValueError(
                f"class_weight has keys {unknown} that are not classes; the "
                f"classes are {classes.tolist()}."
            )
        try:
            weights = np.array([self.class_weight.get(c, 1.0) for c in classes], float)
        except (TypeError, ValueError):
            raise TypeError(
                "class_weight values must be numbers (the weight of each "
                f"class), got {self.class_weight!r}."
            ) from None
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(
                "class_weight values must be finite and non-negative, got "
                f"{self.class_weight!r}."
            )
        return weights

    def _step_weights(self, targets, sample_weight, sequences, state):
        per_class = self._class_weights(state)[targets]
        if self.output_mode == "last":
            return (sample_weight * per_class).astype(np.float32)
        steps_weight = np.repeat(sample_weight, sequences.lengths)
        return (steps_weight * per_class).astype(np.float32)

    def _stratify_labels(self, targets):
        return targets if self.output_mode == "last" else None

    def _validation_score(self, collected):
        correct = 0.0
        total = 0.0
        for outputs, targets, weights in collected:
            hits = (outputs.argmax(dim=-1) == targets).to(outputs.dtype)
            if weights is None:
                correct += float(hits.sum())
                total += hits.numel()
            else:
                correct += float((hits * weights).sum())
                total += float(weights.sum())
        return correct / total

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self,
        X: SequencesLike,
        y: TargetsLike,
        classes: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> Self:
        """Train for one epoch on ``(X, y)``, continuing from earlier calls.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.
        y : array-like
            Targets, as in :meth:`fit`.
        classes : array-like of shape (n_classes,), default=None
            Every class of the problem. Required on the first call, ignored
            afterwards.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sequence in the loss.

        Returns
        -------
        self : object
            The updated estimator.
        """
        if not hasattr(self, "net_") and classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit, "
                "e.g. partial_fit(X, y, classes=np.unique(y_all))."
            )
        if hasattr(self, "net_") and classes is not None:
            if not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(
                    f"classes={list(classes)} differs from the classes of the "
                    f"first partial_fit call, {self.classes_.tolist()}."
                )
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X: SequencesLike) -> Predictions:
        """Class probabilities.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), or per step
            ``(n_samples, n_timesteps, n_classes)`` (a list of
            ``(n_timesteps_i, n_classes)`` arrays for a list input) when
            ``output_mode="sequence"``.
        """
        sequences, proba = self._outputs(X, transform=_softmax)
        return self._shaped(proba, sequences)

    def predict_log_proba(self, X: SequencesLike) -> Predictions:
        """Logarithm of the class probabilities.

        Computed from the network's outputs directly (a log-softmax), so it
        stays finite where :meth:`predict_proba` rounds a probability to 0.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), or per step
            as for :meth:`predict_proba`.
        """
        sequences, log_proba = self._outputs(X, transform=_log_softmax)
        return self._shaped(log_proba, sequences)

    def predict(self, X: SequencesLike) -> Predictions:
        """Predicted labels, taken from ``classes_``.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.

        Returns
        -------
        y : ndarray of shape (n_samples,), or per step \
                (n_samples, n_timesteps)
            Predicted labels; per time step (a list of arrays for a list
            input) when ``output_mode="sequence"``.
        """
        sequences, outputs = self._outputs(X)
        labels = self.classes_[outputs.argmax(axis=-1)]
        return self._shaped(labels, sequences)

    def score(
        self,
        X: SequencesLike,
        y: TargetsLike,
        sample_weight: ArrayLike | None = None,
    ) -> float:
        """Mean accuracy; per time step, ignoring padding, in sequence mode.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.
        y : array-like
            True labels, as in :meth:`fit`.
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
                raise ValueError("score needs the true labels y, got None.")
            truth = _check_y(y, estimator=self)
            check_target_count(sequences, truth)
        else:
            _, truth = check_per_step_targets(y, sequences)
        weights = self._score_weights(sample_weight, sequences)
        # Per step, labels come one row per step, as ``truth`` does.
        labels = self.classes_[self._network_outputs(sequences).argmax(axis=-1)]
        return accuracy_score(truth, labels, sample_weight=weights)


def _check_present(labels):
    """No label may be missing, whatever scikit-learn's assume_finite says."""
    values = np.asarray(labels).ravel()
    if values.dtype.kind == "f":
        missing = np.isnan(values)
    elif values.dtype == object:
        missing = np.array(
            [v is None or (isinstance(v, float) and v != v) for v in values]
        )
    else:
        return
    if missing.any():
        raise ValueError(
            f"y contains {int(missing.sum())} missing labels (None or NaN). "
            "Drop those sequences or give them a label first."
        )


def _check_orderable(labels, name):
    """Labels must sort: mixed types (e.g. 1 and "1") would fail in np.unique."""
    if labels.dtype != object:
        return
    try:
        np.unique(labels)
    except TypeError:
        types = {type(label) for label in labels.ravel()}
        raise TypeError(
            f"{name} mixes label types that cannot be compared "
            f"({sorted(t.__name__ for t in types)}). Use one type for all "
            "labels, e.g. convert them with y.astype(str)."
        ) from None

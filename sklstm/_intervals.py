"""Prediction intervals of :class:`~sklstm.LSTMRegressor`.

:class:`IntervalsMixin` gives the regressor ``predict_interval`` and
``predict_quantiles`` and calibrates them at the end of each ``fit`` on the
validation split early stopping holds out, by split conformal prediction
(the arithmetic is in :mod:`sklstm._conformal`; the regressor's Notes say
what it guarantees).
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._base import _AUTO_WORK
from ._conformal import (
    calibration_from,
    conformity_scores,
    expected_scale,
    half_widths,
    largest_coverage,
    scores_needed,
    too_few_scores,
)
from ._typing import ArrayLike, Predictions, SequencesLike

# calibration="auto" trains further networks to calibrate the intervals when
# the validation split gives fewer scores than this (there a split's coverage
# varies much from fit to fit, and coverages above n / (n + 1) are out of
# reach) and when the whole fit, further networks included, cannot go
# through more sequence steps than one default fit may (_AUTO_WORK), so that
# a default fit's time stays bounded as the README says.
AUTO_CROSS_MAX_SCORES = 100
# How many further networks calibration="cross" trains at most: with the
# default validation_fraction=0.2 their held-out rows and the fit's own cover
# every sequence once.
CROSS_NETWORKS = 4
# Held-out folds may be this much larger or smaller than the validation split
# when that lets them hold out every training row once: the further networks
# then train on about as many rows as the fit's own.
_FOLD_SIZE_SLACK = 0.1


def check_coverage(coverage):
    """``coverage`` as a float in (0, 1), or a TypeError/ValueError saying
    what to pass; for the regressor's and the forecaster's intervals."""
    if isinstance(coverage, (bool, np.bool_)) or not isinstance(coverage, Real):
        raise TypeError(
            f"coverage must be a number in (0, 1), the share of targets the "
            f"interval should hold, got {coverage!r}. For several coverages, "
            "call predict_interval once per coverage."
        )
    value = float(coverage)
    if not 0 < value < 1:
        raise ValueError(
            f"coverage={coverage!r} is not in (0, 1): pass the share of "
            "targets the interval should hold, strictly between 0 and 1, e.g. "
            "coverage=0.9 for a 90% interval."
        )
    return value


def check_quantiles(quantiles):
    """``quantiles`` as a 1-D float array of levels in (0, 1), in the order
    given; for the regressor's and the forecaster's ``predict_quantiles``."""
    fix = "pass probability levels, e.g. quantiles=(0.05, 0.5, 0.95)."
    if isinstance(quantiles, (bool, np.bool_, str, bytes)):
        raise TypeError(f"quantiles must be numbers, got {quantiles!r}; {fix}")
    values = np.atleast_1d(np.asarray(quantiles, dtype=object))
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(
            f"quantiles must be one number or a non-empty 1-D list of numbers, "
            f"got {quantiles!r}; {fix}"
        )
    if not all(
        isinstance(value, Real) and not isinstance(value, (bool, np.bool_))
        for value in values
    ):
        raise TypeError(f"quantiles must be numbers, got {quantiles!r}; {fix}")
    values = values.astype(np.float64)
    if not ((values > 0) & (values < 1)).all():
        raise ValueError(
            f"quantiles={quantiles!r} holds values outside (0, 1) or NaN: each "
            f"must lie strictly between 0 and 1; {fix}"
        )
    return values


class IntervalsMixin:
    """``predict_interval`` and ``predict_quantiles``, calibrated in ``fit``.

    For :class:`~sklstm.LSTMRegressor`, which provides what this reads:
    ``_outputs`` and ``_outputs_of`` (network outputs, see
    :class:`~sklstm._base.BaseLSTM`), ``_predictions`` (outputs to
    predictions), ``n_outputs_``, ``_target_scale``, ``_single_output``
    and ``_shaped``. It fills in the base class's calibration hooks.
    """

    def _calibrate(self, net, sequences, targets, weights, valid_rows):
        if valid_rows is None:
            return None
        return calibration_from(
            self._calibration_scores(net, sequences, targets, weights, valid_rows)
        )

    def _calibration_scores(self, net, sequences, targets, weights, rows):
        outputs, truths, _ = self._outputs_on_rows(
            net, sequences, targets, weights, rows
        )
        return conformity_scores(outputs, truths)

    def _pooled_calibration(self, scores):
        return calibration_from(np.concatenate(scores))

    def _calibration_folds(self, sequences, rows, seed, work):
        """``calibration="cross"`` (or "auto" on a small validation split,
        within the budget): up to :data:`CROSS_NETWORKS` folds of the
        training rows, each about as large as the validation split, so that
        each further network trains on about as many sequences as the fit's
        own."""
        train_rows, valid_rows = rows
        n_valid = len(valid_rows)
        mode = self.calibration
        if mode == "auto":
            # Counted on the split, not on the calibration, which samples
            # data read from disk.
            held_out = n_valid
            if self.output_mode == "sequence":
                held_out = int(sequences.lengths[valid_rows].sum())
            mode = "cross" if held_out < AUTO_CROSS_MAX_SCORES else "split"
        if mode == "split":
            return []
        # A stream of its own: the split's permutation drew from ``seed``.
        draws = np.random.RandomState([seed, 1])
        order = draws.permutation(train_rows)
        ratio = len(train_rows) / n_valid
        even = round(ratio)
        if 1 <= even <= CROSS_NETWORKS and abs(ratio / even - 1) <= _FOLD_SIZE_SLACK:
            # The folds can hold out every training row once and stay about
            # as large as the split (as at the default validation_fraction).
            parts = np.array_split(order, even)
        else:
            count = min(CROSS_NETWORKS, len(train_rows) // n_valid)
            parts = [
                order[index * n_valid : (index + 1) * n_valid] for index in range(count)
            ]
        done, most = work
        if self.calibration == "auto" and done + len(parts) * most > _AUTO_WORK:
            # Only where the fit stays within one default fit's budget of
            # sequence steps even if each further network trains all its
            # epochs.
            return []
        seeds = draws.randint(np.iinfo(np.int32).max, size=len(parts))
        everything = np.arange(len(train_rows) + n_valid)
        folds = []
        for part, member_seed in zip(parts, seeds, strict=True):
            held_out = np.sort(part)
            rows = np.setdiff1d(everything, held_out, assume_unique=True)
            folds.append((int(member_seed), rows, held_out))
        return folds

    def _store_calibration(self, calibration):
        if calibration is None:
            self.__dict__.pop("_calibration", None)
        else:
            self._calibration = calibration

    def predict_interval(self, X: SequencesLike, coverage: float = 0.9) -> Predictions:
        """Calibrated prediction intervals: lower and upper bounds.

        Each output's interval holds its target with probability at least
        ``coverage`` on data like the training data; see the Notes of
        :class:`LSTMRegressor` for how it is calibrated and what it needs
        (``early_stopping``).

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.
        coverage : float, default=0.9
            Share of targets the intervals should hold, in (0, 1).

        Returns
        -------
        intervals : ndarray of shape (n_samples, 2), or \
                (n_samples, n_outputs, 2) for 2-D ``y``
            ``[..., 0]`` the lower and ``[..., 1]`` the upper bound, around
            what :meth:`predict` returns: its shape plus a last axis of 2.
            Per step ``(n_samples, n_timesteps[, n_outputs], 2)`` when
            ``output_mode="sequence"``, a list of such arrays, one per
            sequence, for a list input.

        Raises
        ------
        ValueError
            If the regressor was fitted without a validation split (see
            ``early_stopping``), or ``coverage`` is not in (0, 1) or needs
            more validation data than the fit held out.
        """
        check_is_fitted(self)
        coverage = check_coverage(coverage)
        return self._bounds(X, np.array([-coverage, coverage]))

    def predict_quantiles(
        self, X: SequencesLike, quantiles: ArrayLike = (0.05, 0.5, 0.95)
    ) -> Predictions:
        """Calibrated quantiles of the targets' distribution.

        Quantile ``q`` and ``1 - q`` are the ends of the calibrated central
        interval of coverage ``|2q - 1|`` (see :meth:`predict_interval`),
        and quantile 0.5 is :meth:`predict`'s prediction.

        Parameters
        ----------
        X : array-like or list of array-like
            Sequences, as in :meth:`fit`.
        quantiles : float or array-like of float, default=(0.05, 0.5, 0.95)
            Quantile levels, each strictly between 0 and 1, in any order.

        Returns
        -------
        quantiles : ndarray of shape (n_samples, n_quantiles), or \
                (n_samples, n_outputs, n_quantiles) for 2-D ``y``
            What :meth:`predict` returns with a last axis of one value per
            quantile level, in the order given (also for a single level).
            Per step ``(n_samples, n_timesteps[, n_outputs], n_quantiles)``
            when ``output_mode="sequence"``, a list of such arrays, one per
            sequence, for a list input.

        Raises
        ------
        ValueError
            If the regressor was fitted without a validation split (see
            ``early_stopping``), or a level is not in (0, 1) or needs more
            validation data than the fit held out.
        """
        check_is_fitted(self)
        levels = check_quantiles(quantiles)
        return self._bounds(X, 2 * levels - 1)

    def _bounds(self, X, signed_coverages):
        """Interval ends: for each signed coverage ``c``, the prediction
        plus ``sign(c)`` times the half-width of the ``|c|`` interval."""
        coverages = np.abs(signed_coverages)
        calibration = self._checked_calibration(coverages.max())
        factors = np.sign(signed_coverages)[:, None] * half_widths(
            calibration, coverages
        )
        sequences, outputs = self._outputs(X)
        predictions = self._predictions(outputs)
        scale = expected_scale(outputs, self.n_outputs_) * self._target_scale
        # (rows, n_outputs, n_bounds)
        bounds = predictions[:, :, None] + scale[:, :, None] * factors.T[None]
        if self._single_output:
            bounds = bounds[:, 0]
        return self._shaped(bounds, sequences)

    def _checked_calibration(self, coverage):
        """The calibration, or a ValueError saying why there is none or why
        it cannot give ``coverage``, and what to do."""
        calibration = getattr(self, "_calibration", None)
        name = type(self).__name__
        if calibration is None:
            raise ValueError(
                f"This {name} has no calibration for intervals: its last fit "
                "held no validation split out (early_stopping=False, or "
                "early_stopping='auto' with fewer than 50 sequences), or "
                "partial_fit has trained it since. Fit it with "
                "early_stopping=True: the validation_fraction of the sequences "
                "held out for early stopping calibrates the intervals."
            )
        size = calibration["size"]
        if too_few_scores(coverage, size):
            unit = "steps" if self._fitted_output_mode == "sequence" else "sequences"
            raise ValueError(
                f"A coverage of {coverage:g} needs at least "
                f"{scores_needed(coverage)} validation {unit}, but the last fit "
                f"held out {size}, which give coverages up to "
                f"{largest_coverage(size):.4g}. Fit on more sequences, raise "
                "validation_fraction or set calibration='cross' (more networks "
                "hold out more of the data), or ask for a lower coverage."
            )
        return calibration


__all__ = ["IntervalsMixin", "check_coverage", "check_quantiles"]

"""The arithmetic of split conformal prediction intervals.

``fit`` with early stopping holds out a validation split. After training,
the regressor's errors on it calibrate its intervals (split conformal
prediction, Vovk et al. 2005; Lei et al. 2018): each validation error is
divided by the error the network expects there (1 everywhere for
``interval_width="constant"``, the learned scale for ``"adaptive"``), and
a ``coverage`` interval is the prediction plus or minus that expected error
times the ``ceil((n + 1) * coverage)``-th smallest of the ``n`` ratios. On
new data exchangeable with the validation split, the interval then holds
the truth with probability at least ``coverage``.

Everything here works in standardised target units; the regressor (see
:mod:`sklstm._intervals`) maps predictions and widths back. The
calibration is ``{"size": n, "scores": array}``: the ratios sorted per
output, all of them or (past :data:`MAX_STORED_SCORES`) evenly spaced
order statistics among them. The model file stores it (see
:mod:`sklstm._model_file`), so this module imports nothing of the
estimators.
"""

from __future__ import annotations

import math

import numpy as np

from ._network import LOG_SCALE_LIMIT

# At most this many sorted scores per output are kept (fitted state, saved in
# the model file): per-step calibration of a large data set has millions.
# Reading the next kept order statistic up from the exact one gives at most
# 1 / MAX_STORED_SCORES more coverage than asked, never less.
MAX_STORED_SCORES = 1000
# Slack for floating-point rounding in (n + 1) * coverage (0.9 * 10 is
# 9.000000000000002): a rank is never raised by rounding alone.
_RANK_SLACK = 1e-9


def expected_scale(outputs, n_targets):
    """The error the network expects per output, standardised: the learned
    scale when there is a scale head, else 1. ``(n, n_targets)``."""
    if outputs.shape[-1] == n_targets:
        return np.ones(outputs.shape[:-1] + (n_targets,))
    log_scale = np.clip(outputs[..., n_targets:], -LOG_SCALE_LIMIT, LOG_SCALE_LIMIT)
    return np.exp(log_scale)


def conformity_scores(outputs, targets):
    """Absolute errors over the expected ones, ``(n, n_targets)`` float64.

    ``outputs`` are the network's (predictions, then log-scales if any) and
    ``targets`` the standardised truths, one row per sequence or step.
    """
    n_targets = targets.shape[-1]
    errors = np.abs(np.asarray(targets, dtype=np.float64) - outputs[:, :n_targets])
    return errors / expected_scale(outputs, n_targets)


def stored_ranks(size):
    """The ranks (1 = smallest) of the scores a calibration of ``size`` keeps."""
    if size <= MAX_STORED_SCORES:
        return np.arange(1, size + 1)
    kept = np.arange(1, MAX_STORED_SCORES + 1, dtype=np.int64)
    return -(-kept * size // MAX_STORED_SCORES)  # ceil(j * size / MAX)


def calibration_from(scores):
    """The calibration (see the module docstring) for ``(n, n_outputs)`` scores."""
    ordered = np.sort(scores, axis=0)
    size = len(ordered)
    return {"size": size, "scores": ordered[stored_ranks(size) - 1]}


def largest_coverage(size):
    """The largest coverage ``size`` calibration scores can give: n / (n + 1)."""
    return size / (size + 1)


def scores_needed(coverage):
    """The fewest calibration scores that give ``coverage``."""
    return math.ceil(coverage / (1 - coverage) - _RANK_SLACK)


def half_widths(calibration, coverages):
    """Half-widths, in expected errors, of central intervals per coverage.

    Returns ``(len(coverages), n_outputs)``: for each coverage, the
    ``ceil((n + 1) * coverage)``-th smallest score of each output (or the
    next kept one up). A coverage of 0 gives 0. The caller has checked that
    every coverage is at most :func:`largest_coverage`.
    """
    size, scores = calibration["size"], calibration["scores"]
    widths = np.zeros((len(coverages), scores.shape[1]))
    for row, coverage in enumerate(coverages):
        if coverage <= 0:
            continue
        rank = max(1, math.ceil((size + 1) * coverage - _RANK_SLACK))
        if rank > size:
            raise ValueError(
                f"coverage {coverage} needs more than {size} calibration scores"
            )
        if size <= MAX_STORED_SCORES:
            index = rank - 1
        else:
            # The first kept rank at or above ``rank`` (see stored_ranks).
            index = (rank - 1) * MAX_STORED_SCORES // size
        widths[row] = scores[index]
    return widths


def too_few_scores(coverage, size):
    """Whether ``size`` calibration scores cannot give ``coverage``."""
    return math.ceil((size + 1) * coverage - _RANK_SLACK) > size


__all__ = [
    "MAX_STORED_SCORES",
    "calibration_from",
    "conformity_scores",
    "expected_scale",
    "half_widths",
    "largest_coverage",
    "scores_needed",
    "stored_ranks",
    "too_few_scores",
]

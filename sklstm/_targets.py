"""Targets and weights: validation, per sequence and per step.

``output_mode="sequence"`` takes one target per time step; these helpers
check them against the input sequences. Per-step targets are then laid out
as the inputs' steps are (see :class:`sklstm._sequences.Sequences`): one row
per step, sequence after sequence, no padding.
"""

from __future__ import annotations

import numpy as np


def check_target_count(sequences, targets, name="y"):
    """One target per sequence, said in sequences rather than samples."""
    if len(targets) != sequences.n_samples:
        raise ValueError(
            f"X has {sequences.n_samples} sequences but {name} has "
            f"{len(targets)} targets. Pass one target per sequence (in the "
            "same order)."
        )


def check_per_step_targets(y, sequences, *, name="y"):
    """Validate per-step targets against ``sequences``.

    Returns the target sequences as a list of arrays, and all their values
    as one array of shape (total_steps,) or (total_steps, n_outputs), laid
    out as ``sequences.steps``.
    """
    n_samples = sequences.n_samples
    if isinstance(y, (list, tuple)) or (
        isinstance(y, np.ndarray) and y.dtype == object and y.ndim == 1
    ):
        items = [np.asarray(item) for item in y]
    else:
        array = np.asarray(y)
        if array.ndim < 2:
            raise ValueError(
                f"output_mode='sequence' needs one target per time step: {name} "
                "must be a list of per-sequence arrays or an array of shape "
                f"(n_samples, n_timesteps), got shape {array.shape}."
            )
        items = list(array)
    if len(items) != n_samples:
        raise ValueError(
            f"X has {n_samples} sequences but {name} has {len(items)}. Pass one "
            "target sequence per input sequence."
        )
    for index, (item, length) in enumerate(zip(items, sequences.lengths, strict=True)):
        if item.ndim == 0 or len(item) != length:
            got = "a scalar" if item.ndim == 0 else f"{len(item)} steps"
            raise ValueError(
                f"{name}[{index}] has {got} but X[{index}] has {length} time "
                "steps. In output_mode='sequence' each target sequence must be "
                "as long as its input sequence."
            )
    flat = np.concatenate([np.asarray(item) for item in items])
    return items, flat


def check_weight_shape(sample_weight, n_samples):
    """Shape and type of ``sample_weight``, in the estimator's own words."""
    try:
        array = np.asarray(sample_weight)
    except (TypeError, ValueError):
        raise ValueError(
            "sample_weight could not be read as an array: pass one number per sequence."
        ) from None
    if array.dtype.kind not in "biufO":
        raise ValueError(
            f"sample_weight holds non-numeric values of dtype {array.dtype}; "
            "pass one number per sequence."
        )
    if array.ndim != 1:
        raise ValueError(
            f"sample_weight has shape {array.shape}; pass a 1-D array with "
            f"one weight per sequence (length {n_samples}). Per-step weights "
            "are not supported."
        )
    if len(array) != n_samples:
        raise ValueError(
            f"sample_weight has {len(array)} values but X has {n_samples} "
            "sequences; pass one weight per sequence."
        )


def check_total_weight(weights, train_index, valid_index):
    """Training (and validation) must weigh something, or the loss is 0/0.

    ``weights`` holds the weight of each sequence.
    """
    if weights[train_index].sum() <= 0:
        raise ValueError(
            "Every training sequence has weight zero once sample_weight and "
            "class_weight are combined, so there is nothing to learn from. "
            "Give some sequences a positive weight."
        )
    if valid_index is not None and weights[valid_index].sum() <= 0:
        raise ValueError(
            "The validation split for early_stopping holds only sequences of "
            "weight zero, so it cannot be scored. Change validation_fraction "
            "or random_state, or set early_stopping=False."
        )

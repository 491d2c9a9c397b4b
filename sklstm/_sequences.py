"""Input validation and the one internal representation of sequences.

Everything a user can pass as ``X`` (3-D arrays, 2-D tables, ragged lists) is
checked and converted here, once, into :class:`Sequences`: the time steps of
all sequences back to back, ``(total_steps, n_features)``, plus the length of
each sequence. Nothing downstream ever looks at the original container again.
Padding happens per mini-batch (see :mod:`sklstm._data`), so memory follows
the number of steps, however unequal the lengths.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.sparse import issparse
from sklearn.utils.validation import (
    _check_feature_names,
    _get_feature_names,
    check_array,
)

from ._network import _centred_changes
from ._typing import ArrayLike

_FLOAT_DTYPES = {"32": np.float32, "64": np.float64}


@dataclass
class Sequences:
    """Sequences as their time steps, one after another, with their lengths.

    Attributes
    ----------
    steps : ndarray of shape (total_steps, n_features)
        The steps of the first sequence, then those of the second, and so
        on; no padding. For a 3-D array this is a view of it.
    lengths : ndarray of shape (n_samples,), dtype int64
        Number of time steps of each sequence.
    ragged : bool
        True when the caller passed a list of separate sequences; predictions
        per time step are then returned as a list too.
    tabular : bool
        True when the caller passed a 2-D table (one univariate sequence per
        row, columns are time steps).
    """

    steps: np.ndarray
    lengths: np.ndarray
    ragged: bool = False
    tabular: bool = False
    feature_names: np.ndarray | None = None
    # Tabular sequences (see sklstm._tabular): categorical step features as
    # integer codes (total_steps, n_categorical), laid out like ``steps``,
    # static features per sequence, numeric and coded, and the input's
    # column count.
    codes: np.ndarray | None = None
    static: np.ndarray | None = None
    static_codes: np.ndarray | None = None
    n_columns: int | None = None

    @property
    def n_samples(self):
        return len(self.lengths)

    @property
    def n_features(self):
        return self.steps.shape[1]

    @property
    def max_length(self):
        return int(self.lengths.max()) if self.n_samples else 0

    @property
    def equal_lengths(self):
        return self.n_samples == 0 or bool(self.lengths.min() == self.lengths.max())

    @property
    def offsets(self):
        """Where each sequence starts in ``steps``, and where the last ends."""
        return np.concatenate([[0], np.cumsum(self.lengths)])

    @property
    def table_width(self):
        """Features as scikit-learn counts them: columns for a table."""
        if self.n_columns is not None:
            return self.n_columns
        return self.max_length if self.tabular else self.n_features

    def step_indices(self, rows):
        """Where the steps of sequences ``rows`` (an index array) are in
        ``steps``, sequence after sequence."""
        lengths = self.lengths[rows]
        starts = self.offsets[:-1][rows]
        # Each step's position is its sequence's start plus its place in it.
        before = np.cumsum(lengths) - lengths
        return np.repeat(starts - before, lengths) + np.arange(lengths.sum())

    def take(self, rows):
        """The sequences ``rows`` (an index array), as new Sequences."""
        steps = self.step_indices(rows)

        def per_sequence(values):
            return None if values is None else values[rows]

        return replace(
            self,
            steps=self.steps[steps],
            lengths=self.lengths[rows],
            codes=None if self.codes is None else self.codes[steps],
            static=per_sequence(self.static),
            static_codes=per_sequence(self.static_codes),
        )


def _is_sequence_list(X):
    """Whether ``X`` is a list of separate sequences rather than a table.

    A list of arrays (or of nested lists of unequal length) holds one sequence
    per element. A list of equal-length plain lists is a table, as it is
    everywhere else in scikit-learn.
    """
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    if any(
        (hasattr(item, "__array__") or hasattr(item, "dtype")) and np.ndim(item) >= 1
        for item in X
    ):
        return True
    lengths = {len(item) if isinstance(item, (list, tuple)) else -1 for item in X}
    if -1 in lengths:
        return False
    if len(lengths) > 1:
        return True
    # Equal-length nested lists: a table, unless the items are themselves 2-D.
    first = X[0]
    return len(first) > 0 and isinstance(first[0], (list, tuple))


def _numeric_array(values, name):
    """Convert one sequence to a numeric ndarray or raise a clear error."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} could not be converted to a numeric array ({exc}). Pass "
            "each sequence as an array of shape (n_timesteps, n_features) or "
            "(n_timesteps,)."
        ) from None
    _check_numeric_kind(array.dtype, name)
    if array.dtype.kind not in "biuf":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} holds non-numeric values of dtype {array.dtype}. "
                "Encode them as numbers before fitting."
            ) from None
    return array


def _check_numeric_kind(dtype, name):
    """Reject dtypes that numpy would silently turn into meaningless floats."""
    kind = getattr(dtype, "kind", "O")
    if kind == "c":
        raise ValueError(
            f"Complex data not supported: {name} holds complex values. Split "
            "real and imaginary parts into separate features."
        )
    if kind in "mM":
        raise ValueError(
            f"{name} holds {dtype} values. Convert dates and durations to "
            "numbers first (e.g. seconds since the sequence start)."
        )
    if kind in "USV":
        raise ValueError(
            f"{name} holds non-numeric values of dtype {dtype}. Encode them as "
            "numbers before fitting (e.g. with sklearn.preprocessing."
            "OrdinalEncoder)."
        )


def _to_float(array, dtype):
    # Values beyond float32's range become inf here; _check_finite then
    # reports them with a hint, instead of numpy warning about a cast.
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(dtype, copy=False)


def step_rows(array, name):
    """One sequence as ``(n_timesteps, n_features)``, or a clear error."""
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim != 2:
        raise ValueError(
            f"{name} has {array.ndim} dimensions; each sequence must be "
            "(n_timesteps, n_features) or (n_timesteps,)."
        )
    if array.shape[0] == 0:
        raise ValueError(
            f"{name} is empty (0 time steps). Remove empty sequences or "
            "give them at least one time step."
        )
    return array


def check_feature_counts(sequences):
    """Every sequence of a list must have the same number of features."""
    first = sequences[0].shape[1]
    bad = next((i for i, a in enumerate(sequences) if a.shape[1] != first), None)
    if bad is not None:
        raise ValueError(
            f"Sequences have different numbers of features: X[0] has {first}, "
            f"X[{bad}] has {sequences[bad].shape[1]}. Every sequence must have "
            "the same features at every time step."
        )


def _sequence_list(X, dtype):
    sequences = []
    for index, item in enumerate(X):
        name = f"Sequence X[{index}]"
        if hasattr(item, "to_numpy"):
            item = item.to_numpy()
        sequences.append(step_rows(_numeric_array(item, name), name))
    check_feature_counts(sequences)
    lengths = np.fromiter((len(a) for a in sequences), np.int64, len(sequences))
    if sequences[0].shape[1] == 0:
        raise ValueError(
            "Sequences have 0 features per time step; each step must hold at "
            "least one value."
        )
    steps = _to_float(np.concatenate(sequences), dtype)
    _check_finite(steps)
    return Sequences(steps, lengths, ragged=True)


def _check_finite(array):
    """Refuse infinities; NaN is a missing value, which the network handles."""
    # A sum is finite iff every element is, barring overflow of the sum
    # itself, which only sends us on to the exact element-wise look below:
    # one cheap pass over large inputs, in their own dtype. Callers pass a
    # C-contiguous, writeable array, which torch sums in place several times
    # faster than numpy does.
    total = float(torch.from_numpy(array).sum())
    if np.isfinite(total):
        return
    if np.isinf(array).any():
        hint = " or fit with precision='64'" if array.dtype == np.float32 else ""
        raise ValueError(
            "Input X contains infinity or a value too large for dtype "
            f"{array.dtype}. Clip or rescale the data first{hint} (NaN is "
            "allowed: it marks a missing value)."
        )


def _check_container(X):
    """Reject what is not a collection of sequences, before numpy guesses."""
    if isinstance(X, (str, bytes, numbers.Number)) or X is None:
        raise TypeError(
            f"X must be an array-like of sequences, got {type(X).__name__}. "
            "Pass a 3-D array (n_samples, n_timesteps, n_features), a 2-D "
            "array (n_samples, n_timesteps) or a list of sequences."
        )
    if issparse(X):
        return  # scikit-learn's own check explains that sparse is unsupported
    if isinstance(X, (dict, set, frozenset)) or not (
        hasattr(X, "__len__") or hasattr(X, "__array__")
    ):
        raise TypeError(
            f"X must be an array-like of sequences, got {type(X).__name__}. "
            "Iterators, generators, sets and dicts have no fixed order or "
            "length: convert X to a list or array first, e.g. list(X)."
        )
    if isinstance(X, np.ma.MaskedArray) and np.ma.count_masked(X):
        raise ValueError(
            f"X is a masked array with {np.ma.count_masked(X)} masked values, "
            "which sklstm would read as ordinary numbers. Fill or impute them "
            "first (e.g. X.filled(0)) or drop those time steps."
        )
    if isinstance(X, (list, tuple)):
        for index, item in enumerate(X):
            if item is None or isinstance(item, (str, bytes, dict, set)):
                raise TypeError(
                    f"X[{index}] is {type(item).__name__}; every sequence must "
                    "be an array-like of numbers."
                )


def _check_table_dtypes(X):
    """Name non-numeric content of an array or DataFrame before conversion."""
    if hasattr(X, "dtypes") and not hasattr(X, "dtype"):  # a DataFrame
        for column, dtype in zip(X.columns, X.dtypes, strict=True):
            _check_numeric_kind(dtype, f"Column {column!r} of X")
    elif hasattr(X, "dtype"):
        _check_numeric_kind(X.dtype, "X")


def _checked_array(X, estimator):
    _check_table_dtypes(X)
    try:
        return check_array(
            X,
            dtype=[np.float64, np.float32],
            allow_nd=True,
            ensure_2d=False,
            ensure_all_finite=False,
            ensure_min_samples=1,
            input_name="X",
            estimator=estimator,
        )
    except (TypeError, ValueError) as exc:
        message = str(exc)
        if "could not convert" in message:
            # Object arrays and nested lists holding strings.
            raise ValueError(
                f"X holds non-numeric values ({message}). Encode them as "
                "numbers before fitting."
            ) from None
        if "argument must be" in message:
            # Objects that are not even strings: dicts, lists, None...
            raise TypeError(
                f"X holds values that are not numbers ({message}). Every "
                "value of X must be a number."
            ) from None
        if "inhomogeneous" in message or "with a sequence" in message:
            raise ValueError(
                f"X could not be read as one array ({message}). Pass "
                "sequences of different lengths as a list of arrays, each "
                "(n_timesteps_i, n_features)."
            ) from None
        raise


def _from_tensor(value):
    """A torch tensor as a numpy array: detached, on the CPU, in a numpy dtype."""
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().cpu()
    if value.dtype in (torch.bfloat16, torch.float16):
        value = value.float()
    return value.numpy()


def to_sequences(X, *, precision="32", estimator=None):
    """Validate ``X`` and convert it to :class:`Sequences`.

    Parameters
    ----------
    X : array-like or list of array-like
        A 3-D array ``(n_samples, n_timesteps, n_features)``, a 2-D table
        ``(n_samples, n_timesteps)`` or a list of sequences.
    precision : {"32", "64"} or str
        "64" keeps float64, anything else computes in float32.
    estimator : BaseEstimator, default=None
        Named in error messages.
    """
    dtype = _FLOAT_DTYPES.get(precision, np.float32)
    # Tensors (that require grad, or in bfloat16) are data like any other.
    X = _from_tensor(X)
    if isinstance(X, (list, tuple)):
        X = [_from_tensor(item) for item in X]
    _check_container(X)
    if isinstance(X, (list, tuple)) and len(X) == 0:
        raise ValueError(
            "X is empty: found 0 sequences (shape=(0,)) while a minimum of 1 "
            "is required. Pass at least one sequence."
        )
    if _is_sequence_list(X):
        return _sequence_list(X, dtype)
    # A plain array has no column names; skipping the lookup saves a
    # noticeable part of predicting a small batch.
    feature_names = None if type(X) is np.ndarray else _get_feature_names(X)
    if (
        type(X) is np.ndarray
        and X.ndim == 3
        and X.dtype in (np.float32, np.float64)
        and X.shape[0] > 0
    ):
        # The common case, a plain float array, needs none of check_array's
        # conversions; the shape and finiteness checks below still apply.
        array = X
    else:
        array = _checked_array(X, estimator)
    if array.ndim not in (2, 3):
        if array.ndim == 1:
            raise ValueError(
                "Expected a 2-D or 3-D array, got a 1-D array instead: "
                f"array={array!r:.100}. Reshape your data with "
                "X.reshape(1, -1) if it is one univariate sequence, or "
                "X.reshape(-1, 1) if each value is its own sample."
            )
        raise ValueError(
            f"Expected a 2-D or 3-D array, got {array.ndim} dimensions "
            f"with shape {array.shape}. sklstm takes (n_samples, "
            "n_timesteps, n_features); for aeon/sktime data of shape "
            "(n_cases, n_channels, n_timepoints) use "
            "sklstm.from_channels_first(X)."
        )
    tabular = array.ndim == 2
    if tabular:
        array = array[:, :, None]
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(
            f"X has shape {array.shape}, with {array.shape[1]} time steps "
            f"and {array.shape[2]} features; both must be at least 1."
        )
    # From here on torch reads the array in place (the finiteness sum, then
    # training), which needs it C-contiguous and writeable.
    array = np.ascontiguousarray(_to_float(np.asarray(array), dtype))
    if not array.flags.writeable:
        array = array.copy()
    _check_finite(array)
    lengths = np.full(array.shape[0], array.shape[1], dtype=np.int64)
    return Sequences(
        array.reshape(-1, array.shape[2]),
        lengths,
        tabular=tabular,
        feature_names=feature_names,
    )


# A 3-D array with this many times more features than steps is far more
# likely an aeon/sktime array (n_cases, n_channels, n_timepoints).
_CHANNELS_FIRST_RATIO = 8


def warn_if_channels_first(sequences):
    """Warn when a 3-D array looks like channels first, as aeon holds series."""
    if sequences.ragged or sequences.tabular or sequences.n_columns is not None:
        return
    n_timesteps, n_features = sequences.max_length, sequences.n_features
    if n_timesteps * _CHANNELS_FIRST_RATIO <= n_features:
        warnings.warn(
            f"X has {n_timesteps} time steps of {n_features} features each: "
            "far more features than steps. sklstm reads 3-D arrays as "
            "(n_samples, n_timesteps, n_features); aeon and sktime hold "
            "series as (n_cases, n_channels, n_timepoints). If X comes from "
            "them, convert it with sklstm.from_channels_first(X).",
            UserWarning,
            stacklevel=5,
        )


def record_features(estimator, sequences):
    """Store what ``fit`` saw, for the checks of :func:`check_features`."""
    # For a table, scikit-learn counts columns as features; for sequences,
    # features are what each time step holds.
    estimator.n_features_in_ = sequences.table_width
    estimator._n_step_features = sequences.n_features
    estimator._tabular_input = sequences.tabular
    if sequences.feature_names is not None:
        estimator.feature_names_in_ = sequences.feature_names
    elif hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_


def check_features(estimator, X, sequences):
    """Check data passed after ``fit`` against what ``fit`` saw."""
    # Names to compare, or a warning that X lacks the fitted names; a plain
    # array has none, so without fitted names there is nothing to check.
    if not sequences.ragged and (
        type(X) is not np.ndarray or hasattr(estimator, "feature_names_in_")
    ):
        _check_feature_names(estimator, X, reset=False)
    n_features = sequences.table_width
    if sequences.tabular == estimator._tabular_input:
        if n_features != estimator.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but "
                f"{type(estimator).__name__} is expecting "
                f"{estimator.n_features_in_} features as input. Pass data "
                "with the same features as during fit."
            )
    elif sequences.n_features != estimator._n_step_features:
        raise ValueError(
            f"X has {sequences.n_features} features per time step, but "
            f"{type(estimator).__name__} was fitted on sequences with "
            f"{estimator._n_step_features}. Pass data with the same features "
            "as during fit."
        )


def from_channels_first(
    X: ArrayLike | Sequence[ArrayLike],
) -> np.ndarray | list[np.ndarray]:
    """Convert aeon/sktime series to sklstm's time-major layout.

    aeon and sktime store collections as ``(n_cases, n_channels,
    n_timepoints)`` arrays, or lists of ``(n_channels, n_timepoints_i)``
    arrays when lengths differ. sklstm expects time first within each
    sequence. The conversion is explicit because a shape alone cannot say
    which axis is time.

    Parameters
    ----------
    X : ndarray of shape (n_cases, n_channels, n_timepoints) or list of ndarray
        Each list item of shape ``(n_channels, n_timepoints_i)``.

    Returns
    -------
    X_sklstm : ndarray of shape (n_cases, n_timepoints, n_channels) or list
        A transposed view for arrays; a list of transposed views for lists.

    Examples
    --------
    >>> import numpy as np
    >>> from sklstm import from_channels_first
    >>> from_channels_first(np.zeros((5, 3, 40))).shape
    (5, 40, 3)
    """
    if isinstance(X, (str, bytes, numbers.Number, dict, set)) or X is None:
        raise TypeError(
            f"X must be a 3-D array (n_cases, n_channels, n_timepoints) or a "
            f"list of (n_channels, n_timepoints_i) arrays, got {type(X).__name__}."
        )
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("X is empty: pass at least one case.")
        converted = []
        for index, item in enumerate(X):
            try:
                array = np.asarray(item)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"X[{index}] could not be read as an array ({exc}). Each "
                    "case must be (n_channels, n_timepoints), with the same "
                    "number of time points in every channel."
                ) from None
            if array.ndim == 1:
                array = array[None, :]
            if array.ndim != 2:
                raise ValueError(
                    f"X[{index}] has shape {array.shape}; each case must be "
                    "(n_channels, n_timepoints)."
                )
            converted.append(array.T)
        return converted
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"X could not be read as one 3-D array ({exc}). Pass cases of "
            "different lengths as a list of (n_channels, n_timepoints_i) arrays."
        ) from None
    if array.ndim != 3:
        raise ValueError(
            f"Expected a 3-D array (n_cases, n_channels, n_timepoints), got "
            f"shape {array.shape}. A list of (n_channels, n_timepoints_i) "
            "arrays is accepted for unequal lengths."
        )
    return array.transpose(0, 2, 1)


def missing_features(sequences):
    """Per feature, whether any value is missing (NaN)."""
    steps = sequences.steps
    if steps.shape[-1] == 0 or np.isfinite(float(torch.from_numpy(steps).sum())):
        return np.zeros(steps.shape[-1], dtype=bool)
    return np.isnan(steps).any(axis=0)


# Steps per chunk of the float64 statistics below: bounded temporaries for
# any input size. Out-of-core arrays are read in the same chunks (see
# sklstm._streaming), so that their statistics are bit for bit those of the
# same data in memory.
MOMENT_CHUNK_STEPS = 1 << 18


def moment_chunk_rows(n_timesteps, chunk_steps=MOMENT_CHUNK_STEPS):
    """Sequences of ``n_timesteps`` steps per chunk of :class:`FeatureMoments`."""
    return max(1, chunk_steps // max(1, n_timesteps))


class FeatureMoments:
    """Per-feature count, mean and variance of non-missing values, by chunks.

    Merges the partial moments of each chunk (Chan et al.) in float64, so
    that large inputs never need a full float64 copy; also records, per
    feature, whether any value was missing (NaN).
    """

    def __init__(self, n_features):
        self.count = np.zeros(n_features)
        self.mean = np.zeros(n_features)
        self.sum_squares = np.zeros(n_features)
        self.missing = np.zeros(n_features, dtype=bool)

    def add(self, steps):
        """Take in a chunk of steps, ``(n_steps, n_features)``."""
        n_features = len(self.mean)
        # One float64 copy of the chunk, then worked on in place: the chunk's
        # temporaries, not the data, set this pass's memory (data read from
        # disk has nothing else in memory).
        values = steps.astype(np.float64)
        absent = np.isnan(values)
        self.missing |= absent.any(axis=0)
        block_count = len(values) - absent.sum(axis=0)
        values[absent] = 0.0
        block_mean = values.sum(axis=0) / np.maximum(block_count, 1)
        values -= block_mean
        values[absent] = 0.0
        np.square(values, out=values)
        block_squares = values.sum(axis=0)
        delta = block_mean - self.mean
        total = self.count + block_count
        weight = np.divide(
            block_count, total, out=np.zeros(n_features), where=total > 0
        )
        self.mean = self.mean + delta * weight
        self.sum_squares = (
            self.sum_squares + block_squares + delta**2 * self.count * weight
        )
        self.count = total

    def result(self):
        """``(mean, variance, missing)``; a feature with no value at all gets
        mean 0 and variance 1."""
        n_features = len(self.mean)
        variance = np.divide(
            self.sum_squares,
            self.count,
            out=np.ones(n_features),
            where=self.count > 0,
        )
        return self.mean, variance, self.missing


def feature_moments(sequences, chunk_steps=MOMENT_CHUNK_STEPS):
    """Mean and variance of each feature over non-missing steps.

    In float64, through :class:`FeatureMoments` in chunks of about
    ``chunk_steps`` time steps. Also returns, per feature, whether any value
    was missing (NaN). A feature with no value at all gets mean 0 and
    variance 1.
    """
    n_features = sequences.n_features
    if n_features == 0:  # categorical features only
        return np.zeros(0), np.ones(0), np.zeros(0, dtype=bool)
    # For equal lengths, chunks hold whole sequences: the float64 sums then
    # run in the order earlier releases used, so a fit on the same data
    # learns bit for bit the same standardisation.
    if sequences.equal_lengths:
        whole = max(1, sequences.max_length)
        chunk = moment_chunk_rows(whole, chunk_steps) * whole
    else:
        chunk = chunk_steps
    moments = FeatureMoments(n_features)
    for start in range(0, len(sequences.steps), chunk):
        moments.add(sequences.steps[start : start + chunk])
    return moments.result()


# differences: the scale of the changes is measured on at most this many
# training sequences, spread evenly over them; data read from disk is read
# only that far.
DIFFERENCE_SCALE_SEQUENCES = 1000


def difference_scale(sequences, half_span, mean=None, scale=None):
    """Root mean square of each feature's centred change over ``2 *
    half_span`` steps, as :class:`~sklstm._network.RecurrentNetwork` computes
    it: on the standardised values (``mean`` and ``scale``, when given) with
    missing values at the mean, each sequence's ends repeated past them.

    A feature whose changes are all (nearly) zero gets 1, so that it is not
    magnified.
    """
    n_samples = sequences.n_samples
    if sequences.n_features == 0:  # categorical features only
        return np.ones(0)
    rows = np.unique(
        np.linspace(0, n_samples - 1, min(n_samples, DIFFERENCE_SCALE_SEQUENCES))
        .round()
        .astype(np.int64)
    )
    sample = sequences.take(rows)
    values = sample.steps.astype(np.float64)
    if mean is not None:
        values = (values - mean) / scale
    values[np.isnan(values)] = 0.0
    if sample.equal_lengths:
        batches = [values.reshape(len(rows), -1, sample.n_features)]
    else:
        bounds = zip(sample.offsets[:-1], sample.offsets[1:], strict=True)
        batches = [values[None, start:stop] for start, stop in bounds]
    squares = np.zeros(sample.n_features)
    for batch in batches:
        # Every row of a batch is full, so no mask: the network's own
        # computation, in float64.
        changes = _centred_changes(torch.from_numpy(batch), None, None, half_span)
        squares += np.square(changes.numpy()).sum(axis=(0, 1))
    rms = np.sqrt(squares / max(1, len(values)))
    rms[~(rms > 1e-8)] = 1.0
    return rms

"""Tabular sequences: columns with their own types, as people hold them.

A tabular sequence is a table per entity (an account's transactions, a
patient's visits): numeric columns with gaps, categorical columns, columns
constant over the sequence (static attributes) and, optionally, the time of
each row. This module turns such input, once, into what the network reads:

- numeric step features, float, NaN where a value is missing;
- categorical step features as integer codes (0: unknown or rare, 1:
  missing, 2...: the categories learned in ``fit``);
- static features, one row per sequence, numeric and coded;
- optionally the time elapsed since the previous step.

Inputs come as a :class:`SequenceFrame` (one long table split by sequence,
the compact form :func:`sklstm.from_long_format` returns), a list of pandas
DataFrames (one per sequence), or arrays and ragged lists whose categorical
and static features the estimator's parameters name.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

from ._data import place
from ._long_table import SequenceFrame
from ._sequences import Sequences, check_feature_counts, step_rows

# Codes reserved before the learned categories.
UNKNOWN_CODE = 0
MISSING_CODE = 1
N_RESERVED_CODES = 2


# ---------------------------------------------------------------------------
@dataclass
class Layout:
    """Which input columns are what, fixed in ``fit``.

    ``columns`` are the input's column names (DataFrames) or positions
    (arrays); the other lists hold positions into ``columns``.
    """

    columns: list
    numeric: list = field(default_factory=list)
    categorical: list = field(default_factory=list)
    static_numeric: list = field(default_factory=list)
    static_categorical: list = field(default_factory=list)
    time_deltas: bool = False
    kinds: list = field(default_factory=list)

    def to_dict(self):
        return {
            "columns": list(self.columns),
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "static_numeric": list(self.static_numeric),
            "static_categorical": list(self.static_categorical),
            "time_deltas": bool(self.time_deltas),
            "kinds": list(self.kinds),
        }

    @classmethod
    def from_dict(cls, values):
        return cls(**values)

    @property
    def categorical_columns(self):
        """Positions of every categorical column, step ones first."""
        return list(self.categorical) + list(self.static_categorical)


def is_tabular_input(X, categorical_features, static_features):
    """Whether ``X`` needs the tabular path rather than the numeric one."""
    if isinstance(X, SequenceFrame):
        return True
    if isinstance(X, (list, tuple)) and len(X) and hasattr(X[0], "dtypes"):
        return hasattr(X[0], "columns")  # a list of DataFrames
    if categorical_features not in (None, "from_dtype") or static_features:
        return True
    if isinstance(X, (list, tuple)) and len(X):
        first = np.asarray(X[0]) if not hasattr(X[0], "dtype") else X[0]
        return getattr(first.dtype, "kind", "f") in "OUS"
    kind = getattr(getattr(X, "dtype", None), "kind", "f")
    return kind in "OUS"


def _column_kind(dtype, frames=True):
    """ "categorical" or "numeric", from a column's dtype.

    Booleans are categories in a DataFrame column, as in scikit-learn's
    "from_dtype" rule, and 0/1 numbers in arrays, as they always were.
    """
    kind = getattr(dtype, "kind", "O")
    name = str(dtype)
    if name in ("category", "boolean") or name.startswith("string"):
        return "categorical"
    if kind == "b":
        return "categorical" if frames else "numeric"
    if kind in "OUS":
        return "categorical"
    if kind in "mM":
        raise ValueError(
            f"a column holds {dtype} values: give times as the time column "
            "(time_column in from_long_format, or the DataFrame's index) "
            "or convert them to numbers first."
        )
    if kind == "c":
        raise ValueError("a column holds complex values; split them first.")
    return "numeric"


def _select(spec, columns, name):
    """Positions in ``columns`` named by ``spec`` (names, ints or a mask)."""
    if spec is None:
        return []
    if isinstance(spec, (str, numbers.Integral)):
        spec = [spec]
    spec = list(spec)
    if spec and all(isinstance(s, (bool, np.bool_)) for s in spec):
        if len(spec) != len(columns):
            raise ValueError(
                f"{name} is a boolean mask of {len(spec)} entries but the "
                f"input has {len(columns)} features."
            )
        return [i for i, keep in enumerate(spec) if keep]
    positions = []
    for item in spec:
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            if not -len(columns) <= item < len(columns):
                raise ValueError(
                    f"{name} names feature {item}, but the input has "
                    f"{len(columns)} features."
                )
            positions.append(int(item) % len(columns))
        elif item in columns:
            positions.append(columns.index(item))
        else:
            raise ValueError(
                f"{name} names {item!r}, which is not a column of X; its "
                f"columns are {columns}."
            )
    return sorted(set(positions))


def resolve_layout(raw, categorical_features, static_features, time_deltas):
    """The :class:`Layout` of ``raw`` (see :func:`read_columns`) for ``fit``."""
    columns = raw.columns
    kinds = []
    for column, values in zip(columns, raw.values, strict=True):
        try:
            kinds.append(_column_kind(values.dtype, raw.frames))
        except ValueError as exc:
            raise ValueError(f"Column {column!r} of X: {exc}") from None
    if categorical_features in (None, "from_dtype"):
        categorical = [i for i, kind in enumerate(kinds) if kind == "categorical"]
    else:
        categorical = _select(categorical_features, columns, "categorical_features")
        for i, kind in enumerate(kinds):
            if kind == "categorical" and i not in categorical:
                raise ValueError(
                    f"Column {columns[i]!r} of X holds non-numeric values "
                    f"(dtype {raw.values[i].dtype}) but categorical_features "
                    "does not name it. Name it there, or encode it as "
                    "numbers; strings are never read as numbers."
                )
    static = _select(static_features, columns, "static_features")
    if time_deltas == "auto":
        time_deltas = raw.times is not None
    elif time_deltas and raw.times is None:
        raise ValueError(
            "time_deltas=True needs the time of each step: pass a "
            "SequenceFrame with a time_column (from_long_format(..., "
            "as_frame=True)) or DataFrames indexed by time."
        )
    layout = Layout(
        columns=list(columns),
        numeric=[i for i in range(len(columns)) if i not in categorical + static],
        categorical=[i for i in categorical if i not in static],
        static_numeric=[i for i in static if i not in categorical],
        static_categorical=[i for i in static if i in categorical],
        time_deltas=bool(time_deltas),
        kinds=[
            "categorical" if i in categorical else "numeric"
            for i in range(len(columns))
        ],
    )
    if not (layout.numeric or layout.categorical or layout.time_deltas):
        raise ValueError(
            "Every feature of X is static: a sequence needs at least one "
            "feature that varies over time."
        )
    return layout


# ---------------------------------------------------------------------------
@dataclass
class RawColumns:
    """The input as long columns: every step of every sequence, in order."""

    columns: list
    values: list  # one array (n_rows,) per column
    lengths: np.ndarray
    times: np.ndarray | None = None  # float seconds (or numbers), per row
    frames: bool = False  # whether the input had column names

    @property
    def offsets(self):
        return np.concatenate([[0], np.cumsum(self.lengths)])


def read_columns(X):
    """Read tabular input into :class:`RawColumns`, or raise a clear error."""
    raw = _read(X)
    for column, values in zip(raw.columns, raw.values, strict=True):
        if isinstance(values, np.ndarray) and values.dtype == object:
            _check_scalars(values, column)
    return raw


_SCALARS = (str, bytes, numbers.Number, np.generic, type(None))


def _check_scalars(values, column):
    """Categories are single values: strings, numbers, booleans or missing."""
    bad = next((v for v in values if not isinstance(v, _SCALARS)), _SCALARS)
    if bad is not _SCALARS:
        raise TypeError(
            f"Column {column!r} of X holds a {type(bad).__name__}: every "
            "value of X is a number or a category, so its argument must be a "
            "string or a number (or a boolean, or None/NaN for missing)."
        )


def _read(X):
    if _is_dask_key(X):
        raise TypeError(
            f"X is {X!r}, the name of a Dask block instead of its values. "
            "dask_ml's Incremental passes blocks of arrays with more than 2 "
            "dimensions this way (dask-ml issue 972): give Incremental a 2-D "
            "(n_samples, n_timesteps) Dask array, or pass the 3-D Dask array "
            "to the estimator's own fit and partial_fit."
        )
    if isinstance(X, SequenceFrame):
        frame = X.frame
        columns = X.columns
        times = None if X.time_column is None else _times(frame[X.time_column])
        return RawColumns(
            columns,
            [_column_values(frame[c]) for c in columns],
            X.lengths,
            times,
            frames=True,
        )
    if isinstance(X, (list, tuple)) and len(X) and hasattr(X[0], "columns"):
        return _read_frames(X)
    return _read_arrays(X)


def _is_dask_key(X):
    """Whether ``X`` looks like a Dask task key: ``(name, block, ...)``."""
    return (
        isinstance(X, tuple)
        and len(X) > 1
        and isinstance(X[0], str)
        and all(isinstance(index, numbers.Integral) for index in X[1:])
    )


def _column_values(series):
    """A pandas column as a numpy array, keeping what its dtype means."""
    name = str(series.dtype)
    if name == "category":
        return series.array  # a Categorical: codes are reused when encoding
    if name in ("bool", "boolean") or name.startswith("string") or name == "object":
        return series.to_numpy(dtype=object)
    return series.to_numpy()


def _times(values):
    """Times as float seconds (datetimes) or floats (numbers)."""
    array = np.asarray(values)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]").astype(np.int64) / 1e9
    if array.dtype.kind == "m":
        return array.astype("timedelta64[ns]").astype(np.int64) / 1e9
    if array.dtype.kind in "iuf":
        return array.astype(np.float64)
    return None


def _read_frames(frames):
    import pandas as pd

    first = frames[0]
    columns = list(first.columns)
    for index, frame in enumerate(frames):
        if not hasattr(frame, "columns"):
            raise TypeError(
                f"X[{index}] is a {type(frame).__name__}, but X[0] is a "
                "DataFrame: pass one DataFrame per sequence."
            )
        if list(frame.columns) != columns:
            missing = [c for c in columns if c not in frame.columns]
            extra = [c for c in frame.columns if c not in columns]
            raise ValueError(
                f"X[{index}] has columns {list(frame.columns)} but X[0] has "
                f"{columns} (missing {missing}, extra {extra}). Every "
                "sequence must have the same columns in the same order."
            )
        if len(frame) == 0:
            raise ValueError(
                f"Sequence X[{index}] is empty (0 time steps). Remove empty "
                "sequences or give them at least one time step."
            )
    whole = pd.concat(frames, ignore_index=False)
    lengths = np.fromiter((len(f) for f in frames), np.int64, len(frames))
    index = first.index
    has_time = isinstance(index, pd.DatetimeIndex) or (
        not isinstance(index, pd.RangeIndex) and index.dtype.kind in "iuf"
    )
    times = _times(whole.index) if has_time else None
    values = []
    for column in columns:
        # Frames whose category sets differ concatenate to object: either
        # way the values are what is encoded.
        values.append(_column_values(whole[column]))
    return RawColumns(columns, values, lengths, times, frames=True)


def _read_arrays(X):
    if isinstance(X, (list, tuple)):
        items = [
            step_rows(np.asarray(item), f"Sequence X[{index}]")
            for index, item in enumerate(X)
        ]
        check_feature_counts(items)
        lengths = np.fromiter((len(a) for a in items), np.int64, len(items))
        kinds = {a.dtype.kind for a in items}
        flat = np.concatenate(items, dtype=object if len(kinds) > 1 else None)
    else:
        array = np.asarray(X)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise ValueError(
                f"Expected a 3-D array or a list of sequences, got shape {array.shape}."
            )
        if 0 in array.shape:
            raise ValueError(
                f"X has shape {array.shape}, with {array.shape[0]} sequences, "
                f"{array.shape[1]} time steps and {array.shape[2]} features; "
                "each must be at least 1."
            )
        lengths = np.full(array.shape[0], array.shape[1], dtype=np.int64)
        flat = array.reshape(-1, array.shape[2])
    columns = list(range(flat.shape[1]))
    values = []
    for column in columns:
        values.append(_narrowed(flat[:, column]))
    return RawColumns(columns, values, lengths, None, frames=False)


def _narrowed(values):
    """An object column of numbers only becomes numeric; strings stay."""
    if values.dtype != object:
        return values
    # Booleans count as numbers here: in arrays they are 0/1, as always.
    if all(isinstance(v, (numbers.Real, np.bool_)) for v in values[:1000]):
        try:
            return values.astype(np.float64)
        except (TypeError, ValueError):
            return values
    return values


# ---------------------------------------------------------------------------
def embedding_size(n_codes):
    """Embedding width for a feature with ``n_codes`` codes.

    Grows with the cardinality but slower than it (``1.6 * n**0.56``, the
    rule fastai uses for tabular embeddings), between 2 and 8: every
    embedding column widens the recurrent layer's input, whose cost each
    step pays, and on the transactions and character examples 8 dimensions
    did as well as 16 within the seeds' spread.
    """
    return int(min(8, max(2, round(1.6 * n_codes**0.56))))


def learn_categories(values, min_frequency):
    """The categories of one column seen at least ``min_frequency`` times."""
    try:
        import pandas as pd

        if hasattr(values, "categories"):
            # A pandas Categorical: count its codes, not a million objects.
            counts = pd.Series(values).value_counts(sort=False, dropna=True)
        else:
            missing = _missing(values)
            present = np.asarray(values, dtype=object)
            if missing.any():
                present = present[~missing]
            counts = pd.Series(present).value_counts(sort=False)
        frequent = counts.index[counts.to_numpy() >= min_frequency].to_list()
    except ImportError:  # pragma: no cover - pandas ships with scikit-learn
        present = np.asarray(values)[~_missing(values)]
        uniques, counts = np.unique(present, return_counts=True)
        frequent = uniques[counts >= min_frequency].tolist()
    return np.array(_sorted_categories(frequent), dtype=object)


def _sorted_categories(values):
    """Categories as plain Python values, sorted (by type first if mixed)."""
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def learn_and_encode(values, min_frequency):
    """:func:`learn_categories` and :func:`encode` in one pass, for ``fit``.

    One hash pass (``pandas.factorize``) gives each row the index of its
    value among the distinct ones; counting those indices finds the
    frequent categories, and a small lookup turns indices into codes.
    """
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas ships with scikit-learn
        categories = learn_categories(values, min_frequency)
        return categories, encode(values, categories)
    indices, distinct = pd.factorize(values, use_na_sentinel=True)
    counts = np.bincount(indices[indices >= 0], minlength=len(distinct))
    kept = np.flatnonzero(counts >= min_frequency)
    kept_values = list(np.asarray(distinct, dtype=object)[kept])
    categories = _sorted_categories(kept_values)
    rank = {value: position for position, value in enumerate(categories)}
    # The last entry serves index -1, pandas' mark of a missing value.
    lookup = np.full(len(distinct) + 1, UNKNOWN_CODE, dtype=np.int64)
    for index, value in zip(kept, kept_values, strict=True):
        key = value.item() if isinstance(value, np.generic) else value
        lookup[index] = rank[key] + N_RESERVED_CODES
    lookup[-1] = MISSING_CODE
    return np.array(categories, dtype=object), lookup[indices]


def _missing(values):
    if isinstance(values, np.ndarray) and values.dtype.kind in "iub":
        return np.zeros(len(values), bool)
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return np.isnan(values)
    try:
        import pandas as pd

        return np.asarray(pd.isna(values), dtype=bool)
    except ImportError:  # pragma: no cover
        return np.array([v is None or v != v for v in values], dtype=bool)


def encode(values, categories):
    """Integer codes of ``values`` given the fitted ``categories``."""
    missing = _missing(values)
    try:
        import pandas as pd

        positions = pd.Index(list(categories), dtype=object).get_indexer(values)
        codes = positions.astype(np.int64) + N_RESERVED_CODES
        codes[positions < 0] = UNKNOWN_CODE
    except (ImportError, TypeError, ValueError):
        lookup = {value: code for code, value in enumerate(categories)}
        codes = np.fromiter(
            (lookup.get(v, -N_RESERVED_CODES) for v in values), np.int64, len(values)
        )
        codes += N_RESERVED_CODES
    codes[missing] = MISSING_CODE
    return codes


# ---------------------------------------------------------------------------
def _as_float(values, column):
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"Column {column!r} of X was numeric in fit but holds non-numeric "
            "values now. Pass the same kind of values as during fit."
        ) from None
    if np.isinf(array).any():
        raise ValueError(
            f"Column {column!r} of X contains infinity. Clip or rescale the "
            "data first (NaN is allowed: a missing value)."
        )
    return array


def static_rows(values, lengths, column):
    """The per-sequence value of a static column; error if it varies."""
    starts = np.cumsum(lengths) - lengths
    first = values[starts]
    repeated = np.repeat(first, lengths)
    missing = _missing(values)
    first_missing = np.repeat(missing[starts], lengths)
    with np.errstate(invalid="ignore"):
        differs = (missing != first_missing) | (
            ~missing & ~first_missing & (np.asarray(values != repeated, dtype=bool))
        )
    if differs.any():
        row = int(np.argmax(differs))
        sequence = int(np.searchsorted(np.cumsum(lengths), row, side="right"))
        raise ValueError(
            f"static_features names {column!r}, but it varies within sequence "
            f"{sequence} (X[{sequence}]). A static feature must be constant "
            "within each sequence; leave it out of static_features."
        )
    return first


def time_deltas_of(times, lengths):
    """Time since the previous step, per row; 0 at each sequence's start.

    Compressed by ``log1p`` so that gaps of seconds and of months stay on
    comparable scales.
    """
    gaps = np.diff(times, prepend=times[:1])
    starts = np.cumsum(lengths) - lengths
    gaps[starts] = 0.0
    return np.log1p(np.abs(gaps)) * np.sign(gaps)


def check_columns(estimator_name, layout, raw):
    """Columns at predict must be the fitted ones, with the same kinds."""
    if list(raw.columns) != list(layout.columns):
        missing = [c for c in layout.columns if c not in raw.columns]
        unknown = [c for c in raw.columns if c not in layout.columns]
        raise ValueError(
            f"X has columns {list(raw.columns)}, but {estimator_name} was "
            f"fitted with {list(layout.columns)} (unknown: {unknown}, "
            f"missing: {missing}). Pass the columns seen during fit, in order."
        )
    for column, kind, values in zip(raw.columns, layout.kinds, raw.values, strict=True):
        now = _column_kind(values.dtype, raw.frames)
        if kind == "numeric" and now == "categorical":
            raise ValueError(
                f"Column {column!r} of X has dtype {values.dtype} now but was "
                "numeric during fit. Pass the same dtypes as during fit."
            )


def to_tabular_sequences(
    X,
    layout,
    categories,
    *,
    dtype,
    min_frequency=None,
    estimator_name="estimator",
    raw=None,
):
    """Tabular input as :class:`~sklstm._sequences.Sequences`.

    In ``fit`` pass ``categories=None`` and a ``min_frequency``: the
    categories are learned and returned; afterwards pass the fitted ones.
    ``raw`` is ``X`` already read by :func:`read_columns`, if it was.
    Returns ``(sequences, categories)``.
    """
    if raw is None:
        raw = read_columns(X)
    check_columns(estimator_name, layout, raw)
    learned = {}
    if categories is None:
        categories = []
        for i in layout.categorical_columns:
            if i in layout.categorical:
                column_categories, learned[i] = learn_and_encode(
                    raw.values[i], min_frequency
                )
            else:
                column_categories = learn_categories(raw.values[i], min_frequency)
            categories.append(column_categories)
    columns = layout.columns
    lengths = raw.lengths
    numeric = [_as_float(raw.values[i], columns[i]) for i in layout.numeric]
    if layout.time_deltas:
        if raw.times is None:
            raise ValueError(
                "This estimator was fitted with the time between steps "
                "(time_deltas), but X carries no times: pass a SequenceFrame "
                "with its time_column or DataFrames indexed by time."
            )
        numeric.append(time_deltas_of(raw.times, lengths))
    n_rows = int(lengths.sum())
    step_values = (
        np.stack(numeric, axis=1) if numeric else np.zeros((n_rows, 0))
    ).astype(dtype)
    fitted = dict(zip(layout.categorical_columns, categories, strict=True))
    codes = None
    if layout.categorical:
        codes = np.stack(
            [
                learned[i] if i in learned else encode(raw.values[i], fitted[i])
                for i in layout.categorical
            ],
            axis=1,
        )
    static = None
    if layout.static_numeric:
        static = np.stack(
            [
                _as_float(static_rows(raw.values[i], lengths, columns[i]), columns[i])
                for i in layout.static_numeric
            ],
            axis=1,
        ).astype(dtype)
    static_codes = None
    if layout.static_categorical:
        static_codes = np.stack(
            [
                encode(static_rows(raw.values[i], lengths, columns[i]), fitted[i])
                for i in layout.static_categorical
            ],
            axis=1,
        )
    sequences = Sequences(
        step_values,
        lengths,
        ragged=not isinstance(X, np.ndarray),
        codes=codes,
        static=static,
        static_codes=static_codes,
        n_columns=len(columns),
        feature_names=(
            np.array(columns, dtype=object)
            if raw.frames and all(isinstance(c, str) for c in columns)
            else None
        ),
    )
    return sequences, categories


def tabular_tensors(sequences, device=None):
    """The codes and static features of tabular sequences, as tensors.

    Placed on ``device`` (see :func:`sklstm._data.place`) when given.
    """
    tensors = {}
    for name in ("codes", "static", "static_codes"):
        values = getattr(sequences, name)
        if values is not None:
            tensor = torch.from_numpy(np.ascontiguousarray(values))
            tensors[name] = tensor if device is None else place(tensor, device)
    return tensors


def tabular_network_arguments(sequences, layout, categories, *, embedding_width):
    """The network's arguments for categorical and static features, if any.

    ``embedding_width`` is the estimator's ``embedding_size``: an int, or
    "auto" for :func:`embedding_size`'s rule.
    """
    if layout is None:
        return {}
    layout = Layout.from_dict(layout)
    sizes = [len(c) + N_RESERVED_CODES for c in categories]
    step_sizes = sizes[: len(layout.categorical)]
    static_sizes = sizes[len(layout.categorical) :]

    def widths(codes):
        if embedding_width == "auto":
            return tuple(embedding_size(n) for n in codes)
        return (embedding_width,) * len(codes)

    arguments = dict(
        categorical_sizes=tuple(step_sizes),
        embedding_sizes=widths(step_sizes),
        static_sizes=tuple(static_sizes),
        static_embedding_sizes=widths(static_sizes),
    )
    if sequences.static is not None:
        with np.errstate(all="ignore"):
            values = sequences.static.astype(np.float64)
            mean = np.nanmean(values, axis=0)
            scale = np.nanstd(values, axis=0)
        # A static feature missing everywhere, or constant, is centred only.
        mean = np.where(np.isfinite(mean), mean, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-8), scale, 1.0)
        arguments.update(
            static_numeric=values.shape[1],
            static_mean=torch.as_tensor(mean),
            static_scale=torch.as_tensor(scale),
        )
    return arguments


__all__ = [
    "Layout",
    "RawColumns",
    "embedding_size",
    "encode",
    "learn_categories",
    "read_columns",
    "resolve_layout",
    "static_rows",
    "time_deltas_of",
]

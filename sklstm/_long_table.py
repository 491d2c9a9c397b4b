"""Long tables: one row per (sequence, step), split by sequence.

:class:`SequenceFrame` holds such a table with each sequence's rows
contiguous, and :func:`from_long_format` builds it (or plain arrays) from a
table as a database returns it.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class SequenceFrame:
    """Sequences held as one long table: rows of a sequence are contiguous.

    The compact form of a long table that scikit-learn's splitters and
    ``_safe_indexing`` split by sequence, not by row: its length and
    ``shape[0]`` count sequences, and indexing with integers, an index array,
    a boolean mask or a slice selects sequences. Build it with
    :func:`sklstm.from_long_format` (``as_frame=True``).

    Parameters
    ----------
    frame : pandas.DataFrame
        The feature columns (and the time column, when given), with the rows
        of each sequence contiguous and in time order.
    lengths : array-like of int
        Rows of each sequence, in order.
    ids : array-like, default=None
        The id of each sequence.
    time_column : str, default=None
        Column of ``frame`` holding each row's time (datetime or numeric).
        It is not a feature; the estimators can derive from it the time
        elapsed since the previous step (``time_deltas``).

    Attributes
    ----------
    offsets : ndarray of shape (n_sequences + 1,)
        Where each sequence starts in ``frame``; the last entry is its length.
    """

    def __init__(self, frame, lengths, ids=None, time_column=None):
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.ndim != 1 or (lengths < 1).any():
            raise ValueError("lengths must be a 1-D array of positive ints.")
        if int(lengths.sum()) != len(frame):
            raise ValueError(
                f"lengths add up to {int(lengths.sum())} rows but the frame "
                f"has {len(frame)}."
            )
        if time_column is not None and time_column not in frame.columns:
            raise ValueError(f"time_column {time_column!r} is not in the frame.")
        self.frame = frame
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.ids = None if ids is None else np.asarray(ids)
        self.time_column = time_column

    @property
    def shape(self):
        return (len(self.lengths),)

    def __len__(self):
        return len(self.lengths)

    @property
    def columns(self):
        """The feature columns (the time column left out)."""
        return [c for c in self.frame.columns if c != self.time_column]

    def __getitem__(self, key):
        if isinstance(key, numbers.Integral):
            start, stop = self.offsets[key], self.offsets[key + 1]
            return self.frame.iloc[start:stop]
        index = np.arange(len(self))[key]
        lengths = self.lengths[index]
        starts = self.offsets[:-1][index]
        rows = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
            int(lengths.sum())
        )
        return SequenceFrame(
            self.frame.iloc[rows].reset_index(drop=True),
            lengths,
            None if self.ids is None else self.ids[index],
            self.time_column,
        )

    def __iter__(self):
        for position in range(len(self)):
            yield self[position]

    def to_frames(self):
        """One DataFrame per sequence, indexed by the time column if any."""
        frames = list(self)
        if self.time_column is None:
            return [frame.reset_index(drop=True) for frame in frames]
        return [frame.set_index(self.time_column) for frame in frames]

    def __repr__(self):
        return (
            f"SequenceFrame({len(self)} sequences, {len(self.frame)} rows, "
            f"columns={self.columns})"
        )


def from_long_format(
    frame: pd.DataFrame,
    *,
    id_column: Hashable,
    time_column: Hashable,
    feature_columns: Hashable | Sequence[Hashable] | None = None,
    as_frame: bool = False,
) -> tuple[list[np.ndarray] | SequenceFrame, np.ndarray]:
    """Split a long-format DataFrame into one sequence per id.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per (id, time step).
    id_column : str
        Column naming the sequence each row belongs to.
    time_column : str
        Column used to order the steps within a sequence.
    feature_columns : list of str, default=None
        Columns holding the values; all other columns when None.
    as_frame : bool, default=False
        False: numeric feature columns as a list of arrays. True: a
        :class:`~sklstm.SequenceFrame`, the compact form that keeps every
        column's dtype (categorical, string, boolean, numeric with missing
        values) and the time column, from which the estimators can derive
        the time between steps; ``list(sequence_frame)`` or its
        ``to_frames()`` gives one DataFrame per sequence.

    Returns
    -------
    sequences : list of ndarray of shape (n_timesteps_i, n_features), or
        SequenceFrame
        In the order the ids are first seen in ``frame``.
    ids : ndarray
        The id of each sequence.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklstm import from_long_format
    >>> frame = pd.DataFrame({"id": [1, 1, 2], "t": [0, 1, 0], "v": [.5, .6, .7]})
    >>> sequences, ids = from_long_format(frame, id_column="id", time_column="t")
    >>> [s.shape for s in sequences], ids.tolist()
    ([(2, 1), (1, 1)], [1, 2])
    >>> frame["shop"] = ["a", "b", "a"]
    >>> sequences, ids = from_long_format(
    ...     frame, id_column="id", time_column="t", as_frame=True
    ... )
    >>> sequences
    SequenceFrame(2 sequences, 3 rows, columns=['v', 'shop'])
    """
    import pandas as pd

    if not hasattr(frame, "groupby"):
        raise TypeError(
            f"frame must be a pandas DataFrame, got {type(frame).__name__}."
        )
    for column in (id_column, time_column):
        if column not in frame.columns:
            raise ValueError(
                f"Column {column!r} is not in the DataFrame; its columns are "
                f"{list(frame.columns)}."
            )
    if feature_columns is None:
        feature_columns = [
            c for c in frame.columns if c not in (id_column, time_column)
        ]
    elif isinstance(feature_columns, str) or not hasattr(feature_columns, "__iter__"):
        feature_columns = [feature_columns]
    feature_columns = list(feature_columns)
    try:
        missing = [c for c in feature_columns if c not in frame.columns]
    except TypeError:
        raise TypeError(
            f"feature_columns={feature_columns!r} must be a list of column names."
        ) from None
    if missing or not feature_columns:
        raise ValueError(
            f"feature_columns {missing or feature_columns} are missing or "
            f"empty; the DataFrame has columns {list(frame.columns)}."
        )
    _check_long_frame(
        frame, id_column, time_column, feature_columns, numeric_only=not as_frame
    )
    # One sort, by the rank of each id's first appearance and then by time:
    # sequences come out in the order their ids are first seen.
    rank, ids = pd.factorize(frame[id_column], sort=False)
    keys = pd.DataFrame({"rank": rank, "time": frame[time_column].to_numpy()})
    order = keys.sort_values(["rank", "time"], kind="stable").index.to_numpy()
    lengths = np.bincount(rank, minlength=len(ids))
    ids = np.asarray(ids)
    if as_frame:
        ordered = frame[feature_columns + [time_column]].take(order)
        return (
            SequenceFrame(
                ordered.reset_index(drop=True), lengths, ids, time_column=time_column
            ),
            ids,
        )
    values = frame[feature_columns].to_numpy()[order]
    return np.split(values, np.cumsum(lengths)[:-1]), ids


def _check_long_frame(frame, id_column, time_column, feature_columns, numeric_only):
    """Checks whose failure would otherwise give wrong or unordered sequences."""
    if len(frame) == 0:
        raise ValueError("frame has no rows: there are no sequences to build.")
    for column in (id_column, time_column):
        if frame[column].isna().any():
            raise ValueError(
                f"Column {column!r} has {int(frame[column].isna().sum())} "
                "missing values; every row needs a sequence id and a time "
                "to be placed. Drop or fill those rows first."
            )
    non_numeric = [
        column
        for column in feature_columns
        if getattr(frame[column].dtype, "kind", "O") not in "biuf"
    ]
    if non_numeric and numeric_only:
        raise ValueError(
            f"feature_columns {non_numeric} are not numeric. Pass "
            "as_frame=True to keep them as categorical features (the "
            "estimators embed them), or leave them out of feature_columns."
        )
    duplicated = frame.duplicated([id_column, time_column])
    if duplicated.any():
        first = frame.loc[duplicated, [id_column, time_column]].iloc[0].tolist()
        raise ValueError(
            f"{int(duplicated.sum())} rows repeat an ({id_column!r}, "
            f"{time_column!r}) pair, e.g. {first}: the order of those steps "
            "is ambiguous. Aggregate or drop duplicate rows first."
        )


__all__ = ["SequenceFrame", "from_long_format"]

"""Data read from disk: which inputs are, their checks, and how to read them.

Two forms of ``X`` are read batch by batch, never converted whole
(:func:`is_out_of_core`):

- an out-of-core 3-D ``(n_samples, n_timesteps, n_features)`` or 2-D
  ``(n_samples, n_timesteps)`` array: a ``numpy.memmap`` (any mode; also
  what ``np.load(path, mmap_mode="r")`` returns), or any object that is not
  a numpy array but has ``shape``, ``dtype``, ``__getitem__`` and
  ``chunks``, as zarr, Dask and h5py arrays do;
- :class:`RaggedSequences`: sequences of different lengths as their steps
  back to back in such an array, plus offsets.

``X[start:stop]`` must return the rows as an array (or something
``numpy.asarray`` turns into one, such as a Dask array, which is then
computed); nothing else of the object is used. :func:`stream_sequences`
checks shape and dtype at the edge, reading no values; a source
(:class:`RowSource`, :class:`RaggedSource`) reads sequences as float
steps; :func:`scan` is ``fit``'s one pass in order, which refuses
infinities (naming the sequence) and computes the feature statistics in
the chunks the in-memory path uses, so that both learn the same
standardisation bit for bit. How training and prediction batch what they
read is :mod:`sklstm._streaming`'s.
"""

from __future__ import annotations

import mmap
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from ._sequences import (
    MOMENT_CHUNK_STEPS,
    FeatureMoments,
    Sequences,
    _check_numeric_kind,
    _to_float,
    moment_chunk_rows,
)
from ._typing import ArrayLike

# Reads in order (the statistics pass, validation, prediction) take about
# this many steps at a time, in whole sequences: the chunks of the in-memory
# statistics, so that both sum in the same order.
SCAN_STEPS = MOMENT_CHUNK_STEPS
# Data on disk may be far larger than memory: LSTMRegressor centres its
# predictions on a sample of the training sequences, and calibrates its
# intervals on one of the validation sequences, up to this many time steps
# each, read at once.
CALIBRATION_STEPS = 2**21


class RaggedSequences:
    """Sequences of different lengths as two arrays: steps and offsets.

    The on-disk form of ragged data too large for memory: ``steps`` holds
    every time step of the first sequence, then those of the second, and so
    on, without padding; sequence ``i`` is
    ``steps[offsets[i]:offsets[i + 1]]``. When ``steps`` is a
    ``numpy.memmap``, a zarr or a Dask array, the estimators read it batch
    by batch, as they read such 3-D arrays; the offsets, one integer per
    sequence, are held in memory.

    Parameters
    ----------
    steps : array-like of shape (total_steps, n_features) or (total_steps,)
        All time steps, sequence after sequence. Numbers only.
    offsets : array-like of int of shape (n_samples + 1,)
        Where each sequence starts in ``steps``, and where the last ends:
        starts at 0, increases strictly (no empty sequence), ends at
        ``total_steps``.

    Attributes
    ----------
    steps : array-like
        As given.
    offsets : ndarray of shape (n_samples + 1,), dtype int64
        A copy of ``offsets``.

    Examples
    --------
    Write the steps to a ``.npy`` file once (chunk by chunk for real data),
    then fit on it as it lies on disk:

    >>> import numpy as np
    >>> from sklstm import RaggedSequences
    >>> rng = np.random.RandomState(0)
    >>> sequences = [rng.normal(size=(n, 2)) for n in (3, 5, 4)]
    >>> offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])])
    >>> np.save("steps.npy", np.concatenate(sequences))  # doctest: +SKIP
    >>> steps = np.load("steps.npy", mmap_mode="r")  # doctest: +SKIP
    >>> X = RaggedSequences(np.concatenate(sequences), offsets)
    >>> len(X), X[1].shape
    (3, (5, 2))
    """

    def __init__(self, steps: ArrayLike, offsets: ArrayLike) -> None:
        shape = getattr(steps, "shape", None)
        if shape is None or len(shape) not in (1, 2) or not hasattr(steps, "dtype"):
            raise ValueError(
                "steps must be an array of shape (total_steps, n_features) or "
                f"(total_steps,), got {type(steps).__name__} with shape {shape}."
            )
        offsets = np.asarray(offsets)
        if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) < 2:
            raise ValueError(
                "offsets must be a 1-D array of integers, one per sequence plus "
                f"one (where the last sequence ends); got shape {offsets.shape} "
                f"and dtype {offsets.dtype}."
            )
        offsets = offsets.astype(np.int64)
        if offsets[0] != 0 or offsets[-1] != shape[0]:
            raise ValueError(
                f"offsets must start at 0 and end at the number of steps, "
                f"{shape[0]}; they go from {offsets[0]} to {offsets[-1]}."
            )
        lengths = np.diff(offsets)
        if (lengths <= 0).any():
            index = int(np.flatnonzero(lengths <= 0)[0])
            raise ValueError(
                f"Sequence X[{index}] has {lengths[index]} time steps "
                f"(offsets[{index}]={offsets[index]}, offsets[{index + 1}]="
                f"{offsets[index + 1]}): offsets must increase strictly. Remove "
                "empty sequences or give them at least one time step."
            )
        self.steps = steps
        self.offsets = offsets

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, index):
        if not isinstance(index, numbers.Integral):
            raise TypeError(
                "RaggedSequences takes one integer index and returns that "
                f"sequence, got {type(index).__name__}; for several, use a list "
                "comprehension: [X[i] for i in indices]."
            )
        index = range(len(self))[index]  # negative indices, and range checks
        start, stop = self.offsets[index], self.offsets[index + 1]
        return np.asarray(self.steps[start:stop])

    def __repr__(self):
        return (
            f"RaggedSequences({len(self)} sequences, {self.offsets[-1]} steps, "
            f"steps={type(self.steps).__name__})"
        )


def is_out_of_core(X):
    """Whether ``X`` is read batch by batch rather than whole."""
    if isinstance(X, (np.memmap, RaggedSequences)):
        return True
    if isinstance(X, np.ndarray):
        return False
    # Lazy arrays (zarr, Dask, h5py) have chunks; array-likes that numpy
    # converts cheaply (lists, DataFrames, tensors) do not.
    return all(hasattr(X, name) for name in ("shape", "dtype", "__getitem__", "chunks"))


@dataclass
class StreamedSequences(Sequences):
    """:class:`~sklstm._sequences.Sequences` whose steps stay in ``source``.

    ``steps`` is None: nothing may read the steps as one array. For equal
    lengths, ``lengths`` is a read-only broadcast view, no memory per
    sequence.
    """

    source: RowSource | RaggedSource | None = None
    # (mean, variance, missing) from scan(), once fit has read the data.
    moments: tuple | None = None

    @property
    def n_features(self):
        return self.source.n_features

    def scan(self):
        """Validate every value and compute the feature statistics."""
        if self.moments is None:
            self.moments = scan(self.source)
        return self.moments

    def take(self, rows):
        """The sequences ``rows`` (sorted), read into memory as Sequences."""
        rows = np.asarray(rows, dtype=np.int64)
        steps, lengths = read_rows(
            self.source, rows, max(1, len(rows)), check=self.moments is None
        )
        return Sequences(
            steps=steps,
            lengths=lengths.astype(np.int64),
            ragged=self.ragged,
            tabular=self.tabular,
            feature_names=self.feature_names,
            n_columns=self.n_columns,
        )

    def sample_rows(self, rows):
        """Of ``rows`` (sorted), an evenly spread subset whose steps add up
        to at most ``CALIBRATION_STEPS`` (one row at least), in order: what
        may be read into memory at once. Spread over the whole file, not
        its first rows, which in a file sorted by time hold the oldest
        sequences."""
        lengths = self.lengths[rows]
        n_rows = len(rows)
        while n_rows > 1:
            picked = np.unique(np.linspace(0, len(rows) - 1, n_rows).round())
            picked = picked.astype(np.int64)
            total = int(lengths[picked].sum())
            if total <= CALIBRATION_STEPS:
                return rows[picked]
            n_rows = min(n_rows - 1, int(n_rows * CALIBRATION_STEPS / total))
        return rows[:1]


def _checked_shape(array, name):
    """The shape of an out-of-core ``array`` as ints, its dtype numeric."""
    try:
        shape = tuple(int(size) for size in array.shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} has shape {array.shape}, with sizes that are not known yet "
            "(a Dask array whose chunk sizes are unknown). Call "
            f"{name}.compute_chunk_sizes() first."
        ) from None
    dtype = np.dtype(array.dtype)
    _check_numeric_kind(dtype, name)
    if dtype.kind not in "biuf":
        raise ValueError(
            f"{name} holds values of dtype {dtype}; an array read from disk must "
            "hold numbers (bool, int or float). Convert it first."
        )
    return shape


def stream_sequences(X, *, precision="32"):
    """Check an out-of-core ``X``'s shape and dtype, reading no values."""
    dtype = np.float64 if precision == "64" else np.float32
    if isinstance(X, RaggedSequences):
        shape = _checked_shape(X.steps, "X.steps")
        if len(shape) == 2 and shape[1] == 0:
            raise ValueError(
                "X.steps has 0 features per time step; each step must hold at "
                "least one value."
            )
        source = RaggedSource(X.steps, X.offsets, shape, dtype)
        return StreamedSequences(None, source.lengths, ragged=True, source=source)
    shape = _checked_shape(X, "X")
    if len(shape) not in (2, 3):
        raise ValueError(
            f"Expected a 2-D or 3-D array, got {len(shape)} dimensions with "
            f"shape {shape}. An array read from disk ({type(X).__name__}) must "
            "be (n_samples, n_timesteps, n_features) or (n_samples, "
            "n_timesteps); pass sequences of different lengths as "
            "sklstm.RaggedSequences(steps, offsets)."
        )
    if shape[0] == 0:
        raise ValueError(
            f"X is empty: found 0 sequences (shape={shape}) while a minimum of "
            "1 is required. Pass at least one sequence."
        )
    n_features = shape[2] if len(shape) == 3 else 1
    if shape[1] == 0 or n_features == 0:
        raise ValueError(
            f"X has shape {shape}, with {shape[1]} time steps and {n_features} "
            "features; both must be at least 1."
        )
    source = RowSource(X, shape, dtype)
    return StreamedSequences(
        None, source.lengths, tabular=len(shape) == 2, source=source
    )


class _Source:
    """Reads sequences of an out-of-core array as float arrays of steps.

    Subclasses set ``n_samples``, ``n_features``, ``lengths`` (per
    sequence), ``total_steps`` and ``equal_lengths``, and say where each
    sequence's steps are (:meth:`step_offsets`).
    """

    def __init__(self, array, dtype):
        self.array = array
        self.dtype = dtype
        self.mapping = _shared_mapping(array)

    def _read(self, start, stop):
        """``array[start:stop]`` as a new, writeable float array."""
        part = self.array[start:stop]
        with np.errstate(over="ignore", invalid="ignore"):
            if isinstance(part, np.memmap):
                # A copy: a view would go on reading the mapping.
                values = np.array(part, dtype=self.dtype)
            else:
                # zarr and Dask have just read the values into memory.
                values = _to_float(np.asarray(part), self.dtype)
        values = np.require(values, requirements=["C", "W"])
        if self.mapping is not None and part.flags.c_contiguous:
            self._release(part)
        return values.reshape(-1, self.n_features)

    def _release(self, part):
        # Pages read through a memory map stay mapped into this process, and
        # count in its resident memory, until the kernel needs them back:
        # after one epoch that would be the whole file. Unmapping them keeps
        # resident memory at one window; they stay in the page cache, so
        # reading them again costs no disk access while memory allows.
        # Shared mappings only: a copy-on-write memmap ("c") would lose the
        # caller's changes.
        mapping, base = self.mapping
        start = part.ctypes.data - base
        page = mmap.PAGESIZE
        first = -(-start // page) * page
        last = (start + part.nbytes) // page * page
        if last > first:
            mapping.madvise(mmap.MADV_DONTNEED, first, last - first)

    def read(self, start, stop, *, check=False):
        """Sequences ``[start, stop)``: ``(steps, lengths)``, steps back to back.

        ``check`` refuses infinities, naming the first sequence holding one.
        """
        offsets = self.step_offsets(start, stop)
        steps = self.read_steps(int(offsets[0]), int(offsets[-1]))
        if check:
            self.check_finite(steps, int(offsets[0]))
        return steps, np.diff(offsets)

    def check_finite(self, steps, first_step):
        """Refuse infinities in ``steps``, read from step ``first_step`` on."""
        # NaN is a missing value, as in memory; only infinities are refused.
        if np.isfinite(float(torch.from_numpy(steps).sum())):
            return
        infinite = np.isinf(steps).any(axis=1)
        if infinite.any():
            index = self.sequence_of(first_step + int(np.flatnonzero(infinite)[0]))
            hint = " or fit with precision='64'" if steps.dtype == np.float32 else ""
            raise ValueError(
                f"X[{index}] contains infinity or a value too large for dtype "
                f"{steps.dtype}. Clip or rescale the data first{hint} (NaN is "
                "allowed: it marks a missing value)."
            )

    def step_positions(self, rows):
        """Positions of the steps of the sorted ``rows``, back to back."""
        starts = self.step_offsets_of(rows)
        lengths = self.lengths[rows]
        return concatenated_ranges(starts, lengths)


class RowSource(_Source):
    """Equal-length sequences: rows of a 3-D (or 2-D) array."""

    equal_lengths = True

    def __init__(self, array, shape, dtype):
        super().__init__(array, dtype)
        self.n_samples, self.n_timesteps = shape[0], shape[1]
        self.n_features = shape[2] if len(shape) == 3 else 1
        self.total_steps = self.n_samples * self.n_timesteps
        self.lengths = np.broadcast_to(np.int64(self.n_timesteps), (self.n_samples,))

    def step_offsets(self, start, stop):
        return np.arange(start, stop + 1, dtype=np.int64) * self.n_timesteps

    def step_offsets_of(self, rows):
        return np.asarray(rows, dtype=np.int64) * self.n_timesteps

    def read_steps(self, first, last):
        # Whole rows: the array is indexed by sequence.
        return self._read(first // self.n_timesteps, last // self.n_timesteps)

    def sequence_of(self, step):
        return step // self.n_timesteps


class RaggedSource(_Source):
    """Sequences of different lengths: :class:`RaggedSequences`."""

    def __init__(self, steps, offsets, shape, dtype):
        super().__init__(steps, dtype)
        self.offsets = offsets
        self.lengths = np.diff(offsets)
        self.n_samples = len(self.lengths)
        self.n_features = shape[1] if len(shape) == 2 else 1
        self.n_timesteps = int(self.lengths.max())
        self.total_steps = int(offsets[-1])
        self.equal_lengths = bool(self.lengths.min() == self.lengths.max())

    def step_offsets(self, start, stop):
        return self.offsets[start : stop + 1]

    def step_offsets_of(self, rows):
        return self.offsets[rows]

    def read_steps(self, first, last):
        return self._read(first, last)

    def sequence_of(self, step):
        return int(np.searchsorted(self.offsets, step, side="right")) - 1


def read_rows(source, rows, span, *, check=False):
    """The steps of the sorted ``rows`` of ``source``, and their lengths.

    Each read covers at most ``span`` consecutive sequences; ``check``
    refuses infinities as they are read.
    """
    lengths = np.ascontiguousarray(source.lengths[rows])
    steps = np.empty((int(lengths.sum()), source.n_features), source.dtype)
    filled = 0
    position = 0
    while position < len(rows):
        start = int(rows[position])
        end = position + int(np.searchsorted(rows[position:], start + span))
        stop = int(rows[end - 1]) + 1
        values, read_lengths = source.read(start, stop, check=check)
        if stop - start != end - position:  # some rows of the read only
            read_offsets = np.concatenate([[0], np.cumsum(read_lengths)])
            chosen = rows[position:end] - start
            values = values[
                concatenated_ranges(read_offsets[chosen], read_lengths[chosen])
            ]
        steps[filled : filled + len(values)] = values
        filled += len(values)
        position = end
    return steps, lengths


def concatenated_ranges(starts, lengths):
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if len(ends) else 0) + np.repeat(
        starts - (ends - lengths), lengths
    )


def _shared_mapping(array):
    """``(mmap, its address)`` under a shared ``numpy.memmap``, else None."""
    if not isinstance(array, np.memmap) or array.mode == "c":
        return None
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None:
        return None
    address = np.frombuffer(base, dtype=np.uint8).ctypes.data
    return base, address


def scan(source):
    """One pass in order: refuse infinities, return ``(mean, variance, missing)``.

    Reads the chunks the in-memory
    :func:`~sklstm._sequences.feature_moments` takes: whole sequences of
    about ``2**18`` steps for equal lengths, else ``2**18`` steps.
    """
    moments = FeatureMoments(source.n_features)
    if source.equal_lengths:
        length = int(source.lengths[0])
        chunk = moment_chunk_rows(length, SCAN_STEPS) * length
    else:
        chunk = SCAN_STEPS
    with np.errstate(over="ignore", invalid="ignore"):
        for first in range(0, source.total_steps, chunk):
            steps = source.read_steps(first, min(first + chunk, source.total_steps))
            source.check_finite(steps, first)
            moments.add(steps)
    return moments.result()


__all__ = [
    "RaggedSequences",
    "RaggedSource",
    "RowSource",
    "StreamedSequences",
    "concatenated_ranges",
    "is_out_of_core",
    "scan",
    "stream_sequences",
]

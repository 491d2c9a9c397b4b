"""Arrays that stay on disk: memory-mapped, zarr and Dask arrays, read in batches.

A 3-D ``(n_samples, n_timesteps, n_features)`` or 2-D ``(n_samples,
n_timesteps)`` array that is out of core is never converted whole. Which
arrays are (:func:`is_out_of_core`): a ``numpy.memmap`` (any mode; also what
``np.load(path, mmap_mode="r")`` returns), and any object that is not a
numpy array but has ``shape``, ``dtype``, ``__getitem__`` and ``chunks``,
as zarr, Dask and h5py arrays do. ``X[start:stop]`` must return the rows as
an array (or something ``numpy.asarray`` turns into one, such as a Dask
array, which is then computed); nothing else of the object is used.

``fit`` reads it three ways:

- once, in order, in chunks of whole sequences (:func:`scan`), to refuse
  infinities (naming the sequence) and to compute the feature statistics in
  float64, in the chunks the in-memory path uses, so that both learn the
  same standardisation bit for bit;
- every epoch, shuffled by blocks (:class:`StreamedBatches`): blocks of
  ``16 x batch_size`` consecutive sequences (fewer batches, one at least,
  where 16 would hold over 64 MiB) are read in a random order, a
  window of 4 blocks at a time, and each window's sequences are shuffled
  and cut into batches. Reads stay sequential (a block is one contiguous
  read) and memory holds one window, whatever the number of sequences. The
  batches differ from those of an in-memory fit, which shuffles all
  sequences at once, so the two fits end near, not at, the same weights;
- the validation rows (early stopping) in order, in the batches the
  in-memory path makes of them.

``predict`` reads in order, in the batches of the in-memory path, so its
outputs equal those for the same data in memory; it refuses infinities as
it reads them. Targets, weights and predictions, a few values per
sequence, stay in memory.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ._data import _even_split
from ._sequences import (
    MOMENT_CHUNK_STEPS,
    FeatureMoments,
    Sequences,
    _check_numeric_kind,
    _to_float,
    moment_chunk_rows,
)

# A training block is this many batches of consecutive sequences, read as
# one; the epoch's order permutes blocks, and sequences within a window of
# _WINDOW_BLOCKS blocks. Larger blocks read faster from disk, larger windows
# mix more; together they set the rows held in memory.
_BLOCK_BATCHES = 16
_WINDOW_BLOCKS = 4
# ...but a block holds at most this many bytes of steps (fewer batches for
# long or wide sequences), and one batch at least.
_BLOCK_BYTES = 64 << 20
# Reads in order (the statistics pass, validation, prediction) take about
# this many steps at a time, in whole sequences: the chunks of the in-memory
# statistics, so that both sum in the same order.
_SCAN_STEPS = MOMENT_CHUNK_STEPS


def is_out_of_core(X):
    """Whether ``X`` is an array to read batch by batch rather than whole."""
    if isinstance(X, np.memmap):
        return True
    if isinstance(X, np.ndarray):
        return False
    # Lazy arrays (zarr, Dask, h5py) have chunks; array-likes that numpy
    # converts cheaply (lists, DataFrames, tensors) do not.
    return all(hasattr(X, name) for name in ("shape", "dtype", "__getitem__", "chunks"))


@dataclass
class StreamedSequences(Sequences):
    """:class:`~sklstm._sequences.Sequences` whose steps stay in ``source``.

    ``steps`` is None: nothing may read the steps as one array. ``lengths``
    is a read-only broadcast view, no memory per sequence.
    """

    source: RowSource | None = None
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


def stream_sequences(X, *, precision="32"):
    """Check an out-of-core ``X``'s shape and dtype, reading no values."""
    dtype = np.float64 if precision == "64" else np.float32
    try:
        shape = tuple(int(size) for size in X.shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"X has shape {X.shape}, with sizes that are not known yet (a Dask "
            "array whose chunk sizes are unknown). Call X.compute_chunk_sizes() "
            "first."
        ) from None
    _check_numeric_kind(np.dtype(X.dtype), "X")
    if np.dtype(X.dtype).kind not in "biuf":
        raise ValueError(
            f"X holds values of dtype {X.dtype}; an array read from disk must "
            "hold numbers (bool, int or float)."
        )
    if len(shape) not in (2, 3):
        raise ValueError(
            f"Expected a 2-D or 3-D array, got {len(shape)} dimensions with "
            f"shape {shape}. An array read from disk ({type(X).__name__}) must "
            "be (n_samples, n_timesteps, n_features) or (n_samples, n_timesteps)."
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
    lengths = np.broadcast_to(np.int64(shape[1]), (shape[0],))
    return StreamedSequences(None, lengths, tabular=len(shape) == 2, source=source)


class RowSource:
    """Reads rows ``[start, stop)`` of an out-of-core array as float arrays."""

    def __init__(self, array, shape, dtype):
        self.array = array
        self.n_samples, self.n_timesteps = shape[0], shape[1]
        self.n_features = shape[2] if len(shape) == 3 else 1
        self.dtype = dtype
        self.mapping = _shared_mapping(array)

    def read(self, start, stop, *, check=False):
        """Rows ``[start, stop)`` as a new ``(n, n_timesteps, n_features)`` array.

        ``check`` refuses infinities, naming the first sequence holding one.
        """
        rows = self.array[start:stop]
        with np.errstate(over="ignore", invalid="ignore"):
            if isinstance(rows, np.memmap):
                # A copy: a view would go on reading the mapping.
                values = np.array(rows, dtype=self.dtype)
            else:
                # zarr and Dask have just read the rows into memory.
                values = _to_float(np.asarray(rows), self.dtype)
        values = np.require(values, requirements=["C", "W"])
        if self.mapping is not None and rows.flags.c_contiguous:
            self._release(rows)
        values = values.reshape(len(values), self.n_timesteps, self.n_features)
        if check:
            check_finite_rows(values, start)
        return values

    def _release(self, rows):
        # Pages read through a memory map stay mapped into this process, and
        # count in its resident memory, until the kernel needs them back:
        # after one epoch that would be the whole file. Unmapping them keeps
        # resident memory at one window; they stay in the page cache, so
        # reading them again costs no disk access while memory allows.
        # Shared mappings only: a copy-on-write memmap ("c") would lose the
        # caller's changes.
        mapping, base = self.mapping
        start = rows.ctypes.data - base
        page = mmap.PAGESIZE
        first = -(-start // page) * page
        last = (start + rows.nbytes) // page * page
        if last > first:
            mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


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


def check_finite_rows(values, start):
    """Refuse infinities in rows read from position ``start`` on."""
    # NaN is a missing value, as in memory; only infinities are refused.
    if np.isfinite(float(torch.from_numpy(values).sum())):
        return
    infinite = np.isinf(values).reshape(len(values), -1).any(axis=1)
    if infinite.any():
        index = start + int(np.flatnonzero(infinite)[0])
        hint = " or fit with precision='64'" if values.dtype == np.float32 else ""
        raise ValueError(
            f"X[{index}] contains infinity or a value too large for dtype "
            f"{values.dtype}. Clip or rescale the data first{hint} (NaN is "
            "allowed: it marks a missing value)."
        )


def scan(source):
    """One pass in order: refuse infinities, return ``(mean, variance, missing)``.

    Reads chunks of whole sequences, as many as the in-memory
    :func:`~sklstm._sequences.feature_moments` takes at once.
    """
    moments = FeatureMoments(source.n_features)
    chunk = moment_chunk_rows(source.n_timesteps, _SCAN_STEPS)
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, source.n_samples, chunk):
            values = source.read(start, min(start + chunk, source.n_samples))
            check_finite_rows(values, start)
            moments.add(values.reshape(-1, source.n_features))
    return moments.result()


class StreamedData(Dataset):
    """Like :class:`~sklstm._data.TensorData`, with the steps in a source.

    ``targets`` and ``weights`` are CPU tensors with one row per sequence
    (per step: ``(n_samples, n_timesteps, ...)``); ``rows`` (sorted, or None
    for all) selects the sequences this object stands for. ``check`` makes
    every read refuse infinities (prediction, whose data ``fit`` has not
    scanned).
    """

    equal_lengths = True

    def __init__(
        self,
        source,
        targets=None,
        weights=None,
        *,
        per_step=False,
        rows=None,
        check=False,
    ):
        self.source = source
        self.targets = targets
        self.weights = weights
        self.per_step = per_step
        self.rows = rows
        self.check = check

    @property
    def iterator(self):
        return StreamedBatches

    def __len__(self):
        return self.source.n_samples if self.rows is None else len(self.rows)

    @property
    def n_steps(self):
        return len(self) * self.source.n_timesteps

    def __getitem__(self, index):
        row = index if self.rows is None else int(self.rows[index])
        inputs, targets = self.batch(self.source.read(row, row + 1), [row])
        return {key: value[0] for key, value in inputs.items()}, (
            None if targets is None else targets[0]
        )

    def dense(self, values):
        """Values per step as ``(n, n_timesteps, ...)``, a view."""
        return values.view((-1, self.source.n_timesteps) + values.shape[1:])

    def subset(self, rows, *, weighted=True):
        """The same data restricted to ``rows``, sorted; no data is read."""
        rows = np.asarray(rows)
        if len(rows) == self.source.n_samples and self.rows is None:
            rows = None
        return StreamedData(
            self.source,
            self.targets,
            self.weights if weighted else None,
            per_step=self.per_step,
            rows=rows,
            check=self.check,
        )

    def selected(self, start, stop):
        """The rows of this object in ``[start, stop)``, as an index array."""
        if self.rows is None:
            return np.arange(start, min(stop, self.source.n_samples))
        first, last = np.searchsorted(self.rows, [start, stop])
        return self.rows[first:last]

    def read_rows(self, rows, span):
        """Steps of the sorted ``rows``, each read covering at most ``span``
        consecutive rows of the source."""
        source = self.source
        shape = (len(rows), source.n_timesteps, source.n_features)
        steps = np.empty(shape, dtype=source.dtype)
        position = 0
        while position < len(rows):
            start = int(rows[position])
            end = position + int(np.searchsorted(rows[position:], start + span))
            stop = int(rows[end - 1]) + 1
            values = source.read(start, stop, check=self.check)
            if stop - start == end - position:  # every row of the read
                steps[position:end] = values
            else:
                np.take(
                    values, rows[position:end] - start, axis=0, out=steps[position:end]
                )
            position = end
        return steps

    def batch(self, values, rows, device=None):
        """The ``(inputs, targets)`` batch of ``values`` read for ``rows``."""
        padded = torch.from_numpy(values)
        lengths = torch.full((len(values),), self.source.n_timesteps)
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        inputs = {"padded": _to(padded, device), "lengths": lengths}
        if self.weights is not None:
            inputs["weights"] = _to(self.weights[index], device)
        targets = None
        if self.targets is not None:
            targets = _to(self.targets[index], device)
        return inputs, targets


def _to(tensor, device):
    if device is None or tensor.device == device:
        return tensor
    return tensor.to(device, non_blocking=True)


class StreamedBatches:
    """Mini-batches of a :class:`StreamedData`; skorch's iterator for it.

    Takes the arguments of :class:`~sklstm._data.Batches`. Shuffled
    (training): blocks of ``16 x batch_size`` consecutive sequences (fewer
    batches where those would exceed 64 MiB) in a new random order each
    epoch, drawn from ``generator``; a window of 4 blocks
    is read at a time, its sequences shuffled and split into batches of
    equal sizes (at most ``batch_size``). In order (validation,
    prediction): the batches of :class:`~sklstm._data.Batches`, as many at
    a time as fit in a read of about 2**18 time steps (one at least).
    """

    def __init__(
        self,
        data,
        batch_size,
        *,
        shuffle=False,
        generator=None,
        device=None,
        by_length=False,
    ):
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device) if device is not None else None
        self.by_length = by_length

    @property
    def block_rows(self):
        """Consecutive sequences per block: 16 batches, fewer if large."""
        source = self.data.source
        row_bytes = (
            source.n_timesteps * source.n_features * np.dtype(source.dtype).itemsize
        )
        fitting = _BLOCK_BYTES // (row_bytes * self.batch_size)
        return min(_BLOCK_BATCHES, max(1, fitting)) * self.batch_size

    def __len__(self):
        if not self.shuffle:
            return math.ceil(len(self.data) / self.batch_size)
        n_blocks = math.ceil(self.data.source.n_samples / self.block_rows)
        count = 0
        for window in range(0, n_blocks, _WINDOW_BLOCKS):
            # Blocks in a window vary by epoch; count as if in order.
            start = window * self.block_rows
            stop = start + _WINDOW_BLOCKS * self.block_rows
            count += math.ceil(len(self.data.selected(start, stop)) / self.batch_size)
        return count

    def __iter__(self):
        for _, batch in self.with_indices():
            yield batch

    def with_indices(self):
        """Yield ``(indices, batch)``: which sequences each batch holds.

        ``indices`` is a slice for in-order batches of all sequences, else
        an index tensor, as :meth:`~sklstm._data.Batches.with_indices` gives.
        """
        if self.shuffle:
            yield from self._shuffled()
        else:
            yield from self._in_order()

    def _in_order(self):
        data = self.data
        n_samples = len(data)
        if data.rows is None:
            # Plain slices, as Batches cuts data in order.
            batches = [
                slice(start, min(start + self.batch_size, n_samples))
                for start in range(0, n_samples, self.batch_size)
            ]
        else:
            batches = _even_split(torch.from_numpy(data.rows), self.batch_size)
        # Consecutive batches are read together, up to a chunk of the
        # statistics pass at a time (one batch at least).
        per_read = max(
            1,
            moment_chunk_rows(data.source.n_timesteps, _SCAN_STEPS) // self.batch_size,
        )
        for first in range(0, len(batches), per_read):
            group = batches[first : first + per_read]
            if data.rows is None:
                start, stop = group[0].start, group[-1].stop
                values = data.source.read(start, stop, check=data.check)
                for batch in group:
                    rows = np.arange(batch.start, batch.stop)
                    yield (
                        batch,
                        data.batch(
                            values[batch.start - start : batch.stop - start],
                            rows,
                            self.device,
                        ),
                    )
                continue
            rows = torch.cat(group).numpy()
            values = data.read_rows(rows, self.batch_size * per_read)
            position = 0
            for batch in group:
                part = values[position : position + len(batch)]
                position += len(batch)
                yield batch, data.batch(part, batch.numpy(), self.device)

    def _shuffled(self):
        data = self.data
        generator = self.generator
        if generator is None:
            seed = int(torch.empty((), dtype=torch.int64).random_())
            generator = torch.Generator().manual_seed(seed)
        block_rows = self.block_rows
        n_blocks = math.ceil(data.source.n_samples / block_rows)
        order = torch.randperm(n_blocks, generator=generator).tolist()
        for first in range(0, n_blocks, _WINDOW_BLOCKS):
            # Ascending within the window: consecutive blocks read as one
            # sequential stretch of the file.
            blocks = sorted(order[first : first + _WINDOW_BLOCKS])
            rows = np.concatenate(
                [
                    data.selected(block * block_rows, (block + 1) * block_rows)
                    for block in blocks
                ]
            )
            if len(rows) == 0:
                continue
            values = data.read_rows(rows, block_rows)
            shuffled = torch.randperm(len(rows), generator=generator)
            for positions in _even_split(shuffled, self.batch_size):
                batch_rows = rows[positions.numpy()]
                yield (
                    torch.from_numpy(batch_rows),
                    data.batch(values[positions.numpy()], batch_rows, self.device),
                )


__all__ = [
    "StreamedBatches",
    "StreamedData",
    "StreamedSequences",
    "is_out_of_core",
    "scan",
    "stream_sequences",
]

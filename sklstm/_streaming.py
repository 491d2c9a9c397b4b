"""Batches of data read from disk, for training and prediction.

Data that stays on disk (see :mod:`sklstm._out_of_core`) is read by
:class:`StreamedData` and batched by :class:`StreamedBatches`, skorch's
iterator for it. ``fit`` reads the data three ways:

- once, in order (:func:`~sklstm._out_of_core.scan`), to refuse
  infinities (naming the sequence) and to compute the feature statistics in
  float64, in the chunks the in-memory path uses, so that both learn the
  same standardisation bit for bit;
- every epoch, shuffled by blocks (:class:`StreamedBatches`): blocks of
  ``16 x batch_size`` consecutive sequences (fewer batches, one at least,
  where 16 would hold over 64 MiB) are read in a random order, a window of
  4 blocks at a time; each window is batched as data in memory is
  (:class:`~sklstm._data.Batches`: shuffled, or for ragged data bucketed by
  length). Reads stay sequential (a block is one contiguous read) and
  memory holds one window, whatever the number of sequences. The batches
  differ from those of an in-memory fit, which shuffles all sequences at
  once, so the two fits end near, not at, the same weights;
- the validation rows (early stopping) in order.

``predict`` reads in order; for equal lengths in the batches of the
in-memory path, so its outputs equal those for the same data in memory. It
refuses infinities as it reads them. Targets, weights, lengths and
predictions, a few values per sequence, stay in memory.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import torch
from torch.utils.data import Dataset

from . import _out_of_core
from ._data import Batches, TensorData
from ._sequences import moment_chunk_rows

# A training block is this many batches of consecutive sequences, read as
# one; the epoch's order permutes blocks, and sequences within a window of
# _WINDOW_BLOCKS blocks. Larger blocks read faster from disk, larger windows
# mix more; together they set the rows held in memory.
_BLOCK_BATCHES = 16
_WINDOW_BLOCKS = 4
# ...but a block holds at most this many bytes of steps (fewer batches for
# long or wide sequences), and one batch at least.
_BLOCK_BYTES = 64 << 20


class StreamedData(Dataset):
    """Like :class:`~sklstm._data.TensorData`, with the steps in a source.

    ``targets`` and ``weights`` are CPU tensors laid out as
    :class:`~sklstm._data.TensorData` has them (one row per sequence, or per
    step with ``per_step``); ``rows`` (sorted, or None for all) selects the
    sequences this object stands for. :meth:`window` reads some of them into
    a :class:`~sklstm._data.TensorData`. ``check`` makes every read refuse
    infinities (prediction, whose data ``fit`` has not scanned).
    """

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
        """The class that cuts this data into batches."""
        return StreamedBatches

    @property
    def equal_lengths(self):
        return self.source.equal_lengths

    def __len__(self):
        return self.source.n_samples if self.rows is None else len(self.rows)

    @property
    def n_steps(self):
        if self.rows is None:
            return self.source.total_steps
        return int(self.source.lengths[self.rows].sum())

    # Per sequence, for placing per-step predictions of ragged data.
    @cached_property
    def lengths(self):
        return torch.from_numpy(np.array(self.source.lengths))

    @cached_property
    def starts(self):
        offsets = self.source.step_offsets(0, self.source.n_samples)
        return torch.from_numpy(np.array(offsets[:-1]))

    def __getitem__(self, index):
        row = index if self.rows is None else int(self.rows[index])
        return self.window(np.array([row]), 1)[0]

    def dense(self, values):
        """Values per step of equal-length data as ``(n, n_timesteps, ...)``."""
        return values.view((-1, self.source.n_timesteps) + values.shape[1:])

    def subset(self, rows, *, weighted=True):
        """The same data restricted to ``rows``, sorted; no data is read."""
        rows = np.asarray(rows, dtype=np.int64)
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

    def window(self, rows, span):
        """The sorted ``rows`` read into a :class:`~sklstm._data.TensorData`.

        Each read covers at most ``span`` consecutive sequences.
        """
        source = self.source
        steps, lengths = _out_of_core.read_rows(source, rows, span, check=self.check)
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        if self.per_step:
            index = torch.from_numpy(source.step_positions(rows))
        return TensorData(
            steps=torch.from_numpy(steps),
            lengths=torch.from_numpy(lengths),
            targets=None if self.targets is None else self.targets[index],
            weights=None if self.weights is None else self.weights[index],
            equal_lengths=source.equal_lengths,
            per_step=self.per_step,
        )


class StreamedBatches:
    """Mini-batches of a :class:`StreamedData`; skorch's iterator for it.

    Takes the arguments of :class:`~sklstm._data.Batches`, and batches each
    window it reads with it. Shuffled (training): blocks of ``16 x
    batch_size`` consecutive sequences (fewer batches where those would
    exceed 64 MiB) in a new random order each epoch, drawn from
    ``generator``, read 4 blocks at a time. In order (validation,
    prediction): as many batches at a time as fit in a read of about
    ``2**18`` time steps (one at least); for equal lengths and all rows,
    the batches of :class:`~sklstm._data.Batches` over the whole data.
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
            max(1, source.total_steps // source.n_samples)
            * source.n_features
            * np.dtype(source.dtype).itemsize
        )
        fitting = _BLOCK_BYTES // (row_bytes * self.batch_size)
        return min(_BLOCK_BATCHES, max(1, fitting)) * self.batch_size

    def __len__(self):
        # Windows are batched separately: a bound, exact when batch_size
        # divides each window.
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self):
        for _, batch in self.with_indices():
            yield batch

    def with_indices(self):
        """Yield ``(indices, batch)``: which sequences each batch holds.

        ``indices`` is a slice or an index tensor into all sequences, as
        :meth:`~sklstm._data.Batches.with_indices` gives.
        """
        generator = self.generator
        if self.shuffle and generator is None:
            seed = int(torch.empty((), dtype=torch.int64).random_())
            generator = torch.Generator().manual_seed(seed)
        windows = self._shuffled(generator) if self.shuffle else self._in_order()
        for rows, span in windows:
            window = self.data.window(rows, span)
            batches = Batches(
                window,
                self.batch_size,
                shuffle=self.shuffle,
                generator=generator,
                device=self.device,
                by_length=self.by_length,
            )
            contiguous = rows[-1] - rows[0] + 1 == len(rows)
            first = int(rows[0])
            row_index = torch.from_numpy(rows)
            for local, batch in batches.with_indices():
                if isinstance(local, slice) and contiguous:
                    yield slice(first + local.start, first + local.stop), batch
                elif contiguous:
                    yield local + first, batch
                else:
                    yield row_index[local], batch

    def _in_order(self):
        """``(rows, span)`` of each read, in order."""
        source = self.data.source
        mean_length = max(1, source.total_steps // source.n_samples)
        per_read = max(
            1,
            moment_chunk_rows(mean_length, _out_of_core.SCAN_STEPS) // self.batch_size,
        )
        rows_per_read = per_read * self.batch_size
        n_rows = len(self.data)
        for first in range(0, n_rows, rows_per_read):
            if self.data.rows is None:
                rows = np.arange(first, min(first + rows_per_read, n_rows))
            else:
                rows = self.data.rows[first : first + rows_per_read]
            yield rows, rows_per_read

    def _shuffled(self, generator):
        """``(rows, span)`` of each window: blocks in a random order."""
        data = self.data
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
            if len(rows):
                yield rows, block_rows


__all__ = ["StreamedBatches", "StreamedData"]

"""Batching: every sequence once per epoch, little padding for ragged data."""

import numpy as np
import torch

from sklstm._training import Batches, TensorData


def _ragged_data(n_samples=2000, seed=0):
    rng = np.random.RandomState(seed)
    lengths = np.exp(rng.uniform(np.log(10), np.log(500), n_samples)).astype(int)
    padded = torch.zeros(n_samples, lengths.max(), 1)
    return TensorData(
        padded=padded,
        lengths=torch.from_numpy(lengths),
        targets=torch.arange(n_samples),
        weights=None,
        equal_lengths=False,
    )


def test_each_sequence_appears_once_per_epoch():
    data = _ragged_data(n_samples=300)
    batches = Batches(
        data, 32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    seen = torch.cat([targets for _, _, targets, _ in batches])
    assert sorted(seen.tolist()) == list(range(300))
    assert len(batches) == 10


def test_ragged_batches_waste_little_on_padding():
    data = _ragged_data()
    batches = Batches(
        data, 32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    computed = sum(padded.shape[0] * padded.shape[1] for padded, *_ in batches)
    useful = int(data.lengths.sum())
    padded_to_longest = len(data) * int(data.lengths.max())
    assert computed < 1.1 * useful
    assert padded_to_longest > 3 * useful


def test_batches_are_cut_to_their_longest_sequence():
    data = _ragged_data(n_samples=200)
    for padded, lengths, _, _ in Batches(data, 16, shuffle=False):
        assert padded.shape[1] == int(lengths.max())


def test_shuffled_epochs_differ_and_are_reproducible():
    data = _ragged_data(n_samples=200)

    def epoch_orders(seed):
        generator = torch.Generator().manual_seed(seed)
        batches = Batches(data, 16, shuffle=True, generator=generator)
        return [torch.cat([t for _, _, t, _ in batches]).tolist() for _ in range(2)]

    first, second = epoch_orders(0)
    assert first != second
    assert epoch_orders(0) == [first, second]

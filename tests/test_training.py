"""Batching: every sequence once per epoch, little padding for ragged data."""

import numpy as np
import torch

import sklstm._base
from sklstm import LSTMClassifier, LSTMRegressor
from sklstm._data import Batches, TensorData, padded_length
from sklstm._device import prediction_rows

from .conftest import make_classification_sequences


def _ragged_data(n_samples=2000, seed=0):
    rng = np.random.RandomState(seed)
    lengths = np.exp(rng.uniform(np.log(10), np.log(500), n_samples)).astype(int)
    return TensorData(
        steps=torch.zeros(int(lengths.sum()), 1),
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
    seen = torch.cat([targets for _, targets in batches])
    assert sorted(seen.tolist()) == list(range(300))
    assert len(batches) == 10


def test_ragged_batches_waste_little_on_padding():
    data = _ragged_data()
    batches = Batches(
        data, 32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    computed = sum(
        inputs["padded"].shape[0] * inputs["padded"].shape[1] for inputs, _ in batches
    )
    useful = int(data.lengths.sum())
    padded_to_longest = len(data) * int(data.lengths.max())
    # Bucketing by length (2,000 sequences make two pools), then the grid
    # of padded_length (under 25% each).
    assert computed < 1.2 * useful
    assert padded_to_longest > 3 * useful


def test_a_small_ragged_data_set_is_cut_into_new_batches_every_epoch():
    # 50 sequences make one pool: sorted by length alone, every epoch would
    # have the same three batches, each of one length range. (Padding then
    # grows: 1.7x the steps on the lengths above, 50x apart, against 1.2x.)
    data = _ragged_data(n_samples=50)
    batches = Batches(
        data, 16, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    epochs = [{frozenset(targets.tolist()) for _, targets in batches} for _ in range(2)]
    assert epochs[0] != epochs[1]
    spans = [
        float(inputs["lengths"].max() / inputs["lengths"].min())
        for inputs, _ in batches
    ]
    # Lengths up to about 4x apart share a batch.
    assert max(spans) > 2


def test_batches_are_cut_to_their_longest_sequence_on_a_coarse_grid():
    data = _ragged_data(n_samples=200)
    for inputs, _ in Batches(data, 16, shuffle=False):
        longest = int(inputs["lengths"].max())
        assert inputs["padded"].shape[1] == padded_length(longest)
    # Prediction goes over the data once: exactly the longest.
    for inputs, _ in Batches(data, 16, by_length=True):
        assert inputs["padded"].shape[1] == int(inputs["lengths"].max())


def test_padded_lengths_are_few_and_close_to_the_longest():
    lengths = np.arange(1, 5000)
    padded = np.array([padded_length(int(n)) for n in lengths])
    assert (padded >= lengths).all()
    assert (padded < 1.25 * lengths).all()
    assert (padded[:8] == lengths[:8]).all()
    # Four sizes per octave: what lets the allocator reuse freed buffers.
    for octave in range(3, 12):
        inside = padded[(lengths > 2**octave) & (lengths <= 2 ** (octave + 1))]
        assert len(np.unique(inside)) == 4


def test_ragged_batches_hold_each_sequence_padded_with_zeros():
    # Steps are held back to back; a batch must rebuild exactly what padding
    # every sequence to the batch's (rounded) longest would give: values, per-step
    # targets and weights, all zero after each sequence's end.
    rng = np.random.RandomState(0)
    lengths = torch.from_numpy(rng.randint(1, 30, 90))
    n_steps = int(lengths.sum())
    data = TensorData(
        steps=torch.randn(n_steps, 3),
        lengths=lengths,
        targets=torch.randint(1, 4, (n_steps,)),
        weights=torch.rand(n_steps) + 0.5,
        equal_lengths=False,
        per_step=True,
        codes=torch.randint(1, 5, (n_steps, 2)),
    )
    starts = torch.cumsum(lengths, 0) - lengths
    for shuffle in (True, False):
        batches = Batches(
            data, 16, shuffle=shuffle, generator=torch.Generator().manual_seed(0)
        )
        seen = []
        for indices, (inputs, targets) in batches.with_indices():
            longest = padded_length(int(inputs["lengths"].max()))
            assert inputs["padded"].shape == (len(indices), longest, 3)
            for row, sequence in enumerate(torch.as_tensor(indices).tolist()):
                start, length = int(starts[sequence]), int(lengths[sequence])
                steps = slice(start, start + length)
                for name, batch, values in [
                    ("padded", inputs["padded"], data.steps),
                    ("codes", inputs["codes"], data.codes),
                    ("weights", inputs["weights"], data.weights),
                    ("targets", targets, data.targets),
                ]:
                    assert torch.equal(batch[row, :length], values[steps]), name
                    assert not batch[row, length:].any(), name
                seen.append(sequence)
        assert sorted(seen) == list(range(len(lengths)))


def test_prediction_batches_never_pad_short_sequences_to_a_long_one():
    rng = np.random.RandomState(0)
    lengths = np.concatenate([rng.randint(3, 40, 500), [5000]])
    rng.shuffle(lengths)
    data = TensorData(
        steps=torch.zeros(int(lengths.sum()), 1),
        lengths=torch.from_numpy(lengths),
        equal_lengths=False,
    )
    batches = Batches(data, 1024, shuffle=False, by_length=True)
    seen = []
    for indices, (inputs, _) in batches.with_indices():
        batch_lengths = inputs["lengths"]
        # Padding at most doubles a batch's work.
        assert int(batch_lengths.max()) <= 2 * int(batch_lengths.min())
        seen.extend(indices.tolist())
    assert sorted(seen) == list(range(len(lengths)))
    # Training batches keep their pools: batch_size sets their number.
    assert len(list(Batches(data, 1024, shuffle=True))) == 1


def test_shuffled_epochs_differ_and_are_reproducible():
    data = _ragged_data(n_samples=200)

    def epoch_orders(seed):
        generator = torch.Generator().manual_seed(seed)
        batches = Batches(data, 16, shuffle=True, generator=generator)
        return [torch.cat([t for _, t in batches]).tolist() for _ in range(2)]

    first, second = epoch_orders(0)
    assert first != second
    assert epoch_orders(0) == [first, second]


def _shards(data, batch_size, world_size, seed=0):
    """Each process's batches (target lists) of one data-parallel epoch."""
    shards = []
    for rank in range(world_size):
        batches = Batches(
            data,
            batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            shard=(rank, world_size),
        )
        shards.append([targets.tolist() for _, targets in batches])
        assert len(shards[-1]) == len(batches)
    return shards


def test_data_parallel_steps_are_the_single_process_batches():
    # Equal lengths: the batches of step j, one per process, together are
    # the single process's batch j at world_size times the batch size.
    X, y = make_classification_sequences(n_samples=64)
    data = TensorData(
        steps=torch.from_numpy(X.reshape(-1, X.shape[2])),
        lengths=torch.full((64,), X.shape[1]),
        targets=torch.arange(64),
    )
    shards = _shards(data, 8, 2)
    single = _shards(data, 16, 1)[0]
    assert [len(shard) for shard in shards] == [4, 4]
    assert [a + b for a, b in zip(*shards, strict=True)] == single


def test_data_parallel_shards_cover_each_sequence_once_in_equal_steps():
    data = _ragged_data(n_samples=300)
    shards = _shards(data, 16, 3)
    assert len({len(shard) for shard in shards}) == 1
    seen = [target for shard in shards for batch in shard for target in batch]
    assert sorted(seen) == list(range(300))
    assert max(len(batch) for shard in shards for batch in shard) <= 16


def test_data_parallel_shards_repeat_sequences_only_when_too_few():
    # Three sequences for four processes: each still gets a batch.
    data = _ragged_data(n_samples=3)
    shards = _shards(data, 16, 4)
    assert [len(shard) for shard in shards] == [1, 1, 1, 1]
    seen = [target for shard in shards for batch in shard for target in batch]
    assert len(seen) == 4 and set(seen) == {0, 1, 2}


def test_user_callbacks_still_hear_every_batch_and_gradient():
    from skorch.callbacks import Callback

    from sklstm import LSTMClassifier

    from .conftest import make_classification_sequences

    class Counter(Callback):
        def initialize(self):
            self.batches = 0
            self.gradients = 0
            return self

        def on_batch_end(self, net, **kwargs):
            self.batches += 1

        def on_grad_computed(self, net, named_parameters, **kwargs):
            self.gradients += sum(1 for _ in named_parameters) > 0

    X, y = make_classification_sequences(n_samples=64)
    counter = Counter()
    clf = LSTMClassifier(
        hidden_size=8, max_epochs=2, batch_size=16, callbacks=[counter], random_state=0
    ).fit(X, y)
    fitted_counter = dict(clf.net_.callbacks_)["Counter"]
    assert fitted_counter.batches == 2 * 4
    assert fitted_counter.gradients == 2 * 4


def test_gradient_clipping_bounds_the_update():
    from sklstm import LSTMClassifier

    from .conftest import make_classification_sequences

    X, y = make_classification_sequences(n_samples=32)
    moved = {}
    for clip in (1e-3, None):
        clf = LSTMClassifier(
            hidden_size=8,
            max_epochs=1,
            lr=1.0,
            optimizer="sgd",
            batch_size=32,
            random_state=0,
            gradient_clip=clip,
        )
        clf.fit(X, y)
        reference = LSTMClassifier(
            hidden_size=8,
            max_epochs=1,
            lr=0.0 + 1e-12,
            optimizer="sgd",
            batch_size=32,
            random_state=0,
        )
        reference.fit(X, y)
        change = [
            (a - b).detach().norm()
            for a, b in zip(
                clf.net_.module_.parameters(),
                reference.net_.module_.parameters(),
                strict=True,
            )
        ]
        moved[clip] = float(sum(c**2 for c in change) ** 0.5)
    assert moved[1e-3] <= 1e-3 * 1.01
    assert moved[None] > 10 * moved[1e-3]


def test_gpu_prediction_batches_grow_with_free_memory(monkeypatch):
    X, y = make_classification_sequences(n_samples=40)
    module = LSTMClassifier(hidden_size=64, max_epochs=1).fit(X, y).net_.module_
    cuda = torch.device("cuda")

    def free_gib(gib):
        monkeypatch.setattr(
            torch.cuda, "mem_get_info", lambda device=None: (int(gib * 2**30), 0)
        )

    assert prediction_rows(module, torch.device("cpu"), 100, cpu_rows=1024) == 1024
    free_gib(70)
    assert prediction_rows(module, cuda, 100, cpu_rows=1024) == 16384
    free_gib(0.01)
    assert prediction_rows(module, cuda, 100, cpu_rows=1024) == 1024
    free_gib(4)
    rows = prediction_rows(module, cuda, 100, cpu_rows=1024)
    assert 1024 < rows < 16384
    assert rows % 8 == 0
    # Twice the steps per sequence: about half the rows.
    assert abs(prediction_rows(module, cuda, 200, cpu_rows=1024) - rows / 2) <= 8


def _held_elements(data):
    return sum(value.numel() for value in vars(data).values() if torch.is_tensor(value))


def test_ragged_data_is_held_in_proportion_to_its_steps(monkeypatch):
    # One long sequence among short ones must not make every short one as
    # long: what fit and predict hold grows with the number of steps.
    held = []
    for name in ("train", "predict_outputs"):
        original = getattr(sklstm._base, name)

        def spy(net, data, *args, original=original, **kwargs):
            held.append(data)
            return original(net, data, *args, **kwargs)

        monkeypatch.setattr(sklstm._base, name, spy)
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(n, 2)).astype(np.float32) for n in rng.randint(3, 8, 150)]
    X.append(rng.normal(size=(3000, 2)).astype(np.float32))
    y = [x[:, 0] for x in X]
    n_steps = sum(len(x) for x in X)
    reg = LSTMRegressor(
        hidden_size=4, conv_filters=None, max_epochs=1, output_mode="sequence"
    ).fit(X, y)
    predicted = reg.predict(X)
    # fit, centring on its training rows, shrinking on its validation
    # split, the calibration of intervals on that split, predict
    assert len(held) == 5
    for data in held:
        # Per step: the values, a target and a weight; per sequence: a few.
        assert _held_elements(data) <= 4 * n_steps + 4 * len(X)
    # The per-step predictions returned take what the steps take, too.
    owner = predicted[0]
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    assert owner.size <= n_steps
    assert [len(p) for p in predicted] == [len(x) for x in X]

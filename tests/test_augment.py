"""time_warp: training batches re-read at random smooth speeds."""

import pickle

import numpy as np
import pytest
import torch

import sklstm._trainer
from sklstm import LSTMClassifier, LSTMRegressor, load
from sklstm._augment import time_warp

from .conftest import make_classification_sequences, make_ragged_sequences


def _ramp_batch(lengths, n_timesteps=None):
    """Each sequence's value is its step index; padding is -1."""
    n_timesteps = n_timesteps or max(lengths)
    padded = torch.full((len(lengths), n_timesteps, 1), -1.0)
    for row, length in enumerate(lengths):
        padded[row, :length, 0] = torch.arange(length, dtype=torch.float32)
    return {"padded": padded, "lengths": torch.tensor(lengths)}


def _warp(inputs, amount=0.2, seed=0):
    return time_warp(inputs, amount, torch.Generator().manual_seed(seed))


def test_warp_keeps_lengths_ends_and_padding_and_reads_forward():
    lengths = [40, 25, 2, 1]
    inputs = _ramp_batch(lengths)
    inputs["static"] = torch.ones(4, 3)
    warped = _warp(inputs)
    assert warped["lengths"] is inputs["lengths"]
    assert warped["static"] is inputs["static"]
    positions = warped["padded"][..., 0]
    for row, length in enumerate(lengths):
        read = positions[row, :length]
        # First and last steps stay; in between, steps are read in order.
        assert read[0] == 0 and read[-1] == length - 1
        assert bool((read[1:] > read[:-1]).all())
        assert bool((positions[row, length:] == -1).all())
    # It does warp: the long sequence is not read at its own steps.
    assert not torch.allclose(positions[0, :40], torch.arange(40.0))


def test_warp_depends_on_the_sequence_not_on_its_batch_padding():
    alone = _warp(_ramp_batch([30, 12]))["padded"]
    padded = _warp(_ramp_batch([30, 12], n_timesteps=50))["padded"]
    assert torch.equal(alone[0], padded[0, :30])
    assert torch.equal(alone[1, :12], padded[1, :12])
    full = _warp({"padded": _ramp_batch([30, 30])["padded"], "lengths": None})
    assert torch.equal(full["padded"], _warp(_ramp_batch([30, 30]))["padded"])


def test_warp_is_drawn_from_the_generator_only():
    inputs = _ramp_batch([30, 20])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = _warp(inputs, seed=1)["padded"]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, _warp(inputs, seed=1)["padded"])
    assert not torch.equal(first, _warp(inputs, seed=2)["padded"])


def test_warp_interpolates_numbers_and_takes_codes_and_gaps_from_the_nearer_step():
    length = 30
    positions = _warp(_ramp_batch([length]))["padded"][0, :, 0]
    before = positions.floor()
    nearer = torch.where(positions - before < 0.5, before, before + 1).long()
    # The gap goes just after a step read between two others, nearer to the
    # first: that step must be read from its known neighbour alone.
    share = positions - before
    between = torch.nonzero((share > 0.1) & (share < 0.4))[:, 0]
    gap = int(before[between[len(between) // 2]]) + 1

    values = torch.linspace(-1.0, 2.0, length) ** 2
    values[gap] = float("nan")
    codes = torch.arange(length).reshape(1, length, 1) * 10
    inputs = {
        "padded": values.reshape(1, length, 1),
        "lengths": torch.tensor([length]),
        "codes": codes,
    }
    warped = _warp(inputs)
    assert torch.equal(warped["codes"][0, :, 0], nearer * 10)

    read = warped["padded"][0, :, 0]
    clean = torch.linspace(-1.0, 2.0, length) ** 2
    expected = torch.lerp(
        clean[before.long()],
        clean[(before.long() + 1).clamp(max=length - 1)],
        positions - before,
    )
    # Only the steps read nearer to the gap are missing; a step beside it is
    # read from its other, known neighbour.
    assert torch.equal(torch.isnan(read), nearer == gap)
    touches_gap = (before.long() == gap) | (before.long() + 1 == gap)
    known = ~touches_gap
    assert torch.allclose(read[known], expected[known], atol=1e-6)
    beside = touches_gap & (nearer != gap)
    assert torch.equal(read[beside], clean[nearer[beside]])


def test_warping_is_off_by_default_and_on_when_asked():
    X, y = make_classification_sequences(n_samples=30, n_timesteps=8)
    target = X[:, -1, 0]
    assert LSTMClassifier(max_epochs=1).fit(X, y).net_.time_warp == 0
    assert LSTMRegressor(max_epochs=1).fit(X, target).net_.time_warp == 0
    clf = LSTMClassifier(max_epochs=1, time_warp=0.3).fit(X, y)
    assert clf.net_.time_warp == 0.3
    regressor = LSTMRegressor(max_epochs=1, time_warp=0.2).fit(X, target)
    assert regressor.net_.time_warp == 0.2
    clf.partial_fit(X, y)
    assert clf.net_.time_warp == 0.3


def test_warp_with_per_step_targets_is_refused_and_the_fitted_model_kept():
    X, y = make_classification_sequences(n_samples=30, n_timesteps=8)
    clf = LSTMClassifier(max_epochs=1, random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(output_mode="sequence", time_warp=0.1)
    with pytest.raises(ValueError, match="time_warp=0.1 needs output_mode='last'"):
        clf.fit(X, np.repeat(y[:, None], 8, axis=1))
    clf.set_params(output_mode="last", time_warp=0)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


@pytest.mark.parametrize("value", [-0.1, 1.5, "auto", None, True])
def test_time_warp_out_of_range_is_refused(value):
    X, y = make_classification_sequences(n_samples=20, n_timesteps=5)
    with pytest.raises((ValueError, TypeError), match="time_warp"):
        LSTMClassifier(max_epochs=1, time_warp=value).fit(X, y)


def test_only_training_batches_are_warped(monkeypatch):
    X, y = make_ragged_sequences(n_samples=40)
    calls = []

    def spy(inputs, amount, generator):
        calls.append((amount, inputs["padded"].shape[0]))
        return time_warp(inputs, amount, generator)

    monkeypatch.setattr(sklstm._trainer, "time_warp", spy)
    clf = LSTMClassifier(
        max_epochs=2,
        batch_size=16,
        early_stopping=True,
        validation_fraction=0.25,
        time_warp=0.2,
        random_state=0,
    ).fit(X, y)
    # 30 training sequences a epoch in batches of at most 16: two batches
    # and 30 rows an epoch; the 10 validation sequences are never warped.
    assert len(calls) == 4
    assert {amount for amount, _ in calls} == {0.2}
    assert sum(rows for _, rows in calls) == 60
    calls.clear()
    clf.predict(X)
    assert calls == []


def test_warped_fit_is_reproducible_and_keeps_no_generator(tmp_path):
    X, y = make_ragged_sequences(n_samples=40)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    first = LSTMClassifier(max_epochs=3, time_warp=0.2, random_state=0).fit(X, y)
    assert torch.equal(torch.get_rng_state(), state)
    again = LSTMClassifier(max_epochs=3, time_warp=0.2, random_state=0).fit(X, y)
    plain = LSTMClassifier(max_epochs=3, time_warp=0, random_state=0).fit(X, y)
    np.testing.assert_array_equal(first.predict_proba(X), again.predict_proba(X))
    assert not np.allclose(first.predict_proba(X), plain.predict_proba(X))
    assert first.net_.warp_generator is None
    restored = pickle.loads(pickle.dumps(first))
    np.testing.assert_array_equal(restored.predict_proba(X), first.predict_proba(X))
    first.save(tmp_path / "warped.sklstm")
    loaded = load(tmp_path / "warped.sklstm")
    assert loaded.time_warp == 0.2
    np.testing.assert_array_equal(loaded.predict_proba(X), first.predict_proba(X))

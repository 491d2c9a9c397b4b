"""Faults during training and prediction: divergence, interrupts, memory.

Whatever goes wrong, an estimator either keeps a complete, usable model or
none at all: never a half-fitted one, and never one that predicts NaN.
"""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback, EarlyStopping

from sklstm import LSTMClassifier, LSTMRegressor
from sklstm._network import RecurrentNetwork
from sklstm._trainer import SequenceNet

FAST = {
    "hidden_size": 4,
    "max_epochs": 3,
    "batch_size": 8,
    "random_state": 0,
    "device": "cpu",
}

_rng = np.random.RandomState(0)
X = _rng.normal(size=(24, 5, 2)).astype(np.float32)
Y = (X[:, :, 0].sum(axis=1) > 0).astype(int)


def fitted_attributes(estimator):
    return sorted(
        key for key in vars(estimator) if key.endswith("_") and not key.startswith("_")
    )


class PoisonWeights(Callback):
    """Set a weight to NaN after a given batch, as an exploding step would."""

    def __init__(self, epoch, batch):
        self.epoch = epoch
        self.batch = batch

    def on_epoch_begin(self, net, **kwargs):
        self.seen_ = 0

    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        self.seen_ += 1
        if len(net.history) == self.epoch and self.seen_ == self.batch:
            with torch.no_grad():
                next(net.module_.parameters()).view(-1)[0] = float("nan")


class Interrupt(Callback):
    """Raise KeyboardInterrupt, as Ctrl-C would, at a chosen point."""

    def __init__(self, epoch, where="epoch_end"):
        self.epoch = epoch
        self.where = where

    def on_epoch_end(self, net, **kwargs):
        if self.where == "epoch_end" and len(net.history) == self.epoch:
            raise KeyboardInterrupt

    def on_batch_end(self, net, training=False, **kwargs):
        if self.where == "batch" and training and len(net.history) == self.epoch:
            raise KeyboardInterrupt


# ---------------------------------------------------------------------------
# Divergence


@pytest.mark.parametrize("Estimator", [LSTMClassifier, LSTMRegressor])
def test_a_loss_that_explodes_but_stays_finite_is_divergence(Estimator):
    # Adam at lr=1e6 sends the loss to 1e26 without ever reaching infinity.
    y = Y if Estimator is LSTMClassifier else X[:, :, 0].sum(axis=1)
    estimator = Estimator(**{**FAST, "lr": 1e6})
    with pytest.raises(ValueError, match="Training diverged.*exploded"):
        estimator.fit(X, y)
    assert fitted_attributes(estimator) == []


def test_a_large_but_healthy_loss_is_not_divergence():
    # Targets far from those of the first fit give a large loss, not a
    # runaway optimiser: partial_fit goes on.
    y = X[:, :, 0].sum(axis=1)
    regressor = LSTMRegressor(**FAST).partial_fit(X, y)
    regressor.partial_fit(X, y * 100)
    assert regressor.n_iter_ == 2


def test_too_high_learning_rate_raises_and_keeps_nothing():
    regressor = LSTMRegressor(**{**FAST, "optimizer": "sgd", "lr": 1e10})
    with pytest.raises(ValueError, match="Training diverged.*Lower lr"):
        regressor.fit(X, X[:, :, 0].sum(axis=1))
    assert fitted_attributes(regressor) == []
    with pytest.raises(NotFittedError):
        check_is_fitted(regressor)


def test_nan_mid_training_is_caught_at_epoch_end():
    classifier = LSTMClassifier(**FAST, callbacks=[PoisonWeights(epoch=2, batch=1)])
    with pytest.raises(ValueError, match="non-finite in epoch 2.*gradient_clip"):
        classifier.fit(X, Y)
    assert fitted_attributes(classifier) == []


def test_nan_on_the_very_last_step_is_caught():
    # The epoch's loss is still finite; only the final weights are not.
    classifier = LSTMClassifier(**FAST, callbacks=[PoisonWeights(epoch=3, batch=3)])
    with pytest.raises(ValueError, match="Training diverged"):
        classifier.fit(X, Y)
    assert fitted_attributes(classifier) == []


def test_diverging_refit_keeps_the_previous_model():
    classifier = LSTMClassifier(**FAST).fit(X, Y)
    proba = classifier.predict_proba(X)
    n_iter, loss_curve = classifier.n_iter_, list(classifier.loss_curve_)
    classifier.set_params(callbacks=[PoisonWeights(epoch=1, batch=1)])
    with pytest.raises(ValueError, match="Training diverged"):
        classifier.fit(X, Y)
    np.testing.assert_array_equal(classifier.predict_proba(X), proba)
    assert classifier.n_iter_ == n_iter
    assert classifier.loss_curve_ == loss_curve


def test_diverging_warm_start_keeps_the_previous_model():
    # The net (and its callbacks) is reused by a warm start: the poison is
    # set up front to strike in the first epoch of the second fit.
    classifier = LSTMClassifier(
        **FAST, warm_start=True, callbacks=[PoisonWeights(epoch=4, batch=1)]
    ).fit(X, Y)
    proba = classifier.predict_proba(X)
    with pytest.raises(ValueError, match="non-finite in epoch 4"):
        classifier.fit(X, Y)
    np.testing.assert_array_equal(classifier.predict_proba(X), proba)
    assert classifier.n_iter_ == 3
    assert len(classifier.net_.history) == 3
    assert not classifier.net_.module_.training


def test_diverging_partial_fit_keeps_the_previous_model():
    regressor = LSTMRegressor(**FAST, callbacks=[PoisonWeights(epoch=2, batch=2)])
    y = X[:, :, 0].sum(axis=1)
    regressor.partial_fit(X, y)
    before = regressor.predict(X)
    with pytest.raises(ValueError, match="Training diverged"):
        regressor.partial_fit(X, y)
    np.testing.assert_array_equal(regressor.predict(X), before)
    assert regressor.n_iter_ == 1
    assert len(regressor.net_.history) == 1


def test_failed_fit_on_bad_data_leaves_nothing_and_keeps_previous():
    classifier = LSTMClassifier(**FAST)
    bad = X.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        classifier.fit(bad, Y)
    assert fitted_attributes(classifier) == []

    classifier.fit(X, Y)
    attributes = fitted_attributes(classifier)
    proba = classifier.predict_proba(X)
    net = classifier.net_
    for warm_start in (False, True):
        classifier.set_params(warm_start=warm_start)
        with pytest.raises(ValueError, match="infinity"):
            classifier.fit(bad, Y)
        with pytest.raises(ValueError, match="24 sequences but y has 23"):
            classifier.fit(X, Y[:-1])
    assert fitted_attributes(classifier) == attributes
    assert classifier.net_ is net
    np.testing.assert_array_equal(classifier.predict_proba(X), proba)


# ---------------------------------------------------------------------------
# Interrupts


def test_interrupt_keeps_what_was_learned():
    classifier = LSTMClassifier(
        **{**FAST, "max_epochs": 5}, callbacks=[Interrupt(3, where="batch")]
    )
    with pytest.warns(RuntimeWarning, match="interrupted after 2 epochs"):
        classifier.fit(X, Y)
    assert classifier.n_iter_ == 2
    assert len(classifier.loss_curve_) == 2
    proba = classifier.predict_proba(X)
    assert proba.shape == (24, 2)
    assert np.isfinite(proba).all()
    assert classifier.score(X, Y) >= 0


def test_interrupt_mid_epoch_drops_the_unfinished_epoch():
    regressor = LSTMRegressor(
        **{**FAST, "max_epochs": 5}, callbacks=[Interrupt(3, where="batch")]
    )
    with pytest.warns(RuntimeWarning, match="interrupted after 2 epochs"):
        regressor.fit(X, X[:, :, 0].sum(axis=1))
    assert regressor.n_iter_ == 2
    assert len(regressor.history_) == 2
    assert np.isfinite(regressor.predict(X)).all()


def test_interrupt_with_validation_mid_epoch():
    classifier = LSTMClassifier(
        **{**FAST, "max_epochs": 5},
        early_stopping=True,
        validation_fraction=0.25,
        callbacks=[Interrupt(2, where="batch")],
    )
    with pytest.warns(RuntimeWarning, match="interrupted after 1 epochs"):
        classifier.fit(X, Y)
    assert classifier.n_iter_ == 1
    assert len(classifier.validation_scores_) == 1


def test_interrupt_before_the_first_epoch_ends_propagates():
    classifier = LSTMClassifier(**FAST, callbacks=[Interrupt(1, where="batch")])
    with pytest.raises(KeyboardInterrupt):
        classifier.fit(X, Y)
    assert fitted_attributes(classifier) == []


def test_interrupt_during_warm_start_keeps_earlier_epochs():
    classifier = LSTMClassifier(
        **FAST, warm_start=True, callbacks=[Interrupt(6, where="batch")]
    )
    classifier.fit(X, Y)
    with pytest.warns(RuntimeWarning, match="interrupted after 5 epochs"):
        classifier.fit(X, Y)
    assert classifier.n_iter_ == 5
    assert np.isfinite(classifier.predict_proba(X)).all()


def test_a_callback_stopping_after_an_epoch_is_not_an_interrupt(recwarn):
    # skorch callbacks stop training by raising KeyboardInterrupt once an
    # epoch is complete (its EarlyStopping does): that is a stop, not Ctrl-C.
    classifier = LSTMClassifier(**{**FAST, "max_epochs": 5}, callbacks=[Interrupt(2)])
    classifier.fit(X, Y)
    assert classifier.n_iter_ == 2
    stopper = EarlyStopping(monitor="train_loss", patience=1, threshold=10.0)
    classifier.set_params(callbacks=[stopper]).fit(X, Y)
    assert classifier.n_iter_ < 5
    assert not [w for w in recwarn if "interrupted" in str(w.message)]


def test_early_stopping_is_not_reported_as_an_interrupt(recwarn):
    classifier = LSTMClassifier(
        **{**FAST, "max_epochs": 30},
        early_stopping=True,
        n_iter_no_change=1,
        tol=10.0,
    ).fit(X, Y)
    assert classifier.n_iter_ < 30
    assert not [w for w in recwarn if "interrupted" in str(w.message)]


# ---------------------------------------------------------------------------
# Out of memory


def _raise_oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")


def test_out_of_memory_in_training_suggests_smaller_batches(monkeypatch):
    monkeypatch.setattr(RecurrentNetwork, "forward", _raise_oom)
    classifier = LSTMClassifier(**FAST)
    with pytest.raises(MemoryError, match="Lower batch_size \\(e.g. batch_size=4"):
        classifier.fit(X, Y)
    assert fitted_attributes(classifier) == []
    # Code that catches torch's own error keeps working.
    with pytest.raises(torch.OutOfMemoryError, match="CUDA out of memory"):
        classifier.fit(X, Y)


def test_out_of_memory_with_default_parameters(monkeypatch):
    # batch_size="auto" (the default) is resolved before the advice is
    # written, and the memory of the failed batch is still released.
    released = []
    monkeypatch.setattr(RecurrentNetwork, "forward", _raise_oom)
    monkeypatch.setattr(
        "sklstm._trainer.release_cached_memory", lambda: released.append(1)
    )
    classifier = LSTMClassifier(random_state=0)
    assert classifier.batch_size == "auto"
    with pytest.raises(MemoryError, match=r"batch_size=16\). Lower batch_size"):
        classifier.fit(X, Y)
    assert released == [1]
    assert fitted_attributes(classifier) == []


def test_cpu_allocation_failure_is_reported_as_out_of_memory(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
            "allocate memory: you tried to allocate 32000000000000 bytes."
        )

    monkeypatch.setattr(RecurrentNetwork, "forward", refuse)
    with pytest.raises(MemoryError, match="batch_size"):
        LSTMRegressor(**FAST).fit(X, X[:, 0, 0])


def test_other_runtime_errors_are_not_disguised(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something else entirely")

    monkeypatch.setattr(RecurrentNetwork, "forward", broken)
    with pytest.raises(RuntimeError, match="something else entirely") as info:
        LSTMClassifier(**FAST).fit(X, Y)
    assert not isinstance(info.value, MemoryError)


def test_prediction_retries_smaller_batches_when_out_of_memory(monkeypatch):
    classifier = LSTMClassifier(**FAST).fit(X, Y)
    expected = classifier.predict_proba(X)
    forward = RecurrentNetwork.forward

    def small_batches_only(self, padded, lengths):
        if len(padded) > 8:
            _raise_oom()
        return forward(self, padded, lengths)

    monkeypatch.setattr(RecurrentNetwork, "forward", small_batches_only)
    np.testing.assert_allclose(classifier.predict_proba(X), expected, atol=1e-6)


def test_prediction_out_of_memory_even_one_at_a_time(monkeypatch):
    classifier = LSTMClassifier(**FAST).fit(X, Y)
    monkeypatch.setattr(RecurrentNetwork, "forward", _raise_oom)
    with pytest.raises(MemoryError, match="retried with smaller batches"):
        classifier.predict(X)


def test_network_too_large_to_build(monkeypatch):
    # Not a real huge hidden_size: where memory is overcommitted, that could
    # succeed lazily and bring the operating system's OOM killer instead.
    def refuse(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(SequenceNet, "initialize", refuse)
    classifier = LSTMClassifier(**FAST)
    with pytest.raises(MemoryError, match="Lower hidden_size"):
        classifier.fit(X, Y)
    assert fitted_attributes(classifier) == []


# ---------------------------------------------------------------------------
# Outputs


def test_non_finite_outputs_are_never_returned(monkeypatch):
    classifier = LSTMClassifier(**FAST).fit(X, Y)
    forward = RecurrentNetwork.forward

    def overflowing(self, padded, lengths):
        return forward(self, padded, lengths) * float("inf")

    monkeypatch.setattr(RecurrentNetwork, "forward", overflowing)
    with pytest.raises(ValueError, match="non-finite outputs"):
        classifier.predict_proba(X)

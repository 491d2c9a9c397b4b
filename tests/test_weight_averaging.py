"""weight_averaging: the fitted network holds an average of the training steps."""

import copy

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from sklstm import LSTMClassifier, LSTMRegressor

from .conftest import make_classification_sequences


class StepRecorder(Callback):
    """The weights after every training step, and at every epoch's end."""

    def on_train_begin(self, net, **kwargs):
        self.steps, self.epoch_ends, self.validations = [], [], []
        self.states = []

    def on_batch_end(self, net, batch=None, training=False, y_pred=None, **kwargs):
        if training:
            self.steps.append(_weights(net.module_))
        else:
            self.validations.append((len(self.epoch_ends), batch[0], y_pred))

    def on_epoch_end(self, net, **kwargs):
        self.epoch_ends.append(_weights(net.module_))
        self.states.append(copy.deepcopy(net.module_.state_dict()))


def _weights(module):
    return [p.detach().clone() for p in module.parameters()]


def _average(steps, decay):
    """The exponential average of ``steps``, normalised over the steps seen."""
    average = [p.clone() for p in steps[0]]
    for count, step in enumerate(steps[1:], start=2):
        weight = (1 - decay) / (1 - decay**count)
        for kept, new in zip(average, step, strict=True):
            kept.lerp_(new, weight)
    return average


# A small regressor: 4 batches per epoch of the 60 sequences below.
SMALL = dict(hidden_size=8, conv_filters=(8,), batch_size=16, random_state=0)


def _regression_data(n_samples=60):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n_samples, 10, 2)).astype(np.float32)
    return X, X[:, -3:, 0].sum(axis=1)


def _assert_weights_equal(module, expected):
    for (name, param), value in zip(module.named_parameters(), expected, strict=True):
        if name == "head.bias":
            # The regressor's fit then centres its predictions on the
            # training rows (tests/test_regressor.py), through this bias.
            continue
        torch.testing.assert_close(param.detach(), value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decay", [0.5, 0.97])
def test_fitted_network_holds_the_average_of_the_steps(decay):
    X, y = _regression_data()
    recorder = StepRecorder()
    reg = LSTMRegressor(
        **SMALL,
        max_epochs=3,
        early_stopping=False,
        weight_averaging=decay,
        callbacks=[recorder],
    ).fit(X, y)
    assert len(recorder.steps) == 3 * 4
    _assert_weights_equal(reg.net_.module_, _average(recorder.steps, decay))
    # Not the last step's weights: the average is what was kept.
    kept = reg.net_.module_.parameters()
    last = recorder.steps[-1]
    assert any(
        not torch.allclose(p.detach(), q) for p, q in zip(kept, last, strict=True)
    )


def test_early_stopping_scores_and_keeps_the_average(monkeypatch):
    # The regressor's fit ends by shrinking its output layer on the
    # validation split (tests/test_regressor.py); left out here.
    monkeypatch.setattr(LSTMRegressor, "_shrink", lambda self, *args: None)
    X, y = _regression_data(n_samples=80)
    recorder = StepRecorder()
    reg = LSTMRegressor(
        **SMALL,
        max_epochs=6,
        early_stopping=True,
        n_iter_no_change=6,
        weight_averaging=0.9,
        callbacks=[recorder],
    ).fit(X, y)
    steps_per_epoch = len(recorder.steps) // reg.n_iter_
    best = int(np.argmax(reg.validation_scores_))
    averaged = _average(recorder.steps[: (best + 1) * steps_per_epoch], 0.9)
    # Each epoch ends on the average (which early stopping snapshots), and
    # the fitted network is the best epoch's.
    for epoch, weights in enumerate(recorder.epoch_ends):
        expected = _average(recorder.steps[: (epoch + 1) * steps_per_epoch], 0.9)
        for value, kept in zip(weights, expected, strict=True):
            torch.testing.assert_close(value, kept, rtol=1e-5, atol=1e-6)
    _assert_weights_equal(reg.net_.module_, averaged)
    # Each validation ran on the weights that epoch ended on.
    module = reg.net_.module_.eval()
    for epoch, inputs, outputs in recorder.validations:
        module.load_state_dict(recorder.states[epoch])
        with torch.no_grad():
            again = reg.net_.infer(inputs)
        torch.testing.assert_close(again, outputs)
    assert {epoch for epoch, _, _ in recorder.validations} == set(range(reg.n_iter_))


@pytest.mark.parametrize("early_stopping", [False, True])
def test_training_continues_from_the_trained_weights_not_the_average(
    early_stopping,
):
    # Averaging must not feed back: with and without it the optimiser takes
    # the same steps (no dropout), only what is kept differs. With a
    # validation split every epoch ends on the average, and the next must
    # train on from the optimiser's weights all the same.
    X, y = _regression_data(n_samples=80)
    options = dict(
        **SMALL,
        dropout=0.0,
        max_epochs=3,
        early_stopping=early_stopping,
        n_iter_no_change=5,
    )
    plain, averaged = StepRecorder(), StepRecorder()
    LSTMRegressor(weight_averaging=None, callbacks=[plain], **options).fit(X, y)
    LSTMRegressor(weight_averaging=0.9, callbacks=[averaged], **options).fit(X, y)
    assert len(plain.steps) == len(averaged.steps) == 3 * (4 if early_stopping else 5)
    for a, b in zip(plain.steps[-1], averaged.steps[-1], strict=True):
        torch.testing.assert_close(a, b)


def test_partial_fit_keeps_the_trained_weights():
    X, y = _regression_data()
    recorder = StepRecorder()
    reg = LSTMRegressor(
        **SMALL,
        weight_averaging=0.9,
        callbacks=[recorder],
    )
    reg.partial_fit(X, y)
    _assert_weights_equal(reg.net_.module_, recorder.steps[-1])


def test_defaults_average_the_regressor_only():
    assert LSTMRegressor().weight_averaging == 0.97
    assert LSTMClassifier().weight_averaging is None


def test_classifier_can_average_too():
    X, y = make_classification_sequences(n_samples=40)
    recorder = StepRecorder()
    clf = LSTMClassifier(
        hidden_size=8,
        conv_filters=None,
        max_epochs=2,
        batch_size=20,
        weight_averaging=0.5,
        callbacks=[recorder],
        random_state=0,
    ).fit(X, y)
    _assert_weights_equal(clf.net_.module_, _average(recorder.steps, 0.5))
    assert clf.predict(X).shape == (40,)


def test_fitted_net_keeps_no_copies_of_the_weights():
    X, y = _regression_data()
    reg = LSTMRegressor(**SMALL, max_epochs=2).fit(X, y)
    averaging = dict(reg.net_.callbacks_)["weight_averaging"]
    assert averaging.average_ is None and averaging.trained_ is None


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, "0.9"])
def test_weight_averaging_outside_0_1_is_refused(value):
    X, y = _regression_data()
    with pytest.raises((ValueError, TypeError), match="weight_averaging"):
        LSTMRegressor(weight_averaging=value, max_epochs=1).fit(X, y)

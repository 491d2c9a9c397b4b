"""Precisions: float16 training is CUDA-only; its loss scaling is exact."""

import numpy as np
import pytest
import torch

import sklstm._base
from sklstm import LSTMClassifier, LSTMRegressor

from .conftest import make_classification_sequences

FAST = dict(hidden_size=8, max_epochs=3, random_state=0, conv_filters=None)


@pytest.mark.parametrize("estimator", [LSTMClassifier, LSTMRegressor])
def test_16_mixed_on_the_cpu_is_refused_before_fitting(estimator):
    X, y = make_classification_sequences()
    model = estimator(**FAST, precision="16-mixed", device="cpu")
    with pytest.raises(ValueError, match="needs a CUDA device.*bf16-mixed"):
        model.fit(X, y if estimator is LSTMClassifier else X[:, 0, 0])
    assert not hasattr(model, "net_")


def test_loss_scaling_leaves_training_unchanged(monkeypatch):
    # On the CPU "16-mixed" computes in float32, so with the device check
    # lifted only the loss scaler differs from "32". Scaling by a power of
    # two and unscaling before the step are exact: the fits must agree. Plain
    # SGD with tight clipping makes a missed unscale (clipping scaled
    # gradients) change the result.
    monkeypatch.setattr(sklstm._base, "check_precision", lambda *args: None)
    updates = []
    update = torch.amp.GradScaler.update

    def counting_update(self, *args, **kwargs):
        updates.append(self.get_scale())
        return update(self, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "update", counting_update)
    X, y = make_classification_sequences()
    options = dict(FAST, device="cpu", optimizer="sgd", lr=0.5, gradient_clip=0.05)
    scaled = LSTMClassifier(**options, precision="16-mixed").fit(X, y)
    assert updates and updates[0] > 1  # the scaler took part in every step
    plain = LSTMClassifier(**options, precision="32").fit(X, y)
    np.testing.assert_allclose(
        scaled.predict_proba(X), plain.predict_proba(X), rtol=0, atol=1e-6
    )
    assert scaled.net_.grad_scaler is None  # nothing kept after the fit


def test_bf16_support_is_found_by_trying(monkeypatch):
    from sklstm._device import cpu_runs_bf16

    def refuse(*args, **kwargs):
        raise RuntimeError("could not create a primitive descriptor for an LSTM")

    monkeypatch.setattr(torch.nn.LSTM, "forward", refuse)
    assert cpu_runs_bf16.__wrapped__() is False


def test_bf16_on_a_cpu_without_its_kernels(monkeypatch):
    # Training is refused before it starts; a model fitted in bfloat16
    # elsewhere predicts in float32 here, with a warning.
    X, y = make_classification_sequences()
    fitted = LSTMClassifier(**FAST, device="cpu").fit(X, y)
    monkeypatch.setattr("sklstm._device.cpu_runs_bf16", lambda: False)
    model = LSTMClassifier(**FAST, precision="bf16-mixed", device="cpu")
    with pytest.raises(ValueError, match="bfloat16 recurrent kernels"):
        model.fit(X, y)
    assert not hasattr(model, "net_")
    # As the net of a model fitted in bfloat16 elsewhere and loaded here is.
    fitted.net_.precision = "bf16-mixed"
    with pytest.warns(RuntimeWarning, match="predicts in float32"):
        proba = fitted.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)

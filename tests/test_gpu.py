"""The CUDA path. Marked ``gpu``: skipped on machines without CUDA.

Run them with ``benchmarks/gpu_check.sh`` on a GPU machine.
"""

import pickle

import numpy as np
import pytest
import torch

from sklstm import LSTMClassifier, LSTMRegressor, _data, _device, _trainer

from .conftest import make_classification_sequences, make_ragged_sequences

pytestmark = pytest.mark.gpu
FAST = dict(hidden_size=32, max_epochs=3, random_state=0)


def test_auto_device_trains_on_cuda():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST).fit(X, y)
    assert clf.device_.type == "cuda"
    assert next(clf.net_.module_.parameters()).is_cuda
    assert clf.predict_proba(X).shape == (len(X), 2)


def test_data_moves_to_the_device_once(monkeypatch):
    placed = []
    original = _data.place

    def spy(array, device):
        tensor = original(array, device)
        placed.append(tensor.device.type)
        return tensor

    monkeypatch.setattr("sklstm._base.place", spy)
    X, y = make_classification_sequences()
    LSTMClassifier(**FAST, early_stopping=True).fit(X, y)
    # padded values, targets, weights: each placed once, all on the GPU
    assert placed == ["cuda"] * 3


def _ragged_per_step_targets():
    X, _ = make_ragged_sequences()
    return X, [np.cumsum(x[:, 0]) for x in X]


@pytest.mark.parametrize(
    "make_estimator, make_data",
    [
        (lambda: LSTMClassifier(**FAST), make_ragged_sequences),
        (lambda: LSTMClassifier(**FAST), make_classification_sequences),
        (
            lambda: LSTMRegressor(**FAST, output_mode="sequence"),
            _ragged_per_step_targets,
        ),
    ],
    ids=["ragged", "equal-lengths", "per-step-targets"],
)
def test_streaming_when_the_data_does_not_fit(monkeypatch, make_estimator, make_data):
    X, y = make_data()
    placed = []
    original = _data.place

    def spy(array, device):
        tensor = original(array, device)
        placed.append((tensor.device.type, tensor.is_pinned()))
        return tensor

    monkeypatch.setattr("sklstm._base.place", spy)
    monkeypatch.setattr(_data, "_RESIDENT_SHARE", 0.0)
    streamed = make_estimator().fit(X, y)
    monkeypatch.undo()
    resident = make_estimator().fit(X, y)
    # Streamed data stays in ordinary host memory: no second, pinned copy.
    assert placed and all(where == ("cpu", False) for where in placed)
    # Same batches in the same order; cuDNN's LSTM backward does not sum in
    # a fixed order, so the fits differ in float32 rounding (about 1e-5 in
    # probability). A wrong or misplaced batch would differ far more.
    predict = "predict_proba" if hasattr(streamed, "predict_proba") else "predict"
    streamed_out = getattr(streamed, predict)(X)
    resident_out = getattr(resident, predict)(X)
    if isinstance(streamed_out, list):
        streamed_out, resident_out = (
            np.concatenate(o) for o in (streamed_out, resident_out)
        )
    np.testing.assert_allclose(streamed_out, resident_out, rtol=1e-4, atol=1e-4)


def test_gpu_and_cpu_fits_agree_closely(monkeypatch):
    # Dropout masks come from each device's own generator, and cuDNN may use
    # TF32 for float32 LSTMs by default: turn both off to compare the fits.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    X, y = make_classification_sequences()
    params = dict(FAST, dropout=0.0)
    on_gpu = LSTMClassifier(**params, device="cuda").fit(X, y).predict_proba(X)
    on_cpu = LSTMClassifier(**params, device="cpu").fit(X, y).predict_proba(X)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-3)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_and_keeps_float32_weights(precision):
    X, y = make_classification_sequences(n_samples=200)
    clf = LSTMClassifier(
        hidden_size=32, max_epochs=20, precision=precision, random_state=0
    ).fit(X, y)
    assert np.isfinite(clf.loss_curve_).all()
    assert clf.score(X, y) > 0.8
    assert all(p.dtype == torch.float32 for p in clf.net_.module_.parameters())
    assert clf.net_.grad_scaler is None


def test_cuda_predicts_in_large_batches_with_the_same_results(monkeypatch):
    # With TF32 (torch's default for cuDNN), the kernels picked for different
    # batch sizes gave probabilities 1.3e-3 apart on an H100; without, 5e-8.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    X, y = make_classification_sequences(n_samples=3000)
    clf = LSTMClassifier(**FAST).fit(X, y)
    sizes = []
    original = _trainer.predict_outputs

    def spy(net, data, batch_size, transform=None):
        sizes.append(batch_size)
        return original(net, data, batch_size, transform)

    monkeypatch.setattr("sklstm._base.predict_outputs", spy)
    large = clf.predict_proba(X)
    monkeypatch.setattr(_device, "_GPU_PREDICT_ROWS", (1024, 1024))
    small = clf.predict_proba(X)
    assert sizes[0] > 1024
    assert sizes[1] == 1024
    # A row placed wrongly would differ by far more than the tolerance.
    np.testing.assert_allclose(large, small, atol=1e-4)


def test_padding_never_changes_a_prediction_on_cuda():
    X, y = make_ragged_sequences()
    clf = LSTMClassifier(**FAST, bidirectional=True, num_layers=2).fit(X, y)
    short = np.random.RandomState(1).normal(size=(4, 2)).astype(np.float32)
    long = np.random.RandomState(2).normal(size=(90, 2)).astype(np.float32)
    np.testing.assert_allclose(
        clf.predict_proba([short, long])[:1], clf.predict_proba([short]), atol=1e-5
    )


def test_pickled_gpu_model_predicts_the_same_after_loading():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(50, 10, 3))
    y = X[:, :, 0].sum(axis=1)
    reg = LSTMRegressor(**FAST, num_layers=2).fit(X, y)
    restored = pickle.loads(pickle.dumps(reg))
    # Each recurrent layer's weights are one block again, as cuDNN wants.
    for layer in restored.net_.module_.modules():
        if isinstance(layer, torch.nn.RNNBase):
            blocks = {p.untyped_storage().data_ptr() for p in layer.parameters()}
            assert len(blocks) == 1
    np.testing.assert_allclose(restored.predict(X), reg.predict(X), rtol=1e-6)


def test_cuda_kernels_are_used():
    assert torch.backends.cudnn.is_available()
    assert torch.backends.cudnn.enabled


def test_time_warp_draws_on_the_gpu(monkeypatch):
    devices = []
    original = _trainer.time_warp

    def spy(inputs, amount, generator):
        devices.append((inputs["padded"].device.type, generator.device.type))
        return original(inputs, amount, generator)

    monkeypatch.setattr(_trainer, "time_warp", spy)
    X, y = make_ragged_sequences()
    first = LSTMClassifier(**FAST, time_warp=0.2).fit(X, y)
    assert devices and set(devices) == {("cuda", "cuda")}
    again = LSTMClassifier(**FAST, time_warp=0.2).fit(X, y)
    # cuDNN's recurrent kernels may sum in another order from run to run.
    np.testing.assert_allclose(
        first.predict_proba(X), again.predict_proba(X), rtol=0, atol=1e-4
    )

"""Prediction from many threads at once gives what serial calls give.

Web servers and thread pools share one fitted estimator; prediction must not
write to shared state (module mode, generators, buffers) while doing it.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sklstm import LSTMClassifier, LSTMRegressor

from .conftest import make_classification_sequences, make_ragged_sequences

N_THREADS = 8


def _run_concurrently(calls):
    """Run every call from N_THREADS threads, all started together."""
    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def _same(left, right):
    if isinstance(left, list):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_array_equal(left, right)


def test_classifier_predict_from_eight_threads():
    X, y = make_classification_sequences(n_samples=40, n_timesteps=8)
    ragged, ragged_y = make_ragged_sequences(n_samples=30, max_length=12)
    # dropout > 0: a module left in training mode would randomise outputs.
    classifier = LSTMClassifier(
        hidden_size=8, max_epochs=2, dropout=0.5, random_state=0, device="cpu"
    ).fit(X, y)
    inputs = [X, X[:7], X[::-1], X[:1]]
    calls = []
    for data in inputs:
        calls.append(lambda data=data: classifier.predict(data))
        calls.append(lambda data=data: classifier.predict_proba(data))
    serial = [call() for call in calls]
    for _ in range(2):
        parallel = _run_concurrently(calls * 2)
        for expected, got in zip(serial * 2, parallel, strict=True):
            _same(expected, got)

    sequence_classifier = LSTMClassifier(
        hidden_size=8,
        max_epochs=1,
        output_mode="sequence",
        random_state=0,
        device="cpu",
    ).fit(
        ragged,
        [np.full(len(x), label) for x, label in zip(ragged, ragged_y, strict=True)],
    )
    calls = [
        lambda: sequence_classifier.predict_proba(ragged),
        lambda: sequence_classifier.predict(ragged[:5]),
    ] * 4
    serial = [call() for call in calls]
    for expected, got in zip(serial, _run_concurrently(calls), strict=True):
        _same(expected, got)


def test_regressor_predict_from_eight_threads():
    ragged, _ = make_ragged_sequences(n_samples=30, max_length=12)
    targets = np.array([x[:, 0].sum() for x in ragged])
    regressor = LSTMRegressor(
        hidden_size=8, max_epochs=2, random_state=0, device="cpu"
    ).fit(ragged, targets)
    calls = [lambda: regressor.predict(ragged), lambda: regressor.predict(ragged[3:9])]
    serial = [call() for call in calls]
    parallel = _run_concurrently(calls * 8)
    for expected, got in zip(serial * 8, parallel, strict=True):
        _same(expected, got)

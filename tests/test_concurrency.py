"""Work from many threads at once gives what serial calls give.

Web servers and thread pools share one fitted estimator; prediction must not
write to shared state (module mode, generators, buffers) while doing it.
Fits run in threads too (joblib's threading backend, Dask's threaded
workers): each draws only from generators of its own, so that a fit gives
the model its random_state gives when fitted alone.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize(
    "architecture",
    [dict(num_layers=2), dict(num_layers=2, bidirectional=True, cell="gru")],
    ids=repr,
)
def test_fits_in_four_threads_give_the_models_of_serial_fits(architecture):
    X, y = make_classification_sequences(n_samples=40, n_timesteps=8)
    random_states = [0, 1, 0, 2]
    start = threading.Barrier(len(random_states))

    def fit(random_state, wait=False):
        # Dropout between the recurrent layers and before the output
        # layer, shuffled batches: every kind of draw a fit makes.
        estimator = LSTMClassifier(
            hidden_size=8,
            dropout=0.3,
            max_epochs=3,
            batch_size=8,
            random_state=random_state,
            device="cpu",
            **architecture,
        )
        if wait:
            start.wait()  # all four fits draw at the same time
        return estimator.fit(X, y)

    serial = [fit(random_state) for random_state in random_states]
    with ThreadPoolExecutor(max_workers=len(random_states)) as pool:
        threaded = list(pool.map(lambda seed: fit(seed, wait=True), random_states))
    for expected, got in zip(serial, threaded, strict=True):
        expected_weights = expected.net_.module_.state_dict()
        got_weights = got.net_.module_.state_dict()
        for name, tensor in expected_weights.items():
            assert torch.equal(got_weights[name], tensor), name
        assert expected.loss_curve_ == got.loss_curve_
        np.testing.assert_array_equal(got.predict_proba(X), expected.predict_proba(X))
    # Equal random_states give equal models, different ones different models.
    np.testing.assert_array_equal(
        threaded[2].predict_proba(X), threaded[0].predict_proba(X)
    )
    assert not np.array_equal(
        threaded[1].predict_proba(X), threaded[0].predict_proba(X)
    )

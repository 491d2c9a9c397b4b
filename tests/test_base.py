"""Shared estimator logic: statistics over valid steps, parameters."""

import numpy as np
import pytest

from sklstm import LSTMClassifier
from sklstm._sequences import feature_moments, to_sequences

from .conftest import make_classification_sequences, make_ragged_sequences


@pytest.mark.parametrize("chunk_steps", [1, 7, 1 << 20])
def test_feature_moments_ignore_padding_and_do_not_depend_on_chunking(chunk_steps):
    X, _ = make_ragged_sequences(n_samples=25)
    valid = np.concatenate(X).astype(np.float64)
    mean, var, missing = feature_moments(to_sequences(X), chunk_steps=chunk_steps)
    np.testing.assert_allclose(mean, valid.mean(axis=0))
    np.testing.assert_allclose(var, valid.var(axis=0))
    assert not missing.any()


@pytest.mark.parametrize("chunk_steps", [1, 7, 1 << 20])
def test_feature_moments_skip_missing_values(chunk_steps):
    X, _ = make_ragged_sequences(n_samples=25)
    X = [x.copy() for x in X]
    for x in X[::3]:
        x[0, 1] = np.nan
    valid = np.concatenate(X).astype(np.float64)
    mean, var, missing = feature_moments(to_sequences(X), chunk_steps=chunk_steps)
    np.testing.assert_allclose(mean, np.nanmean(valid, axis=0))
    np.testing.assert_allclose(var, np.nanvar(valid, axis=0))
    assert missing.tolist() == [False, True]


def test_standardisation_is_learned_on_valid_steps_only():
    X, y = make_ragged_sequences(n_samples=30)
    shifted = [x * 3 + 100 for x in X]
    clf = LSTMClassifier(max_epochs=1, random_state=0).fit(shifted, y)
    valid = np.concatenate(shifted)
    module = clf.net_.module_
    np.testing.assert_allclose(module.feature_mean.numpy(), valid.mean(0), rtol=1e-5)
    np.testing.assert_allclose(module.feature_scale.numpy(), valid.std(0), rtol=1e-5)


def test_invalid_parameters_are_rejected_at_fit():
    X, y = make_classification_sequences(n_samples=10)
    for params, error, message in [
        (dict(conv_filters=(8, 0)), ValueError, "conv_filters"),
        (dict(conv_kernel_size=4), ValueError, "odd"),
        (dict(callbacks=["not a callback"]), TypeError, "Callback"),
        (dict(device="banana"), ValueError, "not a torch device"),
    ]:
        with pytest.raises(error, match=message):
            LSTMClassifier(max_epochs=1, **params).fit(X, y)


@pytest.mark.parametrize(
    "context",
    [
        "no_grad",
        "inference_mode",
        "default_dtype_float64",
    ],
)
def test_fit_whatever_torch_state_the_caller_set(context):
    import contextlib

    import torch

    X, y = make_classification_sequences(n_samples=24)
    reference = LSTMClassifier(max_epochs=2, random_state=0).fit(X, y)

    @contextlib.contextmanager
    def float64_default():
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)

    state = {
        "no_grad": torch.no_grad,
        "inference_mode": torch.inference_mode,
        "default_dtype_float64": float64_default,
    }[context]
    with state():
        clf = LSTMClassifier(max_epochs=2, random_state=0).fit(X, y)
        proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba, reference.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("kind", ["requires_grad", "bfloat16", "list"])
def test_torch_tensors_are_accepted_as_x(kind):
    import torch

    X, y = make_classification_sequences(n_samples=24)
    clf = LSTMClassifier(max_epochs=1, random_state=0).fit(X, y)
    tensor = torch.from_numpy(X)
    if kind == "requires_grad":
        given = tensor.clone().requires_grad_(True)
    elif kind == "bfloat16":
        given = tensor.to(torch.bfloat16)
    else:
        given = [t.clone().requires_grad_(True) for t in tensor]
    proba = clf.predict_proba(given)
    expected = clf.predict_proba(
        tensor.to(torch.bfloat16).float().numpy() if kind == "bfloat16" else X
    )
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    LSTMClassifier(max_epochs=1, random_state=0).fit(given, y)

"""Property: over shapes, dtypes and layouts, fit + predict work or fail cleanly.

"Cleanly" means a ValueError or TypeError raised before anything is
returned; "work" means finite predictions of the right shape. Anything else
(an IndexError from torch, a NaN prediction, a crash) is a bug.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sklstm import LSTMClassifier, LSTMRegressor

DTYPES = [
    "float16",
    "float32",
    "float64",
    "int8",
    "int64",
    "uint8",
    "bool",
    "complex64",
    "object",
    "str",
]
FAST = {"hidden_size": 2, "max_epochs": 1, "batch_size": 4, "device": "cpu"}


def _values(rng, shape, dtype, scale):
    values = rng.normal(scale=scale, size=shape)
    if dtype == "bool":
        return values > 0
    if dtype in ("int8", "uint8", "int64"):
        info = np.iinfo(dtype)
        return rng.randint(max(info.min, -100), min(info.max, 100) + 1, size=shape)
    if dtype == "complex64":
        return (values + 1j).astype(dtype)
    if dtype == "object":
        return values.astype(object)
    if dtype == "str":
        return values.astype(str)
    with np.errstate(over="ignore"):
        return values.astype(dtype)


NUMERIC = ["float16", "float32", "float64", "int8", "int64", "uint8", "bool"]


@st.composite
def problems(draw):
    """A random (estimator, X, y) triple, valid or not.

    Half the examples are "wild" (anything goes: empty dimensions, any
    dtype, NaN/inf, wrong target counts, one class); the other half are
    plausible data, so that the training and prediction paths are exercised
    as often as the validation.
    """
    wild = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    rng = np.random.RandomState(seed)
    layout = draw(st.sampled_from(["3d", "2d", "ragged"]))
    dtype = draw(st.sampled_from(DTYPES if wild else NUMERIC))
    n_samples = draw(st.integers(0 if wild else 4, 6))
    n_timesteps = draw(st.integers(0 if wild else 1, 4))
    n_features = draw(st.integers(0 if wild else 1, 3))
    scale = draw(st.sampled_from([1.0, 1e3]))

    if layout == "3d":
        X = _values(rng, (n_samples, n_timesteps, n_features), dtype, scale)
        lengths = [n_timesteps] * n_samples
    elif layout == "2d":
        X = _values(rng, (n_samples, n_timesteps), dtype, scale)
        lengths = [n_timesteps] * n_samples
    else:
        lengths = [draw(st.integers(1, 4)) for _ in range(n_samples)]
        widths = [n_features] * n_samples
        if wild and n_samples:
            # An empty sequence, or one with a different feature count.
            lengths[-1] = draw(st.integers(0, 4))
            widths[-1] = draw(st.integers(0, 3))
        X = [
            _values(rng, (length, width), dtype, scale)
            for length, width in zip(lengths, widths, strict=True)
        ]
        if n_samples and draw(st.booleans()):
            X = [x[:, 0] if x.shape[1] else x[:, :0].reshape(-1) for x in X]

    poison = draw(st.sampled_from([None, np.nan, np.inf, -np.inf, 1e39]))
    if wild and poison is not None and dtype in ("float32", "float64", "object"):
        target = X if layout != "ragged" else X[0] if n_samples else []
        if np.size(target):
            with np.errstate(over="ignore"):
                target.reshape(-1)[0] = poison

    regression = draw(st.booleans())
    output_mode = draw(st.sampled_from(["last", "last", "sequence"]))
    n_targets = n_samples + (draw(st.sampled_from([0, -1, 1])) if wild else 0)
    n_classes = draw(st.integers(1 if wild else 2, 3))
    if output_mode == "last":
        y = rng.randint(n_classes, size=max(n_targets, 0))
        y[:n_classes] = np.arange(n_classes)[: len(y)]
    else:
        y = [rng.randint(n_classes, size=length) for length in lengths][:n_targets]
        if len(y) >= 2 and len(y[0]) and len(y[-1]):
            y[0][0], y[-1][-1] = 0, n_classes - 1
    if regression:
        y = y.astype(float) if output_mode == "last" else [t * 0.5 for t in y]
    Estimator = LSTMRegressor if regression else LSTMClassifier
    estimator = Estimator(**FAST, output_mode=output_mode, random_state=seed)
    return estimator, X, y


def _raised_by(exc):
    """Top-level package of the code that raised ``exc``."""
    traceback = exc.__traceback__
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = traceback.tb_frame.f_globals.get("__name__", "")
    return module.split(".")[0]


def _check_predictions(estimator, X, predicted):
    n_samples = len(X)
    if estimator.output_mode == "sequence":
        assert len(predicted) == n_samples
        if isinstance(X, list):
            for sequence, steps in zip(X, predicted, strict=True):
                assert len(steps) == len(sequence)
        predicted = np.concatenate([np.ravel(p) for p in predicted])
    else:
        assert predicted.shape == (n_samples,)
    if isinstance(estimator, LSTMRegressor):
        assert np.isfinite(predicted.astype(float)).all()
    else:
        assert np.isin(predicted, estimator.classes_).all()


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(problems())
def test_fit_predict_works_or_fails_cleanly(problem):
    estimator, X, y = problem
    try:
        estimator.fit(X, y)
    except (ValueError, TypeError) as exc:
        event(f"refused: {str(exc)[:40]}")
        assert _raised_by(exc) not in ("torch", "skorch"), exc
        assert not hasattr(estimator, "net_")
        return
    event("fitted")
    _check_predictions(estimator, X, estimator.predict(X))
    if isinstance(estimator, LSTMClassifier):
        proba = estimator.predict_proba(X)
        flat = (
            np.concatenate(list(proba))
            if estimator.output_mode == "sequence"
            else proba
        )
        assert np.isfinite(flat).all()
        np.testing.assert_allclose(flat.sum(axis=-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_either_fits_or_is_refused(dtype):
    """The dtype sweep without hypothesis' randomness, for a readable failure."""
    rng = np.random.RandomState(0)
    X = _values(rng, (8, 4, 2), dtype, 1.0)
    y = np.array([0, 1] * 4)
    estimator = LSTMClassifier(**FAST, random_state=0)
    if dtype == "complex64":
        with pytest.raises(ValueError, match="Complex data"):
            estimator.fit(X, y)
    else:
        proba = estimator.fit(X, y).predict_proba(X)
        assert proba.shape == (8, 2)
        assert np.isfinite(proba).all()
    if dtype == "str":
        # Strings are categories, never numbers read from text.
        assert len(estimator.categories_) == 2

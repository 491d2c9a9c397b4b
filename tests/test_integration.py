"""Everything around the estimators: pipelines, search, CV, clone, pickle."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklstm import LSTMClassifier, LSTMRegressor, from_channels_first

from .conftest import make_classification_sequences, make_ragged_sequences

FAST = dict(hidden_size=16, max_epochs=3, random_state=0)


def test_pipeline_with_an_aeon_layout_conversion():
    X, y = make_classification_sequences()
    channels_first = X.transpose(0, 2, 1)  # as aeon/sktime hold them
    pipeline = make_pipeline(
        FunctionTransformer(from_channels_first), LSTMClassifier(**FAST)
    )
    pipeline.fit(channels_first, y)
    direct = LSTMClassifier(**FAST).fit(X, y)
    np.testing.assert_allclose(
        pipeline.predict_proba(channels_first), direct.predict_proba(X)
    )


def test_grid_search_in_parallel_with_string_labels():
    X, y = make_classification_sequences(n_samples=60)
    search = GridSearchCV(
        LSTMClassifier(**FAST),
        {"hidden_size": [8, 16], "cell": ["lstm", "gru"]},
        cv=2,
        n_jobs=2,
    ).fit(X, y)
    assert search.best_estimator_.classes_.tolist() == ["down", "up"]
    assert set(search.predict(X)) <= {"down", "up"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_grid_search_parallel_matches_serial():
    X, y = make_classification_sequences(n_samples=40)
    grid = {"hidden_size": [8, 12]}
    serial = GridSearchCV(LSTMClassifier(**FAST), grid, cv=2, n_jobs=1).fit(X, y)
    parallel = GridSearchCV(LSTMClassifier(**FAST), grid, cv=2, n_jobs=2).fit(X, y)
    np.testing.assert_allclose(
        serial.cv_results_["mean_test_score"],
        parallel.cv_results_["mean_test_score"],
    )


def test_cross_val_score_on_ragged_sequences():
    X, y = make_ragged_sequences(n_samples=40)
    scores = cross_val_score(LSTMClassifier(**FAST), X, y, cv=3)
    assert scores.shape == (3,)
    regression = cross_val_score(
        LSTMRegressor(**FAST), X, np.array([x.sum() for x in X]), cv=2
    )
    assert regression.shape == (2,)


def test_clone_gives_an_unfitted_copy_with_the_same_parameters():
    X, y = make_classification_sequences()
    fitted = LSTMClassifier(**FAST, bidirectional=True).fit(X, y)
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "net_")


@pytest.mark.parametrize("dump, load", [(pickle.dumps, pickle.loads), (None, None)])
def test_pickle_and_joblib_round_trip_predict_identically(dump, load, tmp_path):
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST).fit(X, y)
    if dump is None:
        joblib.dump(clf, tmp_path / "model.joblib")
        restored = joblib.load(tmp_path / "model.joblib")
    else:
        restored = load(dump(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    # A restored model keeps training.
    restored.set_params(warm_start=True, max_epochs=1).fit(X, y)


def test_regressor_pickle_round_trip():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 6, 2))
    y = X[:, :, 0].sum(axis=1) * 100
    reg = LSTMRegressor(**FAST).fit(X, y)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(reg)).predict(X), reg.predict(X)
    )


def test_a_model_saved_on_cuda_loads_on_a_cpu_only_machine():
    # No GPU here: pretend the net was trained on CUDA, as skorch records it,
    # and check that unpickling without CUDA maps it to the CPU.
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST).fit(X, y)
    expected = clf.predict_proba(X)
    clf.net_.device = "cuda"
    payload = pickle.dumps(clf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restored = pickle.loads(payload)
    assert restored.device_.type == "cpu"
    np.testing.assert_array_equal(restored.predict_proba(X), expected)

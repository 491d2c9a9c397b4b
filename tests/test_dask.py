"""Hyperparameter search on a Dask cluster, through joblib's dask backend.

The cluster here is two local worker processes, the same code path as a real
multi-machine cluster: estimators are pickled to the workers, fitted there
and their scores sent back.
"""

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold

from sklstm import LSTMClassifier, LSTMRegressor

from .conftest import make_classification_sequences

distributed = pytest.importorskip("distributed")

GRID = {"hidden_size": [4, 8]}
FAST = {"max_epochs": 2, "batch_size": 8, "random_state": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def dask_client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def one_torch_thread():
    # Dask's nanny starts workers with OMP_NUM_THREADS=1, so torch runs on
    # one thread there; the local reference search does the same, so that
    # both sum in the same order and scores agree to the last bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _search(estimator, X, y, n_jobs):
    return GridSearchCV(estimator, GRID, cv=KFold(n_splits=2), n_jobs=n_jobs).fit(X, y)


def test_grid_search_on_dask_matches_local(dask_client, one_torch_thread):
    # A regressor: its R^2 scores are continuous, so any difference in what
    # the workers computed would show (accuracy could hide it).
    X, _ = make_classification_sequences(n_samples=32, n_timesteps=6)
    y = X[:, :, 0].sum(axis=1)
    estimator = LSTMRegressor(**FAST)

    local = _search(estimator, X, y, n_jobs=1)
    with distributed.get_task_stream(dask_client) as tasks:
        with joblib.parallel_backend("dask"):
            remote = _search(estimator, X, y, n_jobs=-1)

    # The fits really ran as tasks on the cluster's worker processes (joblib
    # may batch several fits into one task, so no exact count).
    assert tasks.data
    assert {task["worker"] for task in tasks.data} <= set(
        dask_client.scheduler_info()["workers"]
    )
    # Same seeds, same folds, same arithmetic: the scores agree bit for bit
    # in practice; 1e-6 leaves room for a BLAS that blocks differently on
    # another worker machine.
    for key in ("mean_test_score", "split0_test_score", "split1_test_score"):
        np.testing.assert_allclose(
            remote.cv_results_[key], local.cv_results_[key], rtol=0, atol=1e-6
        )
    assert remote.best_params_ == local.best_params_


# Incremental hands each block to partial_fit in turn, one epoch per block.
INCREMENTAL = {"hidden_size": 8, "batch_size": 16, "random_state": 0, "device": "cpu"}


def _blocks(n_blocks=4, rows=40, n_timesteps=12):
    rng = np.random.RandomState(0)
    X = rng.randn(n_blocks * rows, n_timesteps).astype(np.float32)
    y = (X[:, -3:].sum(axis=1) > 0).astype(int)
    return X, y, rows


def test_dask_ml_incremental_trains_block_by_block(dask_client, one_torch_thread):
    dask_array = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y, rows = _blocks()
    incremental = wrappers.Incremental(
        LSTMClassifier(**INCREMENTAL), shuffle_blocks=False
    )
    incremental.fit(
        dask_array.from_array(X, chunks=(rows, X.shape[1])),
        dask_array.from_array(y, chunks=rows),
        classes=[0, 1],
    )
    # The same blocks given to partial_fit here, in the same order.
    local = LSTMClassifier(**INCREMENTAL)
    for start in range(0, len(X), rows):
        block = slice(start, start + rows)
        local.partial_fit(X[block], y[block], classes=[0, 1])

    fitted = incremental.estimator_
    assert fitted.n_iter_ == local.n_iter_ == len(X) // rows
    np.testing.assert_allclose(
        fitted.predict_proba(X), local.predict_proba(X), rtol=0, atol=1e-6
    )
    # Prediction through the wrapper is block by block too, and lazy.
    predicted = incremental.predict(dask_array.from_array(X, chunks=(rows, 12)))
    np.testing.assert_array_equal(predicted.compute(), fitted.predict(X))


def test_dask_ml_blocks_of_3d_arrays_get_a_clear_error(dask_client):
    dask_array = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y, rows = _blocks()
    X = X[:, :, None]
    incremental = wrappers.Incremental(
        LSTMClassifier(**INCREMENTAL), shuffle_blocks=False
    )
    with pytest.raises(TypeError, match="dask-ml issue 972"):
        incremental.fit(
            dask_array.from_array(X, chunks=(rows, 12, 1)),
            dask_array.from_array(y, chunks=rows),
            classes=[0, 1],
        )

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

from sklstm import LSTMRegressor

from .conftest import make_classification_sequences

distributed = pytest.importorskip("distributed")

GRID = {"hidden_size": [4, 8]}
FAST = {"max_epochs": 2, "batch_size": 8, "random_state": 0, "device": "cpu"}


@pytest.fixture
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

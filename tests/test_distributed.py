"""Data-parallel training under torchrun: two CPU processes, gloo backend.

The test launches this very file with ``python -m torch.distributed.run``
(torchrun); run as a script, it is the training script each process runs
(see ``_worker``), writing what it fitted to a folder the test then reads.
"""

import os
import pickle
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

N_PROCESSES = 2
PER_PROCESS_BATCH = 8
# What both ranks and the single-process reference train, each with
# n_threads=1 so that no kernel's summation order depends on threads.
NETWORK = dict(
    hidden_size=8,
    conv_filters=None,
    dropout=0.0,
    max_epochs=3,
    early_stopping=False,
    lr_schedule=None,
    n_threads=1,
    random_state=0,
)


def _regression_data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(64, 20, 3)).astype(np.float32)
    y = X[:, :, 0].mean(axis=1) + 0.1 * rng.normal(size=64)
    return X, y


def _ragged_classification_data():
    rng = np.random.RandomState(1)
    X = [rng.normal(size=(n, 2)).astype(np.float32) for n in rng.randint(3, 25, 90)]
    y = np.array(["up" if x[:, 0].mean() > 0 else "down" for x in X])
    return X, y


def _state(estimator):
    """Weights and buffers of the fitted network, as numpy arrays."""
    return {
        name: tensor.cpu().numpy().copy()
        for name, tensor in estimator.net_.module_.state_dict().items()
    }


# ---------------------------------------------------------------------------
# What each process runs.
def _worker(out, device):
    import torch.distributed as dist

    import sklstm
    from sklstm import LSTMClassifier, LSTMRegressor

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    results = {}
    X, y = _regression_data()

    # Equal-length regression in float32 and float64, then one more epoch
    # by partial_fit, which is data-parallel too.
    for precision in ("32", "64"):
        reg = LSTMRegressor(
            **NETWORK, batch_size=PER_PROCESS_BATCH, precision=precision, device=device
        ).fit(X, y)
        results[f"regressor{precision}"] = _state(reg)
        results[f"predictions{precision}"] = reg.predict(X)
    reg.partial_fit(X, y)
    results["partial_fit"] = _state(reg)
    results["n_iter"] = reg.n_iter_
    results["device"] = str(reg.device_)

    # The fitted estimator works like any other: saved, loaded, pickled.
    path = Path(out) / f"model{rank}.sklstm"
    reg.save(path)
    results["loaded"] = sklstm.load(path).predict(X)
    results["unpickled"] = pickle.loads(pickle.dumps(reg)).predict(X)
    results["predictions_after"] = reg.predict(X)

    # Intervals calibrated by further networks, which train data-parallel
    # as the kept one does.
    calibrated = LSTMRegressor(
        **{**NETWORK, "early_stopping": True},
        batch_size=PER_PROCESS_BATCH,
        calibration="cross",
        device=device,
    ).fit(X, y)
    results["calibration"] = calibrated._calibration

    # Ragged sequences, string labels, the default network (convolutions
    # with batch norm, dropout), time warps (each process warps its shards
    # its own way) and early stopping: the processes agree.
    Xr, yr = _ragged_classification_data()
    clf = LSTMClassifier(
        hidden_size=8,
        time_warp=0.2,
        max_epochs=6,
        batch_size=8,
        early_stopping=True,
        n_iter_no_change=2,
        n_threads=1,
        random_state=None,  # each process draws its own; rank 0's wins
        device=device,
    ).fit(Xr, yr)
    results["classifier"] = _state(clf)
    results["classifier_scores"] = clf.validation_scores_
    results["classifier_loss"] = clf.loss_curve_
    results["classifier_proba"] = clf.predict_proba(Xr)

    # Different data in one process: every process refuses.
    y_mine = y if rank == 0 else y[::-1].copy()
    try:
        LSTMRegressor(**NETWORK, device=device).fit(X, y_mine)
    except ValueError as exc:
        results["mismatch"] = str(exc)

    with open(Path(out) / f"rank{rank}.pkl", "wb") as file:
        pickle.dump(results, file)
    dist.destroy_process_group()
    # Leave without the interpreter's teardown: there, now and then, gloo's
    # threads abort the process ("terminate called without an active
    # exception") after everything above has finished and been written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ---------------------------------------------------------------------------
def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(out, device):
    """Run ``_worker`` in N_PROCESSES processes; each one's results."""
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available")
    repository = str(Path(__file__).resolve().parents[1])
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [repository, os.environ.get("PYTHONPATH")])
        ),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={N_PROCESSES}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        __file__,
        str(out),
        device,
    ]
    result = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    loaded = []
    for rank in range(N_PROCESSES):
        with open(out / f"rank{rank}.pkl", "rb") as file:
            loaded.append(pickle.load(file))
    return loaded


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return _launch(tmp_path_factory.mktemp("distributed"), "cpu")


def _assert_same_state(first, second, **tolerance):
    assert first.keys() == second.keys()
    for name in first:
        if tolerance:
            np.testing.assert_allclose(first[name], second[name], **tolerance)
        else:
            np.testing.assert_array_equal(first[name], second[name], err_msg=name)


@pytest.mark.parametrize(
    "key",
    ["regressor32", "regressor64", "partial_fit", "classifier"],
)
def test_processes_end_with_the_same_weights(ranks, key):
    # Bit for bit: every process applies the same averaged gradient.
    _assert_same_state(ranks[0][key], ranks[1][key])


def test_processes_take_the_same_decisions(ranks):
    first, second = ranks
    assert first["classifier_scores"] == second["classifier_scores"]
    assert first["classifier_loss"] == second["classifier_loss"]
    np.testing.assert_array_equal(first["classifier_proba"], second["classifier_proba"])
    assert first["n_iter"] == second["n_iter"] == NETWORK["max_epochs"] + 1


# Tolerances against a single-process fit with the same effective batch.
# Each step averages two half-batch mean gradients where the single process
# takes the mean over the whole batch: equal mathematically, summed in
# another order, so the weights differ by rounding only. Adam's normalised
# steps can amplify it where a gradient is near zero; after 12 steps it was
# 3e-8 in float32 and 6e-17 in float64, well inside these bounds. A fit
# with a different batch (8 in one process) differs by 1e-2.
@pytest.mark.parametrize("precision, atol", [("64", 1e-12), ("32", 1e-5)])
def test_matches_one_process_with_the_same_effective_batch(ranks, precision, atol):
    from sklstm import LSTMRegressor

    X, y = _regression_data()
    reference = LSTMRegressor(
        **NETWORK,
        batch_size=N_PROCESSES * PER_PROCESS_BATCH,
        precision=precision,
        device="cpu",
    ).fit(X, y)
    _assert_same_state(
        ranks[0][f"regressor{precision}"], _state(reference), rtol=0, atol=atol
    )
    np.testing.assert_allclose(
        ranks[0][f"predictions{precision}"], reference.predict(X), rtol=0, atol=atol
    )


def test_further_calibration_networks_agree_across_processes(ranks):
    first, second = ranks
    # 64 sequences: the split holds out 13, four further networks the rest.
    assert first["calibration"]["size"] == second["calibration"]["size"] == 64
    np.testing.assert_array_equal(
        first["calibration"]["scores"], second["calibration"]["scores"]
    )


def test_fitted_estimator_saves_loads_and_pickles(ranks):
    for results in ranks:
        np.testing.assert_array_equal(results["loaded"], results["predictions_after"])
        np.testing.assert_array_equal(
            results["unpickled"], results["predictions_after"]
        )


def test_different_data_is_refused_in_every_process(ranks):
    for results in ranks:
        message = results.get("mismatch", "")
        assert "different data" in message and "rank(s) [1] differ" in message
        assert "distributed=False" in message


def test_distributed_true_needs_a_process_group():
    from sklstm import LSTMRegressor

    X, y = _regression_data()
    with pytest.raises(ValueError, match="init_process_group"):
        LSTMRegressor(**NETWORK, distributed=True).fit(X, y)


def test_launched_without_a_process_group_warns(monkeypatch):
    from sklstm import LSTMRegressor

    monkeypatch.setenv("WORLD_SIZE", "2")
    X, y = _regression_data()
    with pytest.warns(UserWarning, match="no torch.distributed process group"):
        LSTMRegressor(**{**NETWORK, "max_epochs": 1}).fit(X, y)
    # distributed=False says the user means it.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LSTMRegressor(**{**NETWORK, "max_epochs": 1}, distributed=False).fit(X, y)


@pytest.mark.gpu
def test_data_parallel_on_cuda(tmp_path):
    # gloo moves CUDA tensors too, and lets two processes share one GPU
    # (nccl wants a GPU each), so this runs wherever there is one.
    first, second = _launch(tmp_path, "auto")
    assert first["device"].startswith("cuda")
    for key in ("regressor32", "regressor64", "partial_fit", "classifier"):
        _assert_same_state(first[key], second[key])
    assert first["classifier_scores"] == second["classifier_scores"]
    assert "rank(s) [1] differ" in first.get("mismatch", "")

    # float64, where no TF32 or kernel choice blurs the comparison.
    from sklstm import LSTMRegressor

    X, y = _regression_data()
    reference = LSTMRegressor(
        **NETWORK,
        batch_size=N_PROCESSES * PER_PROCESS_BATCH,
        precision="64",
        device=first["device"],
    ).fit(X, y)
    _assert_same_state(first["regressor64"], _state(reference), rtol=0, atol=1e-9)


if __name__ == "__main__":
    _worker(*sys.argv[1:])

"""``n_threads``: how many CPU threads torch uses in fit and predict.

Each test records ``torch.get_num_threads()`` from inside training (a skorch
callback runs in the fitting thread) and checks the caller's setting is
back afterwards.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from skorch.callbacks import Callback

from sklstm import LSTMClassifier, LSTMRegressor, _device

from .conftest import make_classification_sequences


class RecordThreads(Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, net, **kwargs):
        self.seen.append(torch.get_num_threads())


@pytest.fixture
def caller_threads():
    """The caller runs with 3 threads (whatever the machine has); restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def _fit(n_threads, max_epochs=2):
    X, y = make_classification_sequences(n_samples=24, n_timesteps=6)
    record = RecordThreads()
    estimator = LSTMClassifier(
        hidden_size=4,
        max_epochs=max_epochs,
        n_threads=n_threads,
        callbacks=[record],
        random_state=0,
        device="cpu",
    ).fit(X, y)
    return estimator, record.seen, X


@pytest.mark.parametrize("n_threads", [1, 2, 5])
def test_explicit_count_is_used_and_the_callers_comes_back(caller_threads, n_threads):
    estimator, seen, X = _fit(n_threads)
    assert seen == [n_threads, n_threads]
    assert torch.get_num_threads() == caller_threads
    estimator.predict(X)
    assert torch.get_num_threads() == caller_threads


def test_auto_takes_one_thread_on_a_busy_machine(caller_threads, monkeypatch):
    cores = _device.usable_cores()
    monkeypatch.setattr(_device, "_busy_cores", lambda: cores)
    _, seen, _ = _fit("auto")
    assert seen == [1, 1]
    assert torch.get_num_threads() == caller_threads


def test_auto_takes_the_free_cores_up_to_the_callers_setting(
    caller_threads, monkeypatch
):
    monkeypatch.setattr(_device, "usable_cores", lambda: 8)
    monkeypatch.setattr(_device, "_busy_cores", lambda: 6)
    assert _fit("auto")[1] == [2, 2]
    monkeypatch.setattr(_device, "_busy_cores", lambda: 0)
    # All 8 cores are free, but the caller allowed 3.
    assert _fit("auto")[1] == [caller_threads] * 2


def test_the_load_reading_is_a_count_of_other_work():
    busy = _device._busy_cores()
    assert isinstance(busy, int)
    assert busy >= 0
    # The reading thread itself runs, and is not counted as other work.
    assert _device._own_running_threads() >= 1


def test_the_callers_setting_comes_back_after_a_failed_fit(caller_threads):
    X, _ = make_classification_sequences(n_samples=24, n_timesteps=6)
    with pytest.raises(ValueError):
        LSTMRegressor(n_threads=1, max_epochs=1, device="cpu").fit(X, [1.0] * 23)
    assert torch.get_num_threads() == caller_threads


def test_concurrent_fits_share_the_cores_and_restore_the_setting(
    caller_threads, monkeypatch
):
    monkeypatch.setattr(_device, "usable_cores", lambda: 4)
    monkeypatch.setattr(_device, "_busy_cores", lambda: 0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: _fit("auto", max_epochs=3)[1], range(4)))
    for seen in results:
        # Never more than the caller's 3 threads; fewer while others run.
        assert all(1 <= count <= caller_threads for count in seen)
    assert min(min(seen) for seen in results) < caller_threads
    assert torch.get_num_threads() == caller_threads


@pytest.mark.parametrize("bad", [0, -1, 1.5, "all", None, True])
def test_invalid_counts_are_refused_in_fit_and_predict(bad, caller_threads):
    X, y = make_classification_sequences(n_samples=24, n_timesteps=6)
    with pytest.raises(ValueError, match="n_threads"):
        LSTMClassifier(n_threads=bad, max_epochs=1).fit(X, y)
    fitted = LSTMClassifier(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="n_threads"):
        fitted.set_params(n_threads=bad).predict(X)
    assert torch.get_num_threads() == caller_threads


class RecordFlushing(Callback):
    def initialize(self):
        self.seen = []
        return self

    def on_epoch_end(self, net, **kwargs):
        self.seen.append(_device._flushing_denormals())


@pytest.mark.parametrize("caller_flushes", [False, True])
def test_denormals_are_flushed_in_fit_and_the_callers_mode_comes_back(
    caller_flushes,
):
    # Denormal floats are many times slower on x86 CPUs; fit flushes them
    # to zero and gives the caller back the mode it had.
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals (torch supports x86 only)")
    torch.set_flush_denormal(caller_flushes)
    try:
        X, y = make_classification_sequences(n_samples=24, n_timesteps=6)
        record = RecordFlushing()
        LSTMClassifier(hidden_size=4, max_epochs=2, callbacks=[record]).fit(X, y)
        assert record.seen == [True, True]
        assert _device._flushing_denormals() == caller_flushes
    finally:
        torch.set_flush_denormal(False)

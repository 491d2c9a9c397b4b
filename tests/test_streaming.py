"""Out-of-core arrays (memory-mapped, zarr, Dask) read batch by batch."""

import pickle

import numpy as np
import pytest

import sklstm
from sklstm import LSTMClassifier, LSTMRegressor, _out_of_core, _streaming
from sklstm._out_of_core import is_out_of_core

FAST = dict(hidden_size=8, batch_size=16, device="cpu", random_state=0)


def make_data(n_samples=400, n_timesteps=8, n_features=3, seed=0):
    """Two classes by the sign of feature 0's sum; a few missing values."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_timesteps, n_features)).astype(np.float32)
    X[:, :, 2] = X[:, :, 2] * 5 + 3  # a feature far from standard
    X[rng.random(X.shape[:2]) < 0.05, 1] = np.nan
    y = (X[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    return X, y


def to_memmap(X, directory, mode="r"):
    path = directory / "X.dat"
    written = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    written[:] = X
    written.flush()
    del written
    return np.memmap(path, dtype=X.dtype, mode=mode, shape=X.shape)


class CountingArray:
    """A lazy array: records the rows of every read, holds a memmap."""

    def __init__(self, array):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.chunks = (64,) + array.shape[1:]
        self.reads = []

    def __getitem__(self, key):
        assert isinstance(key, slice) and key.step is None, key
        start, stop, _ = key.indices(self.shape[0])
        self.reads.append(stop - start)
        return np.array(self.array[key])


def statistics(estimator):
    module = estimator.net_.module_
    missing = estimator.net_.get_params_for("module")["missing_indicators"]
    return module.feature_mean.numpy(), module.feature_scale.numpy(), missing


def test_detection_rule(tmp_path):
    X, _ = make_data(n_samples=4)
    assert not is_out_of_core(X)
    assert not is_out_of_core(list(X))
    assert is_out_of_core(to_memmap(X, tmp_path))
    assert is_out_of_core(CountingArray(X))


# Early stopping on, so that validation reads a row subset too.
MEMMAP_FIT = dict(max_epochs=8, early_stopping=True, n_iter_no_change=50, **FAST)


@pytest.fixture(scope="module")
def fitted_in_memory():
    """The in-memory fit that each memmap mode's fit is compared with."""
    X, y = make_data()
    return LSTMClassifier(**MEMMAP_FIT).fit(X, y)


@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_memmap_fit_matches_memory(tmp_path, mode, fitted_in_memory):
    X, y = make_data()
    in_memory = fitted_in_memory
    streamed = LSTMClassifier(**MEMMAP_FIT).fit(to_memmap(X, tmp_path, mode), y)
    # Same chunks, same float64 sums: the same standardisation, bit for bit.
    for ours, theirs in zip(statistics(streamed), statistics(in_memory), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert statistics(streamed)[2] == (1,)
    # Block shuffling batches differently: close in quality, not identical.
    assert streamed.score(X, y) > 0.85
    assert abs(streamed.score(X, y) - in_memory.score(X, y)) < 0.08
    assert streamed.n_iter_ == 8 and len(streamed.validation_scores_) == 8


def test_streamed_fit_is_reproducible(tmp_path):
    X, y = make_data()
    memmap = to_memmap(X, tmp_path)
    first = LSTMClassifier(max_epochs=3, **FAST).fit(memmap, y)
    second = LSTMClassifier(max_epochs=3, **FAST).fit(memmap, y)
    assert first.loss_curve_ == second.loss_curve_
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_reads_are_bounded(monkeypatch):
    # Reads in order take about _SCAN_STEPS steps: 100 sequences here.
    monkeypatch.setattr(_out_of_core, "SCAN_STEPS", 100 * 8)
    X, y = make_data(n_samples=1000)
    source = CountingArray(X)
    epochs, batch_size = 2, 8
    clf = LSTMClassifier(
        max_epochs=epochs, early_stopping=False, **{**FAST, "batch_size": batch_size}
    )
    clf.fit(source, y)
    block = _streaming._BLOCK_BATCHES * batch_size
    window = _streaming._WINDOW_BLOCKS * block
    assert max(source.reads) <= max(block, 100) < window < len(X)
    # One statistics pass, then each epoch reads every sequence once.
    assert sum(source.reads) == len(X) * (1 + epochs)
    reference = LSTMClassifier(max_epochs=1, early_stopping=False, **FAST).fit(X, y)
    for ours, theirs in zip(statistics(clf), statistics(reference), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)

    source.reads.clear()
    clf.partial_fit(source, y)
    assert clf.n_iter_ == epochs + 1
    assert max(source.reads) <= max(block, 100)
    assert sum(source.reads) == 2 * len(X)  # the check, then one epoch

    source.reads.clear()
    proba = clf.predict_proba(source)
    # Prediction reads in its batches (1024 sequences on the CPU).
    assert sum(source.reads) == len(X)
    np.testing.assert_array_equal(proba, clf.predict_proba(X))


def test_validation_reads_only_where_needed(monkeypatch):
    monkeypatch.setattr(_out_of_core, "SCAN_STEPS", 100 * 8)
    X, y = make_data(n_samples=1000)
    source = CountingArray(X)
    LSTMClassifier(max_epochs=1, early_stopping=True, **FAST).fit(source, y)
    # Statistics, training rows, then the validation rows' spans: reads of
    # at most 100 rows (validation rows are sparse) within each span.
    assert max(source.reads) <= _streaming._BLOCK_BATCHES * FAST["batch_size"]
    assert sum(source.reads) <= 3 * len(X)


def test_blocks_of_long_sequences_are_capped():
    # 16 batches of 64 sequences of 1000 x 100 float32 would be 1.6 GB.
    shape = (5000, 1000, 100)
    source = _out_of_core.stream_sequences(
        CountingArray(np.broadcast_to(np.float32(0), shape))
    )
    data = _streaming.StreamedData(source.source)
    assert _streaming.StreamedBatches(data, 64).block_rows == 64 * 2
    assert _streaming.StreamedBatches(data, 1024).block_rows == 1024
    small = _out_of_core.stream_sequences(CountingArray(np.zeros((5000, 10, 2))))
    small_data = _streaming.StreamedData(small.source)
    assert _streaming.StreamedBatches(small_data, 64).block_rows == 64 * 16


@pytest.mark.parametrize("mode", ["r", "r+"])
def test_predict_on_memmap_equals_memory(tmp_path, mode):
    X, y = make_data()
    memmap = to_memmap(X, tmp_path, mode)
    clf = LSTMClassifier(max_epochs=2, **FAST).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(memmap), clf.predict_proba(X))
    np.testing.assert_array_equal(clf.predict(memmap), clf.predict(X))
    assert clf.score(memmap, y) == clf.score(X, y)
    regressor = LSTMRegressor(max_epochs=2, **FAST).fit(X, y.astype(float))
    np.testing.assert_array_equal(regressor.predict(memmap), regressor.predict(X))


def test_two_dimensional_memmap(tmp_path):
    X, y = make_data()
    table = X[:, :, 0]
    memmap = to_memmap(np.ascontiguousarray(table), tmp_path)
    streamed = LSTMRegressor(max_epochs=2, **FAST).fit(memmap, y.astype(float))
    in_memory = LSTMRegressor(max_epochs=2, **FAST).fit(table, y.astype(float))
    for ours, theirs in zip(statistics(streamed), statistics(in_memory), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert streamed.n_features_in_ == table.shape[1]
    np.testing.assert_array_equal(streamed.predict(memmap), streamed.predict(table))


def test_per_step_targets(tmp_path):
    X, _ = make_data(n_samples=200)
    y = (np.nan_to_num(X[:, :, 0]) > 0).astype(np.int64)
    memmap = to_memmap(X, tmp_path)
    clf = LSTMClassifier(max_epochs=3, output_mode="sequence", **FAST)
    clf.fit(memmap, y, sample_weight=np.linspace(0.5, 1.5, len(X)))
    proba = clf.predict_proba(memmap)
    assert proba.shape == (200, 8, 2)
    np.testing.assert_array_equal(proba, clf.predict_proba(X))


def test_dask_uneven_chunks():
    da = pytest.importorskip("dask.array")
    X, y = make_data()
    lazy = da.from_array(X, chunks=((37, 150, 13, 200), 8, 3))
    streamed = LSTMClassifier(max_epochs=2, **FAST).fit(lazy, y)
    in_memory = LSTMClassifier(max_epochs=2, **FAST).fit(X, y)
    for ours, theirs in zip(statistics(streamed), statistics(in_memory), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(
        streamed.predict_proba(lazy), streamed.predict_proba(X)
    )


def test_dask_unknown_chunk_sizes():
    da = pytest.importorskip("dask.array")
    X, y = make_data(n_samples=20)
    lazy = da.from_array(X, chunks=(10, 8, 3))
    lazy = lazy[lazy[:, 0, 0] > -10]  # sizes unknown until computed
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        LSTMClassifier(**FAST).fit(lazy, y)


def test_zarr_array():
    zarr = pytest.importorskip("zarr", reason="zarr is not installed")
    X, y = make_data()
    array = zarr.zeros(shape=X.shape, chunks=(50, 8, 3), dtype="float32")
    array[:] = X
    streamed = LSTMClassifier(max_epochs=2, **FAST).fit(array, y)
    in_memory = LSTMClassifier(max_epochs=2, **FAST).fit(X, y)
    for ours, theirs in zip(statistics(streamed), statistics(in_memory), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(
        streamed.predict_proba(array), streamed.predict_proba(X)
    )


def test_infinity_names_the_sequence(tmp_path, monkeypatch):
    monkeypatch.setattr(_out_of_core, "SCAN_STEPS", 100 * 8)
    X, y = make_data()
    X[250, 3, 0] = np.inf  # in the third chunk of the statistics pass
    memmap = to_memmap(X, tmp_path)
    clf = LSTMClassifier(max_epochs=1, **FAST)
    with pytest.raises(ValueError, match=r"X\[250\] contains infinity"):
        clf.fit(memmap, y)
    assert not hasattr(clf, "net_")
    clean = X.copy()
    clean[250, 3, 0] = 0
    clf.fit(clean, y)
    with pytest.raises(ValueError, match=r"X\[250\] contains infinity"):
        clf.predict(memmap)
    # float64 data beyond float32's range is refused the same way.
    large = np.nan_to_num(X.astype(np.float64), posinf=0)
    large[7, 0, 2] = 1e300
    with pytest.raises(ValueError, match=r"X\[7\].*precision='64'"):
        LSTMClassifier(max_epochs=1, **FAST).fit(to_memmap(large, tmp_path), y)


@pytest.mark.parametrize("shape", [(10,), (10, 4, 3, 2)])
def test_wrong_dimensions(tmp_path, shape):
    memmap = to_memmap(np.zeros(shape, dtype=np.float32), tmp_path)
    with pytest.raises(ValueError, match="2-D or 3-D array"):
        LSTMClassifier(**FAST).fit(memmap, np.arange(10) % 2)


def test_feature_count_checked_at_predict(tmp_path):
    X, y = make_data()
    clf = LSTMClassifier(max_epochs=1, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(to_memmap(np.ascontiguousarray(X[:, :, :2]), tmp_path))


def test_categorical_features_need_memory(tmp_path):
    X, y = make_data()
    memmap = to_memmap(X, tmp_path)
    with pytest.raises(ValueError, match=r"np\.asarray\(X\)"):
        LSTMClassifier(categorical_features=[0], **FAST).fit(memmap, y)
    with pytest.raises(ValueError, match="categorical"):
        LSTMClassifier(static_features=[0], **FAST).fit(memmap, y)


def test_model_fitted_on_memmap_saves_and_pickles(tmp_path):
    X, y = make_data()
    clf = LSTMClassifier(max_epochs=1, **FAST).fit(to_memmap(X, tmp_path), y)
    expected = clf.predict_proba(X)
    clf.save(tmp_path / "model.sklstm")
    loaded = sklstm.load(tmp_path / "model.sklstm")
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    unpickled = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(unpickled.predict_proba(X), expected)
    # Training goes on, in memory, from the streamed fit.
    unpickled.partial_fit(X, y)
    assert unpickled.n_iter_ == 2


# ---------------------------------------------------------------------------
# Ragged sequences on disk: RaggedSequences(steps, offsets)
def make_ragged(n_samples=300, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 30, n_samples)
    sequences = [
        rng.standard_normal((n, n_features)).astype(np.float32) for n in lengths
    ]
    for sequence in sequences[::7]:
        sequence[0, 1] = np.nan
    y = np.array([int(np.nansum(s[:, 0]) > 0) for s in sequences])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return sequences, y, offsets


def test_ragged_sequences_container():
    sequences, _, offsets = make_ragged(n_samples=5)
    X = sklstm.RaggedSequences(np.concatenate(sequences), offsets)
    assert len(X) == 5
    np.testing.assert_array_equal(X[-1], sequences[-1])
    with pytest.raises(TypeError, match="list comprehension"):
        X[[0, 1]]
    steps = np.concatenate(sequences)
    with pytest.raises(ValueError, match="start at 0"):
        sklstm.RaggedSequences(steps, offsets + 1)
    with pytest.raises(ValueError, match=r"X\[2\] has 0 time steps"):
        sklstm.RaggedSequences(steps, np.insert(offsets, 2, offsets[2]))
    with pytest.raises(ValueError, match="integers"):
        sklstm.RaggedSequences(steps, offsets.astype(float))
    with pytest.raises(ValueError, match="total_steps"):
        sklstm.RaggedSequences(steps[None], offsets)


def test_ragged_memmap_fit_matches_memory(tmp_path):
    sequences, y, offsets = make_ragged()
    steps = to_memmap(np.concatenate(sequences), tmp_path)
    X = sklstm.RaggedSequences(steps, offsets)
    settings = dict(max_epochs=8, early_stopping=True, n_iter_no_change=50, **FAST)
    streamed = LSTMClassifier(**settings).fit(X, y)
    in_memory = LSTMClassifier(**settings).fit(sequences, y)
    for ours, theirs in zip(statistics(streamed), statistics(in_memory), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert streamed.score(sequences, y) > 0.8
    assert abs(streamed.score(sequences, y) - in_memory.score(sequences, y)) < 0.1
    # Padding never changes an output: the same model predicts the same,
    # batched by length within each read rather than over all sequences.
    np.testing.assert_allclose(
        streamed.predict_proba(X), streamed.predict_proba(sequences), atol=1e-6
    )


def test_ragged_reads_are_bounded(monkeypatch):
    monkeypatch.setattr(_out_of_core, "SCAN_STEPS", 500)
    sequences, y, offsets = make_ragged(n_samples=1200)
    source = CountingArray(np.concatenate(sequences))
    X = sklstm.RaggedSequences(source, offsets)
    clf = LSTMClassifier(max_epochs=2, early_stopping=False, **FAST).fit(X, y)
    block = _streaming._BLOCK_BATCHES * FAST["batch_size"]
    # A read holds the steps of at most one block of consecutive sequences,
    # or 500 steps in the statistics pass.
    block_steps = np.convolve(np.diff(offsets), np.ones(block), "valid").max()
    assert max(source.reads) <= max(500, block_steps) < offsets[-1] / 2
    assert sum(source.reads) == 3 * offsets[-1]  # statistics, two epochs
    reference = LSTMClassifier(max_epochs=1, **FAST).fit(sequences, y)
    for ours, theirs in zip(statistics(clf), statistics(reference), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_ragged_per_step_outputs(tmp_path):
    sequences, _, offsets = make_ragged(n_samples=120)
    y = [(np.nan_to_num(s[:, 0]) > 0).astype(np.int64) for s in sequences]
    X = sklstm.RaggedSequences(to_memmap(np.concatenate(sequences), tmp_path), offsets)
    clf = LSTMClassifier(max_epochs=2, output_mode="sequence", **FAST).fit(X, y)
    proba = clf.predict_proba(X)
    assert isinstance(proba, list) and len(proba) == len(sequences)
    for ours, theirs in zip(proba, clf.predict_proba(sequences), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_ragged_infinity_names_the_sequence(tmp_path):
    sequences, y, offsets = make_ragged()
    sequences[123][2, 0] = -np.inf
    X = sklstm.RaggedSequences(np.concatenate(sequences), offsets)
    with pytest.raises(ValueError, match=r"X\[123\] contains infinity"):
        LSTMClassifier(**FAST).fit(X, y)


def test_regressor_intervals_calibrate_on_data_read_from_disk(tmp_path, monkeypatch):
    X, _ = make_data(n_samples=200)
    y = np.nansum(X[:, :, 0], axis=1)
    params = dict(FAST, max_epochs=3, early_stopping=True)
    on_disk = LSTMRegressor(**params).fit(to_memmap(X, tmp_path), y)
    in_memory = LSTMRegressor(**params).fit(X, y)
    # Both calibrate on the same held-out sequences (with 40 validation
    # sequences, five networks': all 200), read from disk for the first.
    assert on_disk._calibration["size"] == in_memory._calibration["size"] == 200
    bounds = on_disk.predict_interval(X, coverage=0.8)
    point = on_disk.predict(X)
    assert (bounds[:, 0] <= point).all() and (point <= bounds[:, 1]).all()
    # Far larger data calibrates on the first validation sequences only.
    monkeypatch.setattr(_out_of_core, "CALIBRATION_STEPS", 8 * 5)
    (tmp_path / "capped").mkdir()
    capped = LSTMRegressor(**params, calibration="split")
    capped.fit(to_memmap(X, tmp_path / "capped"), y)
    assert capped._calibration["size"] == 5
    # The sample's cap does not decide whether to train more networks: the
    # 40 validation sequences do.
    (tmp_path / "capped_cross").mkdir()
    capped = LSTMRegressor(**params).fit(to_memmap(X, tmp_path / "capped_cross"), y)
    assert capped._calibration["size"] == 5 * 5


def test_data_parallel_training_refuses_data_on_disk(tmp_path, monkeypatch):
    # Checked before any collective call, so a stand-in group suffices.
    from sklstm import _base
    from sklstm._distributed import DataParallel

    monkeypatch.setattr(_base, "data_parallel", lambda setting: DataParallel(0, 2))
    X, y = make_data(n_samples=40)
    with pytest.raises(ValueError, match="distributed=False"):
        LSTMClassifier(**FAST, max_epochs=1).fit(to_memmap(X, tmp_path), y)


def test_centring_on_disk_samples_rows_spread_over_the_file(tmp_path, monkeypatch):
    # A file sorted by its target (as one sorted by time may be): centring
    # on its first rows would shift every prediction towards the smallest
    # targets. The capped sample is spread over the training rows instead.
    X, _ = make_data(n_samples=200)
    y = np.linspace(0.0, 10.0, len(X))
    monkeypatch.setattr(_out_of_core, "CALIBRATION_STEPS", 8 * 20)
    reg = LSTMRegressor(**FAST, max_epochs=1, early_stopping=False)
    reg.fit(to_memmap(X, tmp_path), y)
    # The network has barely learned the order; its mean error over all
    # rows is what the 20 spread rows left, near zero, where the first 20
    # rows would leave about 4.4 (every prediction too low).
    assert abs((y - reg.predict(X)).mean()) < 1.0


def test_sample_rows_spread_over_the_file_within_the_budget(monkeypatch):
    steps = np.zeros((1000, 1), dtype=np.float32)
    offsets = np.arange(0, 1001, 10)  # 100 sequences of 10 steps
    sequences = _out_of_core.stream_sequences(sklstm.RaggedSequences(steps, offsets))
    monkeypatch.setattr(_out_of_core, "CALIBRATION_STEPS", 95)
    rows = np.arange(0, 100, 2)
    picked = sequences.sample_rows(rows)
    assert sequences.lengths[picked].sum() <= 95
    assert np.isin(picked, rows).all() and (np.diff(picked) > 0).all()
    assert picked[0] == 0 and picked[-1] == 98
    monkeypatch.setattr(_out_of_core, "CALIBRATION_STEPS", 5)
    assert len(sequences.sample_rows(rows)) == 1

"""Saving and loading without pickle: round trips, safety, damaged files."""

import io
import json
import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError

import sklstm
from sklstm import LSTMClassifier, LSTMRegressor
from sklstm.persistence import FORMAT_VERSION

from .conftest import make_classification_sequences, make_ragged_sequences

TINY = dict(hidden_size=6, max_epochs=2, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def classifier():
    X, y = make_classification_sequences(n_samples=40, n_timesteps=6, n_features=2)
    return LSTMClassifier(early_stopping=True, validation_fraction=0.25, **TINY).fit(
        X, y
    )


@pytest.fixture(scope="module")
def data():
    return make_classification_sequences(n_samples=40, n_timesteps=6, n_features=2)


@pytest.fixture
def saved(classifier, tmp_path):
    path = tmp_path / "model.sklstm"
    classifier.save(path)
    return path


def _round_trip(estimator, tmp_path, name="model.sklstm"):
    path = tmp_path / name
    estimator.save(path)
    return sklstm.load(path)


def _archive_entries(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_archive(path, entries):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def _edit_metadata(path, edit):
    entries = _archive_entries(path)
    metadata = json.loads(entries["metadata.json"])
    edit(metadata)
    entries["metadata.json"] = json.dumps(metadata).encode()
    _write_archive(path, entries)


# ---------------------------------------------------------------------------
# Round trips
def test_classifier_round_trip_predicts_identically(classifier, data, tmp_path):
    X, _ = data
    loaded = _round_trip(classifier, tmp_path)
    assert type(loaded) is LSTMClassifier
    np.testing.assert_array_equal(loaded.predict_proba(X), classifier.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), classifier.predict(X))
    assert loaded.get_params() == classifier.get_params()


def test_round_trip_keeps_fitted_attributes(classifier, tmp_path):
    loaded = _round_trip(classifier, tmp_path)
    np.testing.assert_array_equal(loaded.classes_, classifier.classes_)
    assert loaded.classes_.dtype == classifier.classes_.dtype
    assert loaded.n_features_in_ == classifier.n_features_in_
    assert loaded.n_iter_ == classifier.n_iter_
    assert loaded.loss_curve_ == classifier.loss_curve_
    assert loaded.validation_scores_ == classifier.validation_scores_
    assert loaded.best_validation_score_ == classifier.best_validation_score_
    assert len(loaded.history_) == len(classifier.history_)
    assert loaded.history_[:, "train_loss"] == classifier.history_[:, "train_loss"]


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["cat", "dog", "emu"]),
        np.array([3, 7, 11]),
        np.array(["cat", "dog", "emu"], dtype=object),
    ],
    ids=["str", "int", "object"],
)
def test_label_types_survive(labels, tmp_path):
    X, _ = make_classification_sequences(n_samples=30, n_timesteps=5, n_features=2)
    y = labels[np.arange(30) % 3]
    clf = LSTMClassifier(**TINY).fit(X, y)
    loaded = _round_trip(clf, tmp_path)
    assert loaded.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor_round_trip(n_outputs, tmp_path):
    X, _ = make_classification_sequences(n_samples=30, n_timesteps=5, n_features=2)
    y = X[:, -n_outputs:, 0] * 10 + 3
    if n_outputs == 1:
        y = y[:, 0]
    reg = LSTMRegressor(**TINY).fit(X, y)
    loaded = _round_trip(reg, tmp_path)
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.predict(X).shape == reg.predict(X).shape


def test_ragged_sequence_mode_round_trip(tmp_path):
    X, _ = make_ragged_sequences(n_samples=20, max_length=9)
    y = [(x[:, 0] > 0).astype(int) for x in X]
    clf = LSTMClassifier(output_mode="sequence", bidirectional=True, **TINY).fit(X, y)
    loaded = _round_trip(clf, tmp_path)
    for ours, theirs in zip(loaded.predict_proba(X), clf.predict_proba(X), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_dataframe_feature_names_survive(tmp_path):
    X, y = make_classification_sequences(n_samples=30, n_timesteps=5, n_features=1)
    frame = pd.DataFrame(X[:, :, 0], columns=[f"t{i}" for i in range(5)])
    clf = LSTMClassifier(**TINY).fit(frame, y)
    loaded = _round_trip(clf, tmp_path)
    np.testing.assert_array_equal(loaded.feature_names_in_, clf.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict(frame), clf.predict(frame))


def test_float64_and_conv_round_trip(tmp_path):
    X, y = make_classification_sequences(n_samples=30, n_timesteps=6, n_features=2)
    clf = LSTMClassifier(
        precision="64", conv_filters=(4,), cell="gru", pooling="attention", **TINY
    ).fit(X, y)
    loaded = _round_trip(clf, tmp_path)
    assert loaded.get_params()["conv_filters"] == (4,)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_class_weight_dict_keeps_key_types(tmp_path):
    X, _ = make_classification_sequences(n_samples=30, n_timesteps=5, n_features=2)
    y = np.arange(30) % 2
    clf = LSTMClassifier(class_weight={0: 1.0, 1: 2.5}, **TINY).fit(X, y)
    loaded = _round_trip(clf, tmp_path)
    assert loaded.class_weight == {0: 1.0, 1: 2.5}


def test_file_objects_and_overwrite(classifier, data, tmp_path):
    X, _ = data
    buffer = io.BytesIO()
    classifier.save(buffer)
    loaded = sklstm.load(io.BytesIO(buffer.getvalue()))
    np.testing.assert_array_equal(loaded.predict_proba(X), classifier.predict_proba(X))

    path = tmp_path / "model.sklstm"
    path.write_bytes(b"an older file")
    classifier.save(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.sklstm"]
    assert sklstm.load(str(path)).n_iter_ == classifier.n_iter_


def test_load_on_cpu_and_leave_random_state_alone(saved):
    before = torch.get_rng_state()
    loaded = sklstm.load(saved, device="cpu")
    assert torch.equal(torch.get_rng_state(), before)
    assert loaded.device_.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only machine")
def test_model_saved_for_cuda_loads_on_cpu(saved, data):
    # What a model fitted on a GPU looks like: its device parameter names CUDA.
    def fitted_on_gpu(metadata):
        metadata["params"]["device"] = "cuda"

    _edit_metadata(saved, fitted_on_gpu)
    loaded = sklstm.load(saved)
    assert loaded.device == "cuda"
    assert loaded.device_.type == "cpu"
    assert loaded.predict(data[0]).shape == (len(data[0]),)


def test_loaded_model_trains_further(data, tmp_path):
    X, y = data
    loaded = _round_trip(LSTMClassifier(**TINY).fit(X, y), tmp_path)
    n_iter = loaded.n_iter_
    loaded.partial_fit(X, y)
    assert loaded.n_iter_ == n_iter + 1
    assert loaded.predict(X).shape == (len(X),)


def test_pickle_and_joblib_still_work(classifier, data, tmp_path):
    X, _ = data
    expected = classifier.predict_proba(X)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(classifier)).predict_proba(X), expected
    )
    joblib.dump(classifier, tmp_path / "model.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "model.joblib").predict_proba(X), expected
    )


# ---------------------------------------------------------------------------
# What cannot be saved
def test_save_unfitted_raises():
    with pytest.raises(NotFittedError):
        LSTMClassifier().save("never-written.sklstm")


def test_save_with_callbacks_explains_fix(data, tmp_path):
    from skorch.callbacks import EpochTimer

    X, y = data
    clf = LSTMClassifier(callbacks=[("timer", EpochTimer())], **TINY).fit(X, y)
    with pytest.raises(ValueError, match=r"set_params\(callbacks=None\)"):
        clf.save(tmp_path / "model.sklstm")
    assert not (tmp_path / "model.sklstm").exists()
    clf.set_params(callbacks=None).save(tmp_path / "model.sklstm")
    assert sklstm.load(tmp_path / "model.sklstm").callbacks is None


def test_save_with_random_state_instance_explains_fix(data, tmp_path):
    X, y = data
    params = {**TINY, "random_state": np.random.RandomState(0)}
    clf = LSTMClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match="random_state.*int seed"):
        clf.save(tmp_path / "model.sklstm")


# ---------------------------------------------------------------------------
# Loading never runs code from the file
class _Planted:
    """Unpickling this creates ``marker``: the stand-in for an attack."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_planted_payload_is_live(tmp_path):
    # Guards the tests below: unpickling the payload really does run code.
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Planted(marker)))
    assert marker.exists()


@pytest.mark.parametrize("writer", ["pickle", "joblib", "torch"])
def test_planted_pickle_is_refused_without_running(writer, tmp_path):
    marker = tmp_path / "attack-ran"
    path = tmp_path / "model.sklstm"
    payload = _Planted(marker)
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    elif writer == "joblib":
        joblib.dump(payload, path)
    else:
        torch.save(payload, path)
    with pytest.raises(ValueError, match="not an sklstm model file"):
        sklstm.load(path)
    assert not marker.exists()


def test_pickle_error_says_what_it_is(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(ValueError, match="looks like a pickle"):
        sklstm.load(path)


# ---------------------------------------------------------------------------
# Damaged files
@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file(saved, keep):
    content = saved.read_bytes()
    saved.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(ValueError, match="sklstm model file|corrupt"):
        sklstm.load(saved)


def test_flipped_bytes_in_weights(saved):
    entries = _archive_entries(saved)
    weights = bytearray(entries["weights.safetensors"])
    weights[len(weights) // 2 :] = bytes(len(weights) - len(weights) // 2)
    weights[:8] = b"\xff" * 8  # header length: far past the end
    entries["weights.safetensors"] = bytes(weights)
    _write_archive(saved, entries)
    with pytest.raises(ValueError, match="corrupt"):
        sklstm.load(saved)


def test_crc_mismatch(saved):
    content = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("weights.safetensors")
    # Damage the stored data of a member, not the zip directory.
    start = info.header_offset + 30 + len(info.filename) + 10
    content[start] ^= 0xFF
    saved.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="corrupt"):
        sklstm.load(saved)


def test_damage_that_zipfile_calls_unsupported(saved):
    content = bytearray(saved.read_bytes())
    directory_entry = content.index(b"PK\x01\x02")
    # "Version needed to extract" of the first member: no such zip version.
    content[directory_entry + 6 : directory_entry + 8] = b"\xff\x00"
    saved.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="not an sklstm model file"):
        sklstm.load(saved)


def test_corrupt_json(saved):
    entries = _archive_entries(saved)
    entries["metadata.json"] = b'{"format": "sklstm-model", '
    _write_archive(saved, entries)
    with pytest.raises(ValueError, match="not valid JSON"):
        sklstm.load(saved)


@pytest.mark.parametrize("missing", ["metadata.json", "weights.safetensors"])
def test_missing_entry(saved, missing):
    entries = _archive_entries(saved)
    del entries[missing]
    _write_archive(saved, entries)
    with pytest.raises(ValueError, match=missing):
        sklstm.load(saved)


def test_newer_format_asks_to_upgrade(saved):
    def newer(metadata):
        metadata["format_version"] = FORMAT_VERSION + 1

    _edit_metadata(saved, newer)
    with pytest.raises(ValueError, match="Upgrade sklstm"):
        sklstm.load(saved)


def test_other_zip_formats_are_refused(saved):
    def other(metadata):
        metadata["format"] = "something-else"

    _edit_metadata(saved, other)
    with pytest.raises(ValueError, match="not an sklstm model file"):
        sklstm.load(saved)


def test_unknown_estimator_class(saved):
    def unknown(metadata):
        metadata["estimator"] = "os.system"

    _edit_metadata(saved, unknown)
    with pytest.raises(ValueError, match="unknown class"):
        sklstm.load(saved)


def test_weights_that_do_not_fit_the_network(saved):
    def bigger(metadata):
        metadata["module_kwargs"]["hidden_size"] = 7

    _edit_metadata(saved, bigger)
    with pytest.raises(ValueError, match="does not match the network"):
        sklstm.load(saved)


def test_attribute_names_cannot_shadow_methods(saved):
    def shadow(metadata):
        metadata["fitted"]["predict"] = 1

    _edit_metadata(saved, shadow)
    with pytest.raises(ValueError, match="invalid attribute name"):
        sklstm.load(saved)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        sklstm.load(tmp_path / "nothing-here.sklstm")

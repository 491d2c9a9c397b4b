"""Saving and loading without pickle: round trips, safety, damaged files."""

import ast
import copy
import io
import json
import pickle
import re
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
from sklstm._model_file import FITTED_STATE, FORMAT1_FIELDS
from sklstm.forecasting import LSTMForecaster
from sklstm.persistence import FORMAT_VERSION

from .conftest import make_classification_sequences, make_ragged_sequences

TINY = dict(hidden_size=6, max_epochs=2, batch_size=16, random_state=0)
DATA = Path(__file__).parent / "data"


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


@pytest.fixture(scope="module")
def regressor():
    X, _ = make_classification_sequences(n_samples=40, n_timesteps=6, n_features=2)
    return LSTMRegressor(**TINY).fit(X, X[:, -1, 0] * 3 + 1)


@pytest.fixture
def saved_regressor(regressor, tmp_path):
    path = tmp_path / "regressor.sklstm"
    regressor.save(path)
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


def _read_metadata(path):
    return json.loads(_archive_entries(path)["metadata.json"])


def _edit_metadata(path, edit):
    """Rewrite ``metadata.json`` inside the model file at ``path``."""
    entries = _archive_entries(path)
    metadata = json.loads(entries["metadata.json"])
    edit(metadata)
    entries["metadata.json"] = json.dumps(metadata).encode()
    _write_archive(path, entries)


def _fitted_attributes(estimator):
    """What fit added to the estimator, beyond its parameters and the net."""
    params = estimator.get_params(deep=False)
    return set(vars(estimator)) - set(params) - {"net_", "history_"}


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
        # Parameters and network agree; only the weights are of another size.
        metadata["params"]["hidden_size"] = 7
        metadata["module_kwargs"]["hidden_size"] = 7

    _edit_metadata(saved, bigger)
    with pytest.raises(ValueError, match="does not match the network"):
        sklstm.load(saved)


def test_fitted_fields_cannot_shadow_methods(saved):
    # Fitted state is restored to the attributes the schema names, never to
    # a name taken from the file.
    def shadow(metadata):
        metadata["fitted"]["predict"] = 1

    _edit_metadata(saved, shadow)
    with pytest.raises(ValueError, match=r"unknown fitted fields \['predict'\]"):
        sklstm.load(saved)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        sklstm.load(tmp_path / "nothing-here.sklstm")


# ---------------------------------------------------------------------------
# The schema and earlier formats
@pytest.mark.parametrize(
    "name, expected, atol",
    [("classifier", "proba", 1e-6), ("regressor", "values", 1e-5)],
)
def test_format1_files_still_load(name, expected, atol, tmp_path):
    # Written by the release before the schema: predictions must not change.
    reference = np.load(DATA / "format1_expected.npz")
    old = DATA / f"{name}_format1.sklstm"
    assert _read_metadata(old)["format_version"] == 1
    loaded = sklstm.load(old)

    def predict(estimator):
        if name == "classifier":
            return estimator.predict_proba(reference["X"])
        return estimator.predict(reference["X"])

    np.testing.assert_allclose(predict(loaded), reference[expected], rtol=0, atol=atol)

    # Saving it writes the current format, which round-trips exactly.
    first = tmp_path / "first.sklstm"
    loaded.save(first)
    metadata = _read_metadata(first)
    assert metadata["format_version"] == FORMAT_VERSION == 2
    old_fields = _read_metadata(old)["fitted"]
    assert set(metadata["fitted"]) == {FORMAT1_FIELDS[key] for key in old_fields}
    again = sklstm.load(first)
    np.testing.assert_array_equal(predict(again), predict(loaded))
    assert _fitted_attributes(again) == _fitted_attributes(loaded)
    for attribute in _fitted_attributes(loaded):
        np.testing.assert_equal(getattr(again, attribute), getattr(loaded, attribute))
    second = tmp_path / "second.sklstm"
    again.save(second)
    assert _archive_entries(second) == _archive_entries(first)


@pytest.mark.parametrize("layout", ["sequences", "table", "dataframe"])
@pytest.mark.parametrize("cls", [LSTMClassifier, LSTMRegressor])
def test_schema_covers_every_fitted_attribute(cls, layout, tmp_path):
    # A fitted attribute missing from the schema would be dropped by save.
    X, labels = make_classification_sequences(n_samples=30, n_timesteps=5, n_features=2)
    if layout == "table":
        X = X[:, :, 0]
    elif layout == "dataframe":
        X = pd.DataFrame(X[:, :, 0], columns=[f"t{i}" for i in range(5)])
    y = labels if cls is LSTMClassifier else (labels == "up") * 2.0 + 1
    estimator = cls(**TINY).fit(X, y)
    schema = {field.attribute: field for field in FITTED_STATE[cls.__name__]}
    required = {attribute for attribute, field in schema.items() if field.required}

    attributes = _fitted_attributes(estimator)
    assert attributes - set(schema) == set()
    assert required - attributes == set()
    assert ("feature_names_in_" in attributes) == (layout == "dataframe")
    fields = _read_metadata(_round_trip_path(estimator, tmp_path))["fitted"]
    assert set(fields) == {schema[attribute].name for attribute in attributes}

    loaded = sklstm.load(tmp_path / "model.sklstm")
    assert _fitted_attributes(loaded) == attributes
    for attribute in attributes:
        np.testing.assert_equal(
            getattr(loaded, attribute), getattr(estimator, attribute)
        )
    # Training further adds nothing the schema lacks either.
    loaded.partial_fit(X, y)
    assert _fitted_attributes(loaded) - set(schema) == set()


def _round_trip_path(estimator, tmp_path):
    path = tmp_path / "model.sklstm"
    estimator.save(path)
    return path


def test_schema_fields_are_unique_and_format1_maps_onto_them():
    for fields in FITTED_STATE.values():
        assert len({field.name for field in fields}) == len(fields)
        assert len({field.attribute for field in fields}) == len(fields)
    every_field = {field.name for fields in FITTED_STATE.values() for field in fields}
    # Format 2 added the layout and categories of tabular input, which format
    # 1 could not hold, the training sequences' steps (optional; they
    # resolve the loaded net's "auto" epochs) and the regressor's interval
    # calibration (optional; after fits with a validation split); everything
    # else maps.
    assert set(FORMAT1_FIELDS.values()) == every_field - {
        "layout",
        "categories",
        "train_steps",
        "calibration",
    }


def _sklstm_imports(module):
    """The sklstm modules ``module`` imports, at module level or in functions."""
    package = Path(sklstm.__file__).parent
    tree = ast.parse((package / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.add(node.module or "__init__")
            found.update(alias.name for alias in node.names if node.module is None)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in getattr(node, "names", [])]
            for name in names:
                if name and (name == "sklstm" or name.startswith("sklstm.")):
                    found.add(name.partition(".")[2] or "__init__")
    return {name for name in found if (package / f"{name}.py").exists()} | (
        {"__init__"} & found
    )


def test_model_file_imports_run_one_way():
    # The format module sits below the estimators: it reaches none of them,
    # nor persistence or the package, and only the package imports persistence.
    reached, todo = set(), ["_model_file"]
    while todo:
        for name in _sklstm_imports(todo.pop()) - reached:
            reached.add(name)
            todo.append(name)
    assert reached.isdisjoint(
        {"__init__", "persistence", "_base", "_classifier", "_regressor"}
    )
    package = Path(sklstm.__file__).parent
    importers = {
        path.stem
        for path in package.glob("*.py")
        if "persistence" in _sklstm_imports(path.stem)
    }
    assert importers == {"__init__"}


def test_save_refuses_parameters_that_do_not_fit_the_network(classifier, tmp_path):
    changed = copy.deepcopy(classifier).set_params(output_mode="sequence")
    with pytest.raises(ValueError, match="cannot be saved.*output_mode"):
        changed.save(tmp_path / "model.sklstm")
    assert not (tmp_path / "model.sklstm").exists()


# ---------------------------------------------------------------------------
# Edited files: every check names the file and the problem
def _labels(values, dtype):
    return {"__ndarray__": values, "dtype": np.dtype(dtype).str, "shape": [len(values)]}


def _assert_refused(path, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        sklstm.load(path)
    assert str(path) in str(info.value)


def _update(**values):
    def edit(metadata):
        metadata.update(values)

    return edit


def _set(section, **values):
    def edit(metadata):
        metadata[section].update(values)

    return edit


def _delete(section, key):
    def edit(metadata):
        del metadata[section][key]

    return edit


def _grow_inputs(metadata):
    metadata["fitted"].update(n_step_features=3, n_features_in=3)
    module_kwargs = metadata["module_kwargs"]
    module_kwargs["n_inputs"] = 3
    for key in ("feature_mean", "feature_scale"):
        array = module_kwargs[key]["__tensor__"]
        array.update(__ndarray__=[*array["__ndarray__"], 1.0], shape=[3])


def _extra_epoch(metadata):
    metadata["history"].append(metadata["history"][-1])


CLASSIFIER_EDITS = {
    "more classes than outputs": (
        _set("fitted", classes=_labels(["down", "up", "zzz"], "<U4")),
        r"network has 2 outputs but the number of classes is 3",
    ),
    "unsorted classes": (
        _set("fitted", classes=_labels(["up", "down"], "<U4")),
        r"'classes' must be sorted",
    ),
    "one class": (
        _set("fitted", classes=_labels(["up"], "<U4")),
        r"'classes' must hold at least 2 classes",
    ),
    "classes as a plain list": (
        _set("fitted", classes=["down", "up"]),
        r"'classes' must be a 1-D array",
    ),
    "more step features than the network reads": (
        _set("fitted", n_step_features=3, n_features_in=3),
        r"network reads 2 features per time step but n_step_features is 3",
    ),
    "a network wider than its weights": (
        _grow_inputs,
        r"does not match the network.*has shape",
    ),
    "output_mode of the network": (
        _set("params", output_mode="sequence"),
        r"network's output_mode is 'last' but the parameter output_mode is "
        r"'sequence'",
    ),
    "unknown field": (
        _set("fitted", colour="red"),
        r"unknown fitted fields \['colour'\]",
    ),
    "missing required field": (
        _delete("fitted", "n_iter"),
        r"required fitted fields \['n_iter'\] are missing",
    ),
    "negative hidden_size": (
        _set("params", hidden_size=-1),
        r"invalid parameters: The 'hidden_size' parameter",
    ),
    "string hidden_size": (
        _set("params", hidden_size="abc"),
        r"invalid parameters: The 'hidden_size' parameter",
    ),
    "conv_filters of zero channels": (
        _set("params", conv_filters={"__tuple__": [0]}),
        r"invalid parameters: conv_filters",
    ),
    "loss curve longer than n_iter": (
        _set("fitted", loss_curve=[0.7, 0.6, 0.5]),
        r"'loss_curve' must hold n_iter=2 numbers",
    ),
    "history longer than n_iter": (
        _extra_epoch,
        r"history holds 3 epochs but n_iter is 2",
    ),
    "best score without scores": (
        _set("fitted", validation_scores=None),
        r"'best_validation_score' must be null",
    ),
    "negative seed": (_set("fitted", seed=-1), r"'seed' must be an int in \[0, "),
    "boolean feature count": (
        _set("fitted", n_features_in=True),
        r"'n_features_in' must be an int >= 1, got True",
    ),
    "table with two step features": (
        _set("fitted", tabular_input=True),
        r"'tabular_input' is true .* n_step_features must be 1",
    ),
    "feature names of the wrong length": (
        _set("fitted", feature_names_in=_labels(["a"], object)),
        r"'feature_names_in' must hold n_features_in=2 names",
    ),
    "unknown top-level entry": (
        _update(comment="hi"),
        r"unknown entries \['comment'\]",
    ),
}

REGRESSOR_EDITS = {
    "target_scale of the wrong shape": (
        _set("fitted", target_scale=_labels([1.0, 2.0], "<f8")),
        r"'target_scale' must have shape \(n_outputs,\) = \(1,\)",
    ),
    "2-D target_mean": (
        _set(
            "fitted",
            target_mean={"__ndarray__": [[0.0]], "dtype": "<f8", "shape": [1, 1]},
        ),
        r"'target_mean' must have shape",
    ),
    "target_scale as a list": (
        _set("fitted", target_scale=[1.0]),
        r"'target_scale' must be a float array",
    ),
    "target_scale as a string": (
        _set("fitted", target_scale="1.0"),
        r"'target_scale' must be a float array",
    ),
    "integer target_scale": (
        _set("fitted", target_scale=_labels([1], "<i8")),
        r"'target_scale' must be a float array",
    ),
    "zero target_scale": (
        _set("fitted", target_scale=_labels([0.0], "<f8")),
        r"'target_scale' must be positive",
    ),
    "negative target_scale": (
        _set("fitted", target_scale=_labels([-2.0], "<f8")),
        r"'target_scale' must be positive",
    ),
    "NaN target_mean": (
        _set("fitted", target_mean=_labels([float("nan")], "<f8")),
        r"'target_mean' must be finite",
    ),
    "single output with two outputs": (
        _set("fitted", n_outputs=2),
        r"'single_output' is true, so n_outputs must be 1",
    ),
    "more network outputs than targets": (
        _set("module_kwargs", n_outputs=2),
        r"network has 2 outputs but n_outputs is 1",
    ),
    # The regressor's own parameters are the first thing a classifier lacks.
    "relabelled as a classifier": (
        _update(estimator="LSTMClassifier"),
        r"parameters \['calibration', 'interval_width'\] that this sklstm's "
        r"LSTMClassifier does not know.*corrupt or was edited",
    ),
    "relabelled as a classifier, regressor parameters dropped": (
        lambda metadata: (
            metadata.update(estimator="LSTMClassifier"),
            metadata["params"].pop("interval_width"),
            metadata["params"].pop("calibration"),
        ),
        r"unknown fitted fields \['n_outputs', 'single_output', 'target_mean', "
        r"'target_scale'\]",
    ),
    "missing target_scale": (
        _delete("fitted", "target_scale"),
        r"required fitted fields \['target_scale'\] are missing",
    ),
}


@pytest.mark.parametrize("case", list(CLASSIFIER_EDITS))
def test_edited_classifier_file_is_refused(saved, case):
    edit, pattern = CLASSIFIER_EDITS[case]
    _edit_metadata(saved, edit)
    _assert_refused(saved, pattern)


@pytest.mark.parametrize("case", list(REGRESSOR_EDITS))
def test_edited_regressor_file_is_refused(saved_regressor, case):
    edit, pattern = REGRESSOR_EDITS[case]
    _edit_metadata(saved_regressor, edit)
    _assert_refused(saved_regressor, pattern)


FORMAT1_EDITS = {
    "unknown attribute": (
        _set("fitted", _colour="red"),
        r"unknown fitted attributes \['_colour'\] \(format version 1\)",
    ),
    "missing attribute": (
        _delete("fitted", "_n_step_features"),
        r"required fitted fields \['n_step_features'\] are missing",
    ),
    "zero target scale": (
        _set("fitted", _target_scale=_labels([0.0], "<f8")),
        r"'target_scale' must be positive",
    ),
}


@pytest.mark.parametrize("case", list(FORMAT1_EDITS))
def test_edited_format1_file_is_refused(case, tmp_path):
    edit, pattern = FORMAT1_EDITS[case]
    path = tmp_path / "regressor_format1.sklstm"
    path.write_bytes((DATA / path.name).read_bytes())
    _edit_metadata(path, edit)
    _assert_refused(path, pattern)


def test_non_finite_weights_are_refused(saved):
    from safetensors.torch import load as load_tensors
    from safetensors.torch import save as save_tensors

    entries = _archive_entries(saved)
    tensors = load_tensors(entries["weights.safetensors"])
    name = next(key for key, tensor in tensors.items() if tensor.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    entries["weights.safetensors"] = save_tensors(tensors)
    _write_archive(saved, entries)
    _assert_refused(saved, re.escape(repr(name)) + " holds NaN or infinity")


def test_open_file_objects_are_named_in_errors(saved):
    _edit_metadata(saved, _set("fitted", seed=-1))
    with open(saved, "rb") as file, pytest.raises(ValueError) as info:
        sklstm.load(file)
    assert str(saved) in str(info.value)


# ---------------------------------------------------------------------------
# save behaves like an ordinary file write


@pytest.fixture(scope="module")
def small_model():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 5, 2)).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    return sklstm.LSTMClassifier(hidden_size=3, max_epochs=1, random_state=0).fit(X, y)


def test_save_keeps_permissions_and_follows_the_umask(small_model, tmp_path):
    import os
    import stat

    existing = tmp_path / "existing.sklstm"
    existing.write_bytes(b"old")
    os.chmod(existing, 0o640)
    small_model.save(existing)
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o640
    previous = os.umask(0o027)
    try:
        small_model.save(tmp_path / "new.sklstm")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "new.sklstm").st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "existing.sklstm",
        "new.sklstm",
    ]


def test_save_writes_through_a_symlink(small_model, tmp_path):
    real = tmp_path / "real.sklstm"
    real.write_bytes(b"old")
    link = tmp_path / "link.sklstm"
    link.symlink_to(real)
    small_model.save(link)
    assert link.is_symlink()
    assert sklstm.load(real).n_iter_ == small_model.n_iter_


def test_save_errors_name_the_target_and_leave_no_temporary(small_model, tmp_path):
    missing = tmp_path / "no-such-folder" / "model.sklstm"
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        small_model.save(missing)
    directory = tmp_path / "full"
    directory.mkdir()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    import unittest.mock

    with unittest.mock.patch("os.replace", fail):
        with pytest.raises(OSError, match="model.sklstm.*No space"):
            small_model.save(directory / "model.sklstm")
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize("path", [None, 123, 4.5, ["model.sklstm"]])
def test_save_and_load_refuse_what_is_not_a_file(small_model, path):
    with pytest.raises(TypeError, match="file name"):
        small_model.save(path)
    with pytest.raises(TypeError, match="file name"):
        sklstm.load(path)


def test_text_mode_files_are_refused_binary_ones_work(small_model, tmp_path):
    with open(tmp_path / "model.sklstm", "w") as text:
        with pytest.raises(TypeError, match="binary"):
            small_model.save(text)
    with open(tmp_path / "model.sklstm", "wb") as binary:
        small_model.save(binary)
    with open(tmp_path / "model.sklstm") as text:
        with pytest.raises(TypeError, match="binary"):
            sklstm.load(text)
    with open(tmp_path / "model.sklstm", "rb") as binary:
        assert sklstm.load(binary).n_iter_ == small_model.n_iter_


def test_estimators_outside_the_format_are_refused_and_nothing_is_written(tmp_path):
    class Custom(LSTMRegressor):
        pass

    X, _ = make_classification_sequences(n_samples=20, n_timesteps=6, n_features=2)
    subclassed = Custom(**TINY).fit(X, X[:, -1, 0])
    forecaster = LSTMForecaster(max_epochs=1, hidden_size=4, random_state=0).fit(
        np.arange(1.0, 61.0)
    )
    for estimator in (subclassed, forecaster):
        path = tmp_path / f"{type(estimator).__name__}.sklstm"
        with pytest.raises(TypeError, match="pickle or joblib"):
            sklstm.persistence.save(estimator, path)
        assert not path.exists()
    with pytest.raises(TypeError, match=r"got .*Custom\b"):
        subclassed.save(tmp_path / "custom.sklstm")

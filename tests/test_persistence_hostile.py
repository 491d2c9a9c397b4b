"""Model files crafted to break sklstm.load: bombs, lies, wrong types.

Every case either loads an estimator that is consistent with its network and
predicts, or is refused with a ValueError (TypeError for what is not a file)
that names the file. Nothing may escape as a MemoryError, RecursionError,
OverflowError, KeyError or a torch or skorch error, and nothing a file
declares may make load allocate more than the file justifies.
"""

import copy
import io
import json
import pickle
import re
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import sklstm
from sklstm import LSTMClassifier, LSTMRegressor

from .conftest import make_classification_sequences

SMALL = dict(hidden_size=3, max_epochs=2, conv_filters=None, random_state=0)
METADATA = "metadata.json"
WEIGHTS = "weights.safetensors"
MiB = 2**20
# What a refused hostile file may cost in memory: far below the sizes the
# bombs below expand to or declare, far above what loading a small model
# needs.
MEMORY_BOUND = 50 * MiB


@pytest.fixture(scope="module")
def data():
    return make_classification_sequences(n_samples=30, n_timesteps=5, n_features=2)


@pytest.fixture(scope="module")
def classifier_file(data):
    X, y = data
    file = io.BytesIO()
    LSTMClassifier(**SMALL).fit(X, y).save(file)
    return file.getvalue()


@pytest.fixture(scope="module")
def regressor_file(data):
    X, _ = data
    file = io.BytesIO()
    LSTMRegressor(**SMALL).fit(X, X[:, -1, 0]).save(file)
    return file.getvalue()


@pytest.fixture(scope="module")
def differences_file(data):
    """A classifier that feeds its network the changes of its features."""
    X, y = data
    file = io.BytesIO()
    LSTMClassifier(differences=2, **SMALL).fit(X, y).save(file)
    return file.getvalue()


@pytest.fixture(scope="module")
def strided_file(data):
    """A classifier whose later convolutions read chunk means of 2 steps."""
    X, y = data
    file = io.BytesIO()
    settings = dict(SMALL, conv_filters=(4, 4), conv_kernel_size=3)
    LSTMClassifier(recurrent_stride=2, **settings).fit(X, y).save(file)
    return file.getvalue()


@pytest.fixture(scope="module")
def calibrated_file(data):
    """A regressor with a scale head and the calibration of its intervals."""
    X, _ = data
    file = io.BytesIO()
    model = LSTMRegressor(interval_width="adaptive", early_stopping=True, **SMALL)
    model.fit(X, X[:, -1, 0]).save(file)
    return file.getvalue()


@pytest.fixture(scope="module")
def categorical_file():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 5, 2))
    X[:, :, 1] = rng.randint(0, 4, size=(30, 5))
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    file = io.BytesIO()
    model = LSTMClassifier(categorical_features=[1], **SMALL).fit(X, y)
    model.save(file)
    return file.getvalue()


def _entries(raw):
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _archive(path, entries, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


def _edited(raw, edit):
    entries = _entries(raw)
    metadata = json.loads(entries[METADATA])
    edit(metadata)
    entries[METADATA] = json.dumps(metadata).encode()
    return entries


def _load_or_refuse(path, X, pattern=None):
    """Load ``path``; a refusal must be a ValueError naming it."""
    try:
        model = sklstm.load(path)
    except ValueError as exc:
        assert str(path) in str(exc), exc
        if pattern is not None:
            assert re.search(pattern, str(exc)), exc
        return "refused"
    assert pattern is None, f"loaded, expected a refusal matching {pattern!r}"
    predictions = model.predict(X)
    assert len(predictions) == len(X)
    if hasattr(model, "classes_"):
        assert set(np.unique(predictions)) <= set(model.classes_)
        probabilities = model.predict_proba(X)
        per_step = X.shape[1:2] if model.output_mode == "sequence" else ()
        assert probabilities.shape == (len(X), *per_step, len(model.classes_))
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1, rtol=1e-5)
    else:
        assert np.isfinite(predictions).all()
    if getattr(model, "_calibration", None) is not None:
        # The calibration that loaded gives finite intervals around predict.
        lower, upper = np.moveaxis(model.predict_interval(X, coverage=0.5), -1, 0)
        assert np.isfinite(lower).all() and np.isfinite(upper).all()
        assert (lower <= predictions).all() and (predictions <= upper).all()
    # A loaded estimator is an ordinary one: it copies and pickles.
    pickle.loads(pickle.dumps(model))
    copy.deepcopy(model)
    return "loaded"


def _peak_memory(function):
    tracemalloc.start()
    try:
        function()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# ---------------------------------------------------------------------------
# Zip bombs and lying headers
def _bomb(path, entries, name, size, *, head=b"", fill=b"\0", method=None):
    """``entries`` with member ``name`` replaced by ``size`` bytes that deflate
    to almost nothing, written without holding them in memory."""
    method = zipfile.ZIP_DEFLATED if method is None else method
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for other, content in entries.items():
            if other != name:
                archive.writestr(other, content)
        with archive.open(name, "w", force_zip64=True) as member:
            member.write(head)
            chunk = fill * MiB
            for _ in range(size // MiB):
                member.write(chunk)
    return path


def _patch_headers(path, name, *, file_size=None, flag_bits=None):
    """Rewrite what the local and central headers of ``name`` claim."""
    raw = bytearray(path.read_bytes())
    encoded = name.encode()
    # (signature, offset of flag bits, offset of the uncompressed size,
    # offset of the name length, offset of the name)
    for signature, flags, size, name_length, name_at in (
        (b"PK\x03\x04", 6, 22, 26, 30),
        (b"PK\x01\x02", 8, 24, 28, 46),
    ):
        start = raw.find(signature)
        while start != -1:
            (length,) = struct.unpack_from("<H", raw, start + name_length)
            if raw[start + name_at : start + name_at + length] == encoded:
                if file_size is not None:
                    struct.pack_into("<I", raw, start + size, file_size)
                if flag_bits is not None:
                    struct.pack_into("<H", raw, start + flags, flag_bits)
            start = raw.find(signature, start + 4)
    path.write_bytes(bytes(raw))
    return path


def test_weights_deflate_bomb_stops_at_the_cap(classifier_file, data, tmp_path):
    path = _bomb(
        tmp_path / "bomb.sklstm", _entries(classifier_file), WEIGHTS, 256 * MiB
    )
    assert path.stat().st_size < MiB
    peak = _peak_memory(lambda: _load_or_refuse(path, data[0], WEIGHTS))
    assert peak < MEMORY_BOUND


def test_weights_bomb_after_a_valid_header(classifier_file, data, tmp_path):
    # The safetensors header is genuine; what follows it goes on and on.
    weights = _entries(classifier_file)[WEIGHTS]
    (header_length,) = struct.unpack_from("<Q", weights)
    path = _bomb(
        tmp_path / "bomb.sklstm",
        _entries(classifier_file),
        WEIGHTS,
        256 * MiB,
        head=weights[: 8 + header_length],
    )
    peak = _peak_memory(lambda: _load_or_refuse(path, data[0], WEIGHTS))
    assert peak < MEMORY_BOUND


def test_metadata_deflate_bomb(classifier_file, data, tmp_path):
    metadata = json.loads(_entries(classifier_file)[METADATA])
    # Valid JSON in the making: an object whose last string never ends.
    head = json.dumps(metadata)[:-1].encode() + b', "padding": "'
    path = _bomb(
        tmp_path / "bomb.sklstm",
        _entries(classifier_file),
        METADATA,
        256 * MiB,
        head=head,
        fill=b"a",
    )
    peak = _peak_memory(lambda: _load_or_refuse(path, data[0], METADATA))
    assert peak < MEMORY_BOUND


@pytest.mark.parametrize("name", [METADATA, WEIGHTS])
@pytest.mark.parametrize("claimed", [0, 1000, 2**32 - 1])
def test_lying_file_size_header(classifier_file, data, tmp_path, name, claimed):
    path = _bomb(tmp_path / "liar.sklstm", _entries(classifier_file), name, 128 * MiB)
    _patch_headers(path, name, file_size=claimed)
    peak = _peak_memory(lambda: _load_or_refuse(path, data[0], name))
    assert peak < MEMORY_BOUND


@pytest.mark.parametrize("name", [METADATA, WEIGHTS])
def test_lying_file_size_on_a_genuine_member(classifier_file, data, tmp_path, name):
    path = _archive(tmp_path / "liar.sklstm", _entries(classifier_file))
    _patch_headers(path, name, file_size=10)
    _load_or_refuse(path, data[0], name)


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"]
)
def test_other_compressions_cannot_bomb(classifier_file, data, tmp_path, method):
    # bzip2 and lzma expand far more than deflate, and zipfile decompresses
    # their chunks whole.
    path = _bomb(
        tmp_path / "bomb.sklstm",
        _entries(classifier_file),
        WEIGHTS,
        64 * MiB,
        method=method,
    )
    peak = _peak_memory(lambda: _load_or_refuse(path, data[0], "compress"))
    assert peak < MEMORY_BOUND


def test_encrypted_member_is_refused(classifier_file, data, tmp_path):
    path = _archive(tmp_path / "locked.sklstm", _entries(classifier_file))
    _patch_headers(path, WEIGHTS, flag_bits=0x1)
    _load_or_refuse(path, data[0], "encrypted")


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.6, 0.95])
def test_truncated_archive(classifier_file, data, tmp_path, keep):
    path = tmp_path / "cut.sklstm"
    path.write_bytes(classifier_file[: int(len(classifier_file) * keep)])
    _load_or_refuse(path, data[0], "not an sklstm model file|corrupt")


def test_extra_members_are_ignored(classifier_file, data, tmp_path):
    entries = {**_entries(classifier_file), "notes.txt": b"hello", "a/b.bin": b"x"}
    path = _archive(tmp_path / "extra.sklstm", entries)
    assert _load_or_refuse(path, data[0]) == "loaded"


def test_stored_members_load(classifier_file, data, tmp_path):
    path = _archive(tmp_path / "stored.sklstm", _entries(classifier_file), 0)
    assert _load_or_refuse(path, data[0]) == "loaded"


@pytest.mark.parametrize("missing", [METADATA, WEIGHTS])
def test_missing_members(classifier_file, data, tmp_path, missing):
    entries = _entries(classifier_file)
    del entries[missing]
    _load_or_refuse(_archive(tmp_path / "m.sklstm", entries), data[0], missing)


# ---------------------------------------------------------------------------
# Sizes declared in the metadata that the weights do not back
def _widen(hidden_size):
    def edit(metadata):
        metadata["params"]["hidden_size"] = hidden_size
        metadata["module_kwargs"]["hidden_size"] = hidden_size

    return edit


def _deepen(num_layers):
    def edit(metadata):
        metadata["params"]["num_layers"] = num_layers
        metadata["module_kwargs"]["num_layers"] = num_layers

    return edit


def _many_classes(n_classes):
    def edit(metadata):
        labels = [f"c{i:09d}" for i in range(n_classes)]
        metadata["fitted"]["classes"] = {
            "__ndarray__": labels,
            "dtype": "<U10",
            "shape": [n_classes],
        }
        metadata["module_kwargs"]["n_outputs"] = n_classes

    return edit


def _many_features(n_features):
    def edit(metadata):
        metadata["fitted"].update(n_features_in=n_features, n_step_features=n_features)
        metadata["module_kwargs"]["n_inputs"] = n_features
        metadata["module_kwargs"]["feature_mean"] = None
        metadata["module_kwargs"]["feature_scale"] = None
        metadata["params"]["standardize"] = False

    return edit


def _wide_dtype(metadata):
    metadata["fitted"]["classes"]["dtype"] = "<U200000000"


def _huge_shape(metadata):
    metadata["fitted"]["classes"]["shape"] = [2**40]


DECLARED_SIZES = {
    "hidden_size 4096": _widen(4096),
    "hidden_size 10**12": _widen(10**12),
    "hidden_size 10**1000": _widen(10**1000),
    "num_layers 2000": _deepen(2000),
    "num_layers 10**9": _deepen(10**9),
    "100k classes": _many_classes(100_000),
    "features 10**6": _many_features(10**6),
    "label width 200M": _wide_dtype,
    "classes shape 2**40": _huge_shape,
}


@pytest.mark.parametrize("case", list(DECLARED_SIZES))
def test_declared_sizes_are_checked_before_allocating(
    classifier_file, data, tmp_path, case
):
    path = _archive(
        tmp_path / "declared.sklstm", _edited(classifier_file, DECLARED_SIZES[case])
    )
    peak = _peak_memory(lambda: _load_or_refuse(path, data[0], ""))
    assert peak < MEMORY_BOUND


_RSS_SCRIPT = """
import gc, io, json, resource, sys, zipfile
import sklstm

raw = open(sys.argv[1], "rb").read()
sklstm.load(io.BytesIO(raw))  # warm up: imports, first allocations
gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcomes = []
for hidden_size, num_layers in [(4096, 1), (3, 3000), (2048, 2)]:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    metadata = json.loads(entries["metadata.json"])
    for section in ("params", "module_kwargs"):
        metadata[section].update(hidden_size=hidden_size, num_layers=num_layers)
    entries["metadata.json"] = json.dumps(metadata).encode()
    file = io.BytesIO()
    with zipfile.ZipFile(file, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    try:
        sklstm.load(io.BytesIO(file.getvalue()))
        outcomes.append("loaded")
    except ValueError:
        outcomes.append("refused")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcomes": outcomes, "grown_kib": after - before}))
"""


def test_declared_network_is_not_built_before_the_weights_back_it(
    classifier_file, tmp_path
):
    # torch's allocations escape tracemalloc: measure the process instead.
    path = tmp_path / "model.sklstm"
    path.write_bytes(classifier_file)
    result = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["outcomes"] == ["refused"] * 3
    assert report["grown_kib"] * 1024 < MEMORY_BOUND


# ---------------------------------------------------------------------------
# JSON that parses into trouble
def _nest(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def _deep_text(depth):
    return "[" * depth + "1" + "]" * depth


def _deep_param_raw(raw, depth):
    entries = _entries(raw)
    text = entries[METADATA].decode()
    entries[METADATA] = text.replace(
        '"class_weight": null', f'"class_weight": {_deep_text(depth)}'
    ).encode()
    return entries


@pytest.mark.parametrize("depth", [50, 900, 5000, 200_000])
def test_deeply_nested_json(classifier_file, data, tmp_path, depth):
    path = _archive(tmp_path / "deep.sklstm", _deep_param_raw(classifier_file, depth))
    _load_or_refuse(path, data[0], "")


@pytest.mark.parametrize("depth", [100, 900])
def test_deeply_nested_history(classifier_file, data, tmp_path, depth):
    def edit(metadata):
        metadata["history"][0]["note"] = _nest(depth)

    path = _archive(tmp_path / "deep.sklstm", _edited(classifier_file, edit))
    _load_or_refuse(path, data[0])


OVERFLOWING_NUMBERS = {
    "lr 1e400": ('"lr": 0.003', '"lr": 1e400'),
    "forget_bias -1e400": ('"forget_bias": 1.0', '"forget_bias": -1e400'),
    "hidden_size 1e400": ('"hidden_size": 3', '"hidden_size": 1e400'),
    "hidden_size of 5000 digits": ('"hidden_size": 3', '"hidden_size": ' + "9" * 5000),
    "seed 1e400": ('"seed": ', '"seed": 1e400, "x": '),
    "n_iter 10**30": ('"n_iter": 2', '"n_iter": ' + "1" + "0" * 30),
    "n_train 10**300": ('"n_train": 30', '"n_train": 1' + "0" * 300),
    "loss NaN": ('"loss_curve": [', '"loss_curve": [NaN, '),
    "classes shape 1e400": ('"shape": [2]', '"shape": [1e400]'),
    "classes shape 10**30": ('"shape": [2]', '"shape": [1' + "0" * 30 + "]"),
    "feature_mean 1e400": (
        '"feature_mean": {"__tensor__": {"__ndarray__": [',
        '"feature_mean": {"__tensor__": {"__ndarray__": [1e400, ',
    ),
    "integer label 10**30": ('"dtype": "<U', '"dtype": "<i8", "x": "'),
}


@pytest.mark.parametrize("case", list(OVERFLOWING_NUMBERS))
def test_numbers_that_overflow(classifier_file, data, tmp_path, case):
    old, new = OVERFLOWING_NUMBERS[case]
    entries = _entries(classifier_file)
    text = entries[METADATA].decode()
    assert old in text
    entries[METADATA] = text.replace(old, new, 1).encode()
    path = _archive(tmp_path / "numbers.sklstm", entries)
    _load_or_refuse(path, data[0])


def test_integer_labels_that_overflow(classifier_file, data, tmp_path):
    def edit(metadata):
        metadata["fitted"]["classes"] = {
            "__ndarray__": [0, 10**30],
            "dtype": "<i8",
            "shape": [2],
        }

    path = _archive(tmp_path / "labels.sklstm", _edited(classifier_file, edit))
    _load_or_refuse(path, data[0], "classes")


# ---------------------------------------------------------------------------
# Wrong types, field by field
HOSTILE_VALUES = [
    None,
    True,
    -1,
    0,
    2.5,
    float("inf"),
    "x",
    [],
    [1, "a"],
    {},
    {"__tuple__": [1, 2]},
    {"__dict__": [[[1], 2]]},
    {"__tensor__": "x"},
    {"__tensor__": [10**30]},
    {"__tensor__": {"__ndarray__": ["a"], "dtype": "<U1", "shape": [1]}},
    {"__ndarray__": [1, 2], "dtype": "<f8", "shape": [3]},
    {"__ndarray__": [1, 2], "dtype": "<f8", "shape": [-1]},
    {"__ndarray__": [1, 2], "dtype": "<f8", "shape": [True, 2]},
    {"__ndarray__": [1, 2], "dtype": "V8", "shape": [2]},
    {"__ndarray__": [1, 2], "dtype": "bogus", "shape": [2]},
    {"__ndarray__": [1, 2], "dtype": ["<f8"], "shape": [2]},
    {"__ndarray__": [300], "dtype": "|u1", "shape": [1]},
    {"__ndarray__": ["abcdef"], "dtype": "<U2", "shape": [1]},
    {"__ndarray__": [[1], [2, 3]], "dtype": "<f8", "shape": [2, 1]},
    {"__ndarray__": [[1], 2], "dtype": "O", "shape": [2]},
    {"__mystery__": 1},
]


def _sweep(raw, X, tmp_path, section, keys=None):
    metadata = json.loads(_entries(raw)[METADATA])
    keys = sorted(metadata[section]) if keys is None else keys
    outcomes, failures = {}, []
    for key in keys:
        for index, value in enumerate(HOSTILE_VALUES):

            def edit(metadata, key=key, value=value):
                metadata[section][key] = value

            path = _archive(
                tmp_path / f"{section}-{key}-{index}.sklstm", _edited(raw, edit)
            )
            try:
                outcomes[key, index] = _load_or_refuse(path, X)
            except Exception as exc:  # collected: one report for the sweep
                failures.append(f"{key}={value!r}: {type(exc).__name__}: {exc}")
            path.unlink()
    assert not failures, "\n".join(failures)
    return outcomes


@pytest.mark.parametrize("section", ["params", "fitted", "module_kwargs"])
def test_every_field_with_every_wrong_type(classifier_file, data, tmp_path, section):
    outcomes = _sweep(classifier_file, data[0], tmp_path, section)
    assert "refused" in outcomes.values()


@pytest.mark.parametrize("section", ["fitted", "module_kwargs"])
def test_every_regressor_field_with_every_wrong_type(
    regressor_file, data, tmp_path, section
):
    _sweep(regressor_file, data[0], tmp_path, section)


@pytest.mark.parametrize(
    "section, key",
    [
        ("fitted", "calibration"),
        ("module_kwargs", "n_scale_outputs"),
        ("params", "interval_width"),
    ],
)
def test_every_calibration_field_with_every_wrong_type(
    calibrated_file, data, tmp_path, section, key
):
    outcomes = _sweep(calibrated_file, data[0], tmp_path, section, keys=[key])
    assert set(outcomes.values()) == {"refused"}


def _calibration(size, scores, dtype="<f8"):
    """The JSON form of a regressor's calibration."""
    shape = [len(scores)] + ([len(scores[0])] if scores else [])
    array = {"__ndarray__": scores, "dtype": dtype, "shape": shape}
    return {"__dict__": [["size", size], ["scores", array]]}


def _set_calibration(value):
    def edit(metadata):
        metadata["fitted"]["calibration"] = value

    return edit


CALIBRATION_EDITS = {
    "size 0": (_calibration(0, []), "size must be an int >= 1"),
    "size true": (_calibration(True, [[1.0]]), "size must be an int >= 1"),
    "size 2.0": (_calibration(2.0, [[1.0], [2.0]]), "size must be an int >= 1"),
    "size 10**30, 6 scores": (
        _calibration(10**30, [[float(i)] for i in range(6)]),
        r"scores must be a float array of shape \(1000, 1\)",
    ),
    "more scores than the size": (
        _calibration(2, [[1.0], [2.0], [3.0]]),
        r"shape \(2, 1\)",
    ),
    "scores for two outputs": (
        _calibration(2, [[1.0, 1.0], [2.0, 2.0]]),
        r"shape \(2, 1\)",
    ),
    "integer scores": (_calibration(2, [[1], [2]], "<i8"), "float array"),
    "unsorted scores": (_calibration(3, [[1.0], [3.0], [2.0]]), "sorted"),
    "negative score": (_calibration(2, [[-1.0], [2.0]]), "non-negative"),
    "infinite score": (_calibration(2, [[1.0], [float("inf")]]), "finite"),
    "NaN score": (_calibration(2, [[1.0], [float("nan")]]), "finite"),
    "extra key": (
        {"__dict__": [["size", 1], ["scores", 1], ["coverage", 0.9]]},
        r"keys \['scores', 'size'\]",
    ),
    "a list": ([6, [[1.0]]], r"keys \['scores', 'size'\]"),
}


@pytest.mark.parametrize("case", list(CALIBRATION_EDITS))
def test_calibrations_that_cannot_be(calibrated_file, data, tmp_path, case):
    value, pattern = CALIBRATION_EDITS[case]
    path = _archive(
        tmp_path / "calibration.sklstm",
        _edited(calibrated_file, _set_calibration(value)),
    )
    _load_or_refuse(path, data[0], f"calibration.*{pattern}")


def test_calibration_of_the_largest_size_loads(calibrated_file, data, tmp_path):
    scores = [[float(i)] for i in range(1000)]
    path = _archive(
        tmp_path / "large.sklstm",
        _edited(calibrated_file, _set_calibration(_calibration(10**6, scores))),
    )
    assert _load_or_refuse(path, data[0]) == "loaded"
    assert sklstm.load(path)._calibration["size"] == 10**6


def test_calibration_is_dropped_nowhere(calibrated_file, data, tmp_path):
    # The round trip keeps it whole; removing it gives a regressor that
    # says it has no calibration rather than a broken one.
    model = sklstm.load(io.BytesIO(calibrated_file))
    # Five networks held out every one of the sequences (calibration="auto").
    assert model._calibration["size"] == len(data[0])
    path = _archive(
        tmp_path / "bare.sklstm",
        _edited(calibrated_file, lambda m: m["fitted"].pop("calibration")),
    )
    bare = sklstm.load(path)
    with pytest.raises(ValueError, match="no calibration"):
        bare.predict_interval(data[0])


@pytest.mark.parametrize("section", ["fitted", "module_kwargs"])
def test_every_categorical_field_with_every_wrong_type(
    categorical_file, data, tmp_path, section
):
    X, _ = data
    X = X.copy()
    X[:, :, 1] = 1
    _sweep(categorical_file, X, tmp_path, section)


@pytest.mark.parametrize(
    "key",
    [
        "format",
        "format_version",
        "sklstm_version",
        "torch_version",
        "estimator",
        "params",
        "fitted",
        "module_kwargs",
        "history",
    ],
)
def test_top_level_entries_with_wrong_types(classifier_file, data, tmp_path, key):
    for index, value in enumerate([*HOSTILE_VALUES, [{}], [[]], 2.0, "2"]):

        def edit(metadata, value=value):
            metadata[key] = value

        path = _archive(
            tmp_path / f"{key}-{index}.sklstm", _edited(classifier_file, edit)
        )
        _load_or_refuse(path, data[0])


def test_metadata_that_is_not_an_object(classifier_file, data, tmp_path):
    for index, text in enumerate([b"[]", b"null", b"1e400", b"\xff\xfe", b""]):
        entries = {**_entries(classifier_file), METADATA: text}
        path = _archive(tmp_path / f"{index}.sklstm", entries)
        _load_or_refuse(path, data[0], METADATA)


# ---------------------------------------------------------------------------
# Metadata that tells another network's story
def _both(**values):
    def edit(metadata):
        metadata["params"].update(values)
        metadata["module_kwargs"].update(values)

    return edit


def _module(**values):
    def edit(metadata):
        metadata["module_kwargs"].update(values)

    return edit


def _relabel(name):
    def edit(metadata):
        metadata["estimator"] = name

    return edit


MISMATCHES = {
    "regressor relabelled as classifier": ("regressor", _relabel("LSTMClassifier")),
    "classifier relabelled as regressor": ("classifier", _relabel("LSTMRegressor")),
    "output_mode in params only": (
        "classifier",
        lambda m: m["params"].update(output_mode="sequence"),
    ),
    "output_mode in the network only": ("classifier", _module(output_mode="sequence")),
    "cell in the network only": ("classifier", _module(cell="gru")),
    "unknown cell": ("classifier", _both(cell="rnn")),
    "hidden_size in the network only": ("classifier", _module(hidden_size=5)),
    "bidirectional in the network only": ("classifier", _module(bidirectional=True)),
    "pooling in the network only": ("classifier", _module(pooling="attention")),
    "sequence_norm in the network only": ("classifier", _module(sequence_norm=None)),
    "conv in the network only": (
        "classifier",
        _module(conv_filters={"__tuple__": [4]}, conv_kernel_sizes={"__tuple__": [3]}),
    ),
    "missing indicator out of range": (
        "classifier",
        _module(missing_indicators={"__tuple__": [7]}),
    ),
    "embeddings without categories": (
        "classifier",
        _module(
            categorical_sizes={"__tuple__": [5]}, embedding_sizes={"__tuple__": [2]}
        ),
    ),
    "static features without a layout": ("classifier", _module(static_numeric=2)),
    "unknown network argument": ("classifier", _module(colour="red")),
    "dropout of 5": ("classifier", _module(dropout=5)),
    "standardize off in params only": (
        "classifier",
        lambda m: m["params"].update(standardize=False),
    ),
    "length scaling without the maximum": (
        "classifier",
        _module(length_scaling={"__tuple__": [3.0, 0.5]}),
    ),
    "length scaling with a negative scale": (
        "classifier",
        _module(length_scaling={"__tuple__": [3.0, -0.5]}, conv_max=True),
    ),
    "length scaling of one number": (
        "classifier",
        _module(length_scaling={"__tuple__": [3.0]}, conv_max=True),
    ),
    "conv_max given as 1": ("classifier", _module(conv_max=1)),
    "pooling auto with a max-pooled network": (
        "classifier",
        lambda m: (
            m["params"].update(pooling="auto"),
            m["module_kwargs"].update(pooling="max"),
        ),
    ),
    "lengths in the network, length_aware=False": (
        "classifier",
        lambda m: (
            m["params"].update(length_aware=False),
            m["module_kwargs"].update(
                length_scaling={"__tuple__": [3.0, 0.5]}, conv_max=True
            ),
        ),
    ),
    # Each of these would load and predict from the wrong input but for
    # the check of the differences.
    "differences of another half span": ("differences", _module(differences=1)),
    "differences without their scale": (
        "differences",
        _module(difference_scale=None),
    ),
    "differences auto with a half span it never gives": (
        "differences",
        lambda m: m["params"].update(differences="auto"),
    ),
    "a difference scale without differences": (
        "classifier",
        lambda m: (
            m["params"].update(differences=0),
            m["module_kwargs"].update(differences=0, difference_scale=[1.0]),
        ),
    ),
    # The convolutions would read chunks of another size, or read chunks
    # where the network has nothing to stride.
    "conv_stride on a network that does not stride": (
        "classifier",
        _module(conv_stride=2),
    ),
    "conv_stride other than the recurrent stride": (
        "strided",
        _module(conv_stride=3),
    ),
    "conv_stride given as True": ("strided", _module(conv_stride=True)),
    "conv_stride other than the parameter's": (
        "strided",
        lambda metadata: metadata["params"].update(conv_stride=1),
    ),
    "categories of another size": (
        "categorical",
        _module(categorical_sizes={"__tuple__": [40]}),
    ),
    "embedding widths that do not match the sizes": (
        "categorical",
        _module(embedding_sizes={"__tuple__": [2, 2]}),
    ),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_metadata_describing_another_network(request, data, tmp_path, case):
    which, edit = MISMATCHES[case]
    raw = request.getfixturevalue(f"{which}_file")
    path = _archive(tmp_path / "other.sklstm", _edited(raw, edit))
    _load_or_refuse(path, data[0], "")


def test_a_file_from_before_the_convolutions_followed_the_stride(
    strided_file, data, tmp_path
):
    # Such files have no conv_stride: their convolutions read every step.
    edited = _edited(strided_file, lambda m: m["module_kwargs"].pop("conv_stride"))
    path = _archive(tmp_path / "older.sklstm", edited)
    _load_or_refuse(path, data[0])
    assert sklstm.load(path).net_.module_.conv_stride == 1
    current = sklstm.load(io.BytesIO(strided_file))
    assert current.net_.module_.conv_stride == 2


def test_consistent_sequence_relabelling_loads_or_is_refused(
    classifier_file, data, tmp_path
):
    # A "last" network relabelled "sequence" everywhere has the same tensors.
    path = _archive(
        tmp_path / "seq.sklstm", _edited(classifier_file, _both(output_mode="sequence"))
    )
    _load_or_refuse(path, data[0])


SCALE_HEAD_MISMATCHES = {
    "interval_width constant on a scale head": (
        "calibrated",
        lambda m: m["params"].update(interval_width="constant"),
    ),
    "interval_width adaptive without a scale head": (
        "regressor",
        lambda m: m["params"].update(interval_width="adaptive"),
    ),
    "a scale head in the network only": ("regressor", _module(n_scale_outputs=1)),
    "two scales for one output": ("calibrated", _module(n_scale_outputs=2)),
    "scale head on a classifier": ("classifier", _module(n_scale_outputs=2)),
}


@pytest.mark.parametrize("case", list(SCALE_HEAD_MISMATCHES))
def test_scale_heads_that_do_not_match(request, data, tmp_path, case):
    which, edit = SCALE_HEAD_MISMATCHES[case]
    raw = request.getfixturevalue(f"{which}_file")
    path = _archive(tmp_path / "scales.sklstm", _edited(raw, edit))
    _load_or_refuse(path, data[0], "scale outputs")


# ---------------------------------------------------------------------------
# Weights that are not the network's
def _replace_weights(raw, change):
    from safetensors.torch import load as load_tensors
    from safetensors.torch import save as save_tensors

    entries = _entries(raw)
    tensors = load_tensors(entries[WEIGHTS])
    change(tensors)
    entries[WEIGHTS] = save_tensors(tensors)
    return entries


def _first(tensors):
    """A weight matrix that is not square, so that reshaping it shows."""
    return next(
        key
        for key in sorted(tensors)
        if tensors[key].ndim == 2 and len(set(tensors[key].shape)) == 2
    )


WEIGHT_EDITS = {
    "float64": lambda t: t.update({k: v.double() for k, v in t.items()}),
    "float16": lambda t: t.update({k: v.half() for k, v in t.items()}),
    "int32": lambda t: t.update({_first(t): t[_first(t)].int()}),
    "bool": lambda t: t.update({_first(t): t[_first(t)] > 0}),
    "transposed": lambda t: t.update({_first(t): t[_first(t)].T.contiguous()}),
    "flattened": lambda t: t.update({_first(t): t[_first(t)].flatten()}),
    "one tensor short": lambda t: t.pop(_first(t)),
    "one tensor extra": lambda t: t.update(extra=t[_first(t)].clone()),
    "renamed": lambda t: t.update(renamed=t.pop(_first(t))),
    "infinite": lambda t: t[_first(t)].fill_(float("inf")),
}


@pytest.mark.parametrize("case", list(WEIGHT_EDITS))
def test_weights_of_the_wrong_dtype_or_shape(classifier_file, data, tmp_path, case):
    path = _archive(
        tmp_path / "weights.sklstm",
        _replace_weights(classifier_file, WEIGHT_EDITS[case]),
    )
    _load_or_refuse(path, data[0], "weight|tensor")


def _raw_weights(header, data=b""):
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(text)) + text + data


RAW_WEIGHTS = {
    "empty": b"",
    "seven bytes": b"\1" * 7,
    "header length 2**63": struct.pack("<Q", 2**63) + b"{}",
    "header length past the end": struct.pack("<Q", 1000) + b"{}",
    "header not JSON": _raw_weights(b"{{{{"),
    "header a list": _raw_weights([]),
    "header nested": _raw_weights(b"[" * 100_000 + b"]" * 100_000),
    "tensor of 2**40 floats": _raw_weights(
        {"head.bias": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}}
    ),
    "offsets past the data": _raw_weights(
        {"head.bias": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8000]}},
        b"\0" * 8,
    ),
    "unknown dtype": _raw_weights(
        {"head.bias": {"dtype": "Q99", "shape": [2], "data_offsets": [0, 8]}},
        b"\0" * 8,
    ),
}


@pytest.mark.parametrize("case", list(RAW_WEIGHTS))
def test_weights_that_are_not_safetensors(classifier_file, data, tmp_path, case):
    entries = {**_entries(classifier_file), WEIGHTS: RAW_WEIGHTS[case]}
    path = _archive(tmp_path / "raw.sklstm", entries)
    peak = _peak_memory(lambda: _load_or_refuse(path, data[0], WEIGHTS))
    assert peak < MEMORY_BOUND


def test_genuine_header_with_too_much_data(classifier_file, data, tmp_path):
    entries = _entries(classifier_file)
    entries[WEIGHTS] += b"\0" * 1000
    _load_or_refuse(_archive(tmp_path / "long.sklstm", entries), data[0], WEIGHTS)


# ---------------------------------------------------------------------------
# What load and save accept
@pytest.mark.parametrize("path", [None, 123, b"model.sklstm", object()])
def test_load_refuses_what_is_not_a_file(path):
    with pytest.raises(TypeError, match="file name|file object"):
        sklstm.load(path)


def test_bytes_io_round_trip(classifier_file, data):
    X, _ = data
    model = sklstm.load(io.BytesIO(classifier_file))
    file = io.BytesIO()
    model.save(file)
    again = sklstm.load(io.BytesIO(file.getvalue()))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


def test_file_objects_of_the_wrong_kind(classifier_file, tmp_path):
    model = sklstm.load(io.BytesIO(classifier_file))
    path = tmp_path / "model.sklstm"
    path.write_bytes(classifier_file)
    with pytest.raises(TypeError, match="binary"):
        sklstm.load(io.StringIO("text"))
    with open(path) as text, pytest.raises(TypeError, match="binary"):
        sklstm.load(text)
    with open(path, "rb") as read_only, pytest.raises(TypeError, match="writ"):
        model.save(read_only)
    with open(path, "ab") as write_only, pytest.raises(TypeError, match="read"):
        sklstm.load(write_only)
    with open(path, "rb") as closed:
        pass
    with pytest.raises(ValueError, match="closed"):
        sklstm.load(closed)


class _Unseekable(io.RawIOBase):
    def __init__(self, raw):
        self._stream = io.BytesIO(raw)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._stream.readinto(buffer)


def test_unseekable_file_object(classifier_file):
    with pytest.raises(TypeError, match="seek"):
        sklstm.load(_Unseekable(classifier_file))

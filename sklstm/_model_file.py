"""The sklstm model file: its format, its schema, writing and reading it.

A model file is a zip archive of two members:

``metadata.json``
    ``format`` (``"sklstm-model"``), ``format_version``, ``sklstm_version``,
    ``torch_version``, ``estimator`` (the class name), ``params`` (from
    ``get_params``), ``fitted`` (the fitted state listed in
    :data:`FITTED_STATE`, by field name), ``module_kwargs`` (the arguments of
    the network) and ``history`` (skorch's per-epoch records).
``weights.safetensors``
    The network's state dict.

The fitted state is written under stable field names, never under the
estimators' attribute names, so that renaming an attribute cannot change the
format; :data:`FITTED_STATE` maps one to the other and says how each field
is checked on load. Files of format version 1 stored attribute names; they
are read through :data:`FORMAT1_FIELDS`.

This module knows no estimator class: ``sklstm.persistence.load`` passes
the classes in, and :meth:`BaseLSTM.save <sklstm._base.BaseLSTM.save>` calls
:func:`write_model_file`, so that imports run one way only.
"""

from __future__ import annotations

import io
import json
import numbers
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._device import resolve_device
from ._trainer import restore_net
from ._version import __version__

FORMAT_NAME = "sklstm-model"
FORMAT_VERSION = 2

_METADATA = "metadata.json"
_WEIGHTS = "weights.safetensors"
_TOP_LEVEL_KEYS = (
    "format",
    "format_version",
    "sklstm_version",
    "torch_version",
    "estimator",
    "params",
    "fitted",
    "module_kwargs",
    "history",
)
# Far above what any real model needs (the history of 100k epochs is a few
# MiB), low enough that a crafted archive cannot exhaust memory.
_MAX_METADATA_BYTES = 64 * 2**20
_PICKLE_PROTOCOL_BYTE = 0x80
# The random seed also seeds numpy's RandomState (the validation split),
# which takes 32-bit seeds.
_MAX_SEED = 2**32 - 1


class _Invalid(ValueError):
    """A value the schema refuses; the message says what is wrong with it."""


class _Unsaveable(TypeError):
    """A value that has no JSON form; ``args[0]`` says where it sits."""


# ---------------------------------------------------------------------------
# Validators. Each takes the decoded value and the fields validated before it
# (in table order) and returns the value to set, or raises _Invalid.
def _clip(text, limit=300):
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value):
    return _clip(repr(value), 80)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(minimum, maximum=None):
    def check(value, fields):
        if (
            not _is_int(value)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            bounds = (
                f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            )
            raise _Invalid(f"must be an int {bounds}, got {_show(value)}")
        return int(value)

    return check


def _boolean(value, fields):
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_show(value)}")
    return value


def _tabular_input(value, fields):
    _boolean(value, fields)
    # A 2-D table is one univariate sequence per row: its columns are time
    # steps, each holding one feature.
    if value and fields["n_step_features"] != 1:
        raise _Invalid(
            "is true (fitted on a 2-D table), so n_step_features must be 1, "
            f"got {fields['n_step_features']}"
        )
    layout = fields.get("layout")
    if not value and layout is not None:
        if fields["n_features_in"] != len(layout["columns"]):
            raise _Invalid(
                f"is false and the input was tabular, so n_features_in "
                f"({fields['n_features_in']}) must equal the layout's "
                f"{len(layout['columns'])} columns"
            )
    elif not value and fields["n_features_in"] != fields["n_step_features"]:
        raise _Invalid(
            "is false (fitted on sequences), so n_features_in "
            f"({fields['n_features_in']}) must equal n_step_features "
            f"({fields['n_step_features']})"
        )
    return value


def _feature_names(value, fields):
    if (
        not isinstance(value, np.ndarray)
        or value.ndim != 1
        or not all(isinstance(name, str) for name in value)
    ):
        raise _Invalid(f"must be a 1-D array of strings, got {_show(value)}")
    if len(value) != fields["n_features_in"]:
        raise _Invalid(
            f"must hold n_features_in={fields['n_features_in']} names, holds "
            f"{len(value)}"
        )
    # scikit-learn's feature-name checks expect an object array.
    return np.asarray(value, dtype=object)


_LAYOUT_LISTS = ("numeric", "categorical", "static_numeric", "static_categorical")


def _layout(value, fields):
    """Which input columns were numeric, categorical and static (or None)."""
    if value is None:
        return None
    keys = {"columns", "kinds", "time_deltas", *_LAYOUT_LISTS}
    if not isinstance(value, dict) or set(value) != keys:
        raise _Invalid(f"must be null or an object with keys {sorted(keys)}")
    columns = value["columns"]
    if not isinstance(columns, list) or not all(
        isinstance(c, str) or _is_int(c) for c in columns
    ):
        raise _Invalid("columns must be a list of names or positions")
    positions = []
    for key in _LAYOUT_LISTS:
        items = value[key]
        if not isinstance(items, list) or not all(
            _is_int(i) and 0 <= i < len(columns) for i in items
        ):
            raise _Invalid(f"{key} must list positions among {len(columns)} columns")
        positions.extend(items)
    if sorted(positions) != list(range(len(columns))):
        raise _Invalid("must place every column exactly once")
    kinds = value["kinds"]
    if not isinstance(kinds, list) or len(kinds) != len(columns):
        raise _Invalid("kinds must hold one kind per column")
    if any(kind not in ("numeric", "categorical") for kind in kinds):
        raise _Invalid("kinds must be 'numeric' or 'categorical'")
    if not isinstance(value["time_deltas"], bool):
        raise _Invalid("time_deltas must be true or false")
    expected = len(value["numeric"]) + value["time_deltas"]
    if expected != fields["n_step_features"]:
        raise _Invalid(
            f"gives {expected} numeric step features but n_step_features is "
            f"{fields['n_step_features']}"
        )
    return value


def _categories(value, fields):
    """The categories learned for each categorical column."""
    layout = fields.get("layout")
    if layout is None:
        raise _Invalid("is set but the layout says the input had no categories")
    expected = len(layout["categorical"]) + len(layout["static_categorical"])
    if not isinstance(value, list) or len(value) != expected:
        raise _Invalid(f"must be a list of {expected} arrays, one per column")
    checked = []
    for categories in value:
        if not isinstance(categories, np.ndarray) or categories.ndim != 1:
            raise _Invalid("must hold 1-D arrays")
        if not all(
            isinstance(c, str) or (_is_number(c) and np.isfinite(c))
            for c in categories.tolist()
        ):
            raise _Invalid("must hold strings, numbers or booleans")
        checked.append(np.asarray(categories.tolist(), dtype=object))
    return checked


def _number_list(value, fields):
    n_iter = fields["n_iter"]
    if not isinstance(value, list) or not all(_is_number(item) for item in value):
        raise _Invalid(f"must be a list of numbers, got {_show(value)}")
    if len(value) != n_iter:
        raise _Invalid(
            f"must hold n_iter={n_iter} numbers (one per epoch), holds {len(value)}"
        )
    return [float(item) for item in value]


def _optional_number_list(value, fields):
    return None if value is None else _number_list(value, fields)


def _best_validation_score(value, fields):
    if fields["validation_scores"] is None:
        if value is not None:
            raise _Invalid(
                f"must be null without validation_scores, got {_show(value)}"
            )
        return None
    if not _is_number(value):
        raise _Invalid(f"must be a number, got {_show(value)}")
    return float(value)


def _class_labels(value, fields):
    if (
        not isinstance(value, np.ndarray)
        or value.ndim != 1
        or value.dtype.kind not in "biufUO"
    ):
        raise _Invalid(f"must be a 1-D array of labels, got {_show(value)}")
    if value.dtype.kind == "O" and not all(
        isinstance(label, (str, numbers.Real)) for label in value
    ):
        raise _Invalid(f"must hold strings or numbers, got {_show(value)}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise _Invalid(f"must hold finite labels, got {_show(value)}")
    try:
        ordered = np.unique(value)
    except TypeError:
        raise _Invalid(
            f"must hold labels that sort together, got {_show(value)}"
        ) from None
    # The network's outputs are in the order of np.unique, as fit sorts them.
    if len(ordered) != len(value) or not (ordered == value).all():
        raise _Invalid(f"must be sorted and without repeats, got {_show(value)}")
    if len(value) < 2:
        raise _Invalid(f"must hold at least 2 classes, got {_show(value)}")
    return value


def _target_vector(*, positive):
    def check(value, fields):
        n_outputs = fields["n_outputs"]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise _Invalid(f"must be a float array, got {_show(value)}")
        if value.shape != (n_outputs,):
            raise _Invalid(
                f"must have shape (n_outputs,) = ({n_outputs},), got shape "
                f"{value.shape}"
            )
        if not np.isfinite(value).all():
            raise _Invalid(f"must be finite, got {_show(value)}")
        if positive and not (value > 0).all():
            raise _Invalid(f"must be positive, got {_show(value)}")
        return value.astype(np.float64)

    return check


def _single_output(value, fields):
    _boolean(value, fields)
    if value and fields["n_outputs"] != 1:
        raise _Invalid(f"is true, so n_outputs must be 1, got {fields['n_outputs']}")
    return value


# ---------------------------------------------------------------------------
# The schema.
@dataclass(frozen=True)
class Field:
    """One piece of fitted state in a model file.

    Parameters
    ----------
    name : str
        The field's name in the file; part of the format, never renamed.
    attribute : str
        The estimator attribute it is read from and restored to.
    required : bool
        Whether every fitted estimator has it (``feature_names_in_`` does
        only after a fit on a DataFrame with string column names).
    check : callable
        ``check(value, fields)`` returns the value to restore or raises
        ``_Invalid``; ``fields`` holds the fields before it in the table.
    """

    name: str
    attribute: str
    required: bool
    check: Callable


_COMMON_FIELDS = (
    Field("seed", "_seed", True, _integer(0, _MAX_SEED)),
    Field("n_train", "_n_train", True, _integer(1)),
    Field("use_validation", "_use_validation", True, _boolean),
    Field("n_features_in", "n_features_in_", True, _integer(1)),
    Field("feature_names_in", "feature_names_in_", False, _feature_names),
    Field("n_step_features", "_n_step_features", True, _integer(0)),
    Field("layout", "_layout", False, _layout),
    Field("categories", "categories_", False, _categories),
    Field("tabular_input", "_tabular_input", True, _tabular_input),
    Field("n_iter", "n_iter_", True, _integer(1)),
    Field("loss_curve", "loss_curve_", True, _number_list),
    Field("validation_scores", "validation_scores_", True, _optional_number_list),
    Field(
        "best_validation_score", "best_validation_score_", True, _best_validation_score
    ),
)

#: The fitted state each estimator writes, in the order fields are checked.
FITTED_STATE = {
    "LSTMClassifier": (
        *_COMMON_FIELDS,
        Field("classes", "classes_", True, _class_labels),
    ),
    "LSTMRegressor": (
        *_COMMON_FIELDS,
        Field("n_outputs", "n_outputs_", True, _integer(1)),
        Field("single_output", "_single_output", True, _single_output),
        Field("target_mean", "_target_mean", True, _target_vector(positive=False)),
        Field("target_scale", "_target_scale", True, _target_vector(positive=True)),
    ),
}

# What the network's output layer must produce, from the fitted fields.
_NETWORK_OUTPUTS = {
    "LSTMClassifier": ("the number of classes", lambda fields: len(fields["classes"])),
    "LSTMRegressor": ("n_outputs", lambda fields: fields["n_outputs"]),
}

#: Format 1 stored the fitted state under the attribute names of its time.
FORMAT1_FIELDS = {
    "_seed": "seed",
    "_n_train": "n_train",
    "_use_validation": "use_validation",
    "n_features_in_": "n_features_in",
    "feature_names_in_": "feature_names_in",
    "_n_step_features": "n_step_features",
    "_tabular_input": "tabular_input",
    "n_iter_": "n_iter",
    "loss_curve_": "loss_curve",
    "validation_scores_": "validation_scores",
    "best_validation_score_": "best_validation_score",
    "classes_": "classes",
    "n_outputs_": "n_outputs",
    "_single_output": "single_output",
    "_target_mean": "target_mean",
    "_target_scale": "target_scale",
}


# ---------------------------------------------------------------------------
# Values <-> JSON. Containers are tagged so that tuples, dicts with non-string
# keys, arrays (with their dtype) and tensors come back as what they were.
_ARRAY_KINDS = set("biufUO")


def _encode(value, where):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biufU":
        return _encode(value.item(), where)
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, where) for item in value]}
    if isinstance(value, list):
        return [_encode(item, where) for item in value]
    if isinstance(value, dict):
        return {
            "__dict__": [
                [_encode(key, where), _encode(item, where)]
                for key, item in value.items()
            ]
        }
    if isinstance(value, torch.Tensor):
        return {"__tensor__": _encode(value.detach().cpu().numpy(), where)}
    if isinstance(value, np.ndarray) and value.dtype.kind in _ARRAY_KINDS:
        items = value.tolist()
        if value.dtype.kind == "O":
            if value.ndim != 1:
                raise _Unsaveable(where)
            items = _encode(items, where)
        return {
            "__ndarray__": items,
            "dtype": value.dtype.str,
            "shape": list(value.shape),
        }
    raise _Unsaveable(where)


def _decode(value):
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__tuple__"}:
        return tuple(_decode(item) for item in value["__tuple__"])
    if set(value) == {"__dict__"}:
        return {_decode(key): _decode(item) for key, item in value["__dict__"]}
    if set(value) == {"__tensor__"}:
        return torch.as_tensor(_decode(value["__tensor__"]))
    if set(value) == {"__ndarray__", "dtype", "shape"}:
        dtype = np.dtype(value["dtype"])
        if dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"unsupported array dtype {value['dtype']!r}")
        shape = tuple(int(size) for size in value["shape"])
        if dtype.kind == "O":
            items = _decode(value["__ndarray__"])
            if len(shape) != 1 or len(items) != shape[0]:
                raise ValueError("an object array does not match its shape")
            array = np.empty(shape, dtype=object)
            array[:] = items
            return array
        return np.asarray(value["__ndarray__"], dtype=dtype).reshape(shape)
    raise ValueError(f"unknown tagged value with keys {sorted(value)}")


def _decode_mapping(value, what):
    if not isinstance(value, dict):
        raise _Invalid(f"{what} is not a JSON object")
    try:
        return {str(key): _decode(item) for key, item in value.items()}
    except (ValueError, TypeError, RecursionError) as exc:
        raise _Invalid(f"{what} cannot be decoded ({exc})") from None


# ---------------------------------------------------------------------------
# Checks shared by writing and reading.
def _check_fitted(name, fitted):
    """Validate decoded fitted fields; return {field name: value to restore}."""
    schema = FITTED_STATE[name]
    known = {field.name for field in schema}
    unknown = sorted(set(fitted) - known)
    if unknown:
        raise _Invalid(f"unknown fitted fields {unknown}; {name} has {sorted(known)}")
    missing = [
        field.name for field in schema if field.required and field.name not in fitted
    ]
    if missing:
        raise _Invalid(f"required fitted fields {missing} are missing")
    checked = {}
    for field in schema:
        if field.name in fitted:
            try:
                checked[field.name] = field.check(fitted[field.name], checked)
            except _Invalid as exc:
                raise _Invalid(f"fitted field {field.name!r} {exc}") from None
    return checked


def _check_network(name, fields, module_kwargs, output_mode):
    """The network that ``module_kwargs`` describes must fit the fitted state."""
    for key, minimum in (("n_inputs", 0), ("n_outputs", 1)):
        if not _is_int(module_kwargs.get(key)) or module_kwargs[key] < minimum:
            raise _Invalid(
                f"module_kwargs {key} must be an int >= {minimum}, got "
                f"{_show(module_kwargs.get(key))}"
            )
    categories = fields.get("categories")
    if categories is not None:
        codes = [len(c) + 2 for c in categories]
        sizes = list(module_kwargs.get("categorical_sizes", ())) + list(
            module_kwargs.get("static_sizes", ())
        )
        if codes != sizes:
            raise _Invalid(
                f"the network's embeddings take {sizes} codes but the "
                f"categories give {codes}"
            )
    description, expected_outputs = _NETWORK_OUTPUTS[name]
    if module_kwargs["n_outputs"] != expected_outputs(fields):
        raise _Invalid(
            f"the network has {module_kwargs['n_outputs']} outputs but "
            f"{description} is {expected_outputs(fields)}"
        )
    if module_kwargs["n_inputs"] != fields["n_step_features"]:
        raise _Invalid(
            f"the network reads {module_kwargs['n_inputs']} features per time "
            f"step but n_step_features is {fields['n_step_features']}"
        )
    if module_kwargs.get("output_mode") != output_mode:
        raise _Invalid(
            f"the network's output_mode is {_show(module_kwargs.get('output_mode'))} "
            f"but the parameter output_mode is {output_mode!r}"
        )


def _check_parameters(estimator):
    """Run the estimator's own parameter validation; raise _Invalid."""
    try:
        estimator._validate_params()
        estimator._check_parameters()
    except (ValueError, TypeError) as exc:
        # Clipped: the message quotes the value, which a file can make huge.
        raise _Invalid(f"invalid parameters: {_clip(str(exc).rstrip('.'))}") from None


# ---------------------------------------------------------------------------
# Writing.
def write_model_file(estimator, path):
    """Save a fitted estimator to ``path`` without pickle.

    See :meth:`LSTMClassifier.save`; this is the function behind it.

    Parameters
    ----------
    estimator : LSTMClassifier or LSTMRegressor
        A fitted estimator of exactly one of these classes.
    path : str, path-like or binary file object
        Where to write; an existing file is replaced once the new one is
        complete.
    """
    check_is_fitted(estimator)
    name = type(estimator).__name__
    # A subclass may hold state the schema does not list: only sklstm's own
    # classes are saved in this format.
    own_class = type(estimator).__module__.partition(".")[0] == __package__
    if name not in FITTED_STATE or not own_class:
        raise TypeError(
            f"Only {' and '.join(FITTED_STATE)} can be saved in the sklstm "
            f"format, got {type(estimator).__qualname__}. Save subclasses with "
            "pickle or joblib instead."
        )
    params = estimator.get_params(deep=False)
    if params.get("callbacks"):
        raise ValueError(
            "This estimator has callbacks=... set: skorch callbacks are "
            "Python objects that the sklstm format cannot store without "
            "pickle. Clear them with estimator.set_params(callbacks=None) "
            "before save (they only matter during fit), or use pickle/joblib."
        )
    encoded_params = {}
    for key, value in params.items():
        try:
            encoded_params[key] = _encode(value, key)
        except _Unsaveable:
            hint = (
                " Pass an int seed instead of a RandomState instance."
                if key == "random_state"
                else ""
            )
            raise ValueError(
                f"Parameter {key}={value!r} cannot be saved in the sklstm "
                "format, which stores parameters as JSON (numbers, strings, "
                f"lists, tuples, dicts).{hint} Set a JSON-friendly value with "
                "set_params before saving, or use pickle/joblib."
            ) from None

    fitted = {}
    for field in FITTED_STATE[name]:
        if not hasattr(estimator, field.attribute):
            continue
        value = getattr(estimator, field.attribute)
        try:
            fitted[field.name] = _encode(value, field.attribute)
        except _Unsaveable:
            raise ValueError(
                f"Fitted attribute {field.attribute} of type "
                f"{type(value).__name__} cannot be saved in the sklstm format. "
                "Use pickle/joblib for this estimator."
            ) from None

    net = estimator.net_
    module_kwargs = {
        key: _encode(value, f"module__{key}")
        for key, value in net.get_params_for("module").items()
    }
    try:
        history = json.loads(json.dumps(net.history.to_list(), default=_json_scalar))
    except TypeError as exc:
        raise ValueError(
            f"The training history holds a value JSON cannot store ({exc}); "
            "a user callback recorded it. Use pickle/joblib for this estimator."
        ) from None

    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sklstm_version": __version__,
        "torch_version": torch.__version__,
        "estimator": name,
        "params": encoded_params,
        "fitted": fitted,
        "module_kwargs": module_kwargs,
        "history": history,
    }
    raw = json.dumps(metadata).encode("utf-8")
    # Check what is written the way load checks it, so that save never
    # writes a file that load refuses (after set_params made the parameters
    # invalid or inconsistent with the fitted network, say).
    try:
        _check_metadata(json.loads(raw), type(estimator))
    except _Invalid as exc:
        raise ValueError(
            f"This {name} cannot be saved: {exc}. Refit it, or restore the "
            "parameters it was fitted with."
        ) from None
    weights = _weights_to_bytes(net.module_.state_dict())
    _write_archive(path, raw, weights)


def _json_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _weights_to_bytes(state_dict):
    from safetensors.torch import save as safetensors_save

    tensors = {
        key: tensor.detach().cpu().contiguous() for key, tensor in state_dict.items()
    }
    return safetensors_save(tensors, metadata={"format": FORMAT_NAME})


def _check_destination(path, mode):
    """A path or a binary file object, or a TypeError saying what to pass."""
    if isinstance(path, (str, os.PathLike)):
        return
    needed = "write" if mode == "w" else "read"
    if not hasattr(path, needed):
        raise TypeError(
            f"path must be a file name, a path-like object or a binary file "
            f"object, got {type(path).__name__}."
        )
    if isinstance(path, io.TextIOBase) or "b" not in getattr(path, "mode", "b"):
        raise TypeError(
            "The file object is open in text mode; model files are binary. "
            f"Open it with open(name, '{mode}b')."
        )


def _write_archive(path, metadata, weights):
    def write(target):
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_METADATA, metadata)
            zf.writestr(_WEIGHTS, weights)

    _check_destination(path, "w")
    if hasattr(path, "write"):
        write(path)
        return
    name = os.fspath(path)
    # Saving over a symbolic link writes through it, to the file it names.
    target = os.path.realpath(name)
    # Write next to the target, then rename: an interrupted save never
    # leaves a half-written model where a good one was.
    directory = os.path.dirname(target)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            write(file)
        # Like an ordinary write: an existing file keeps its permission bits,
        # a new one gets those the umask leaves (mkstemp's are 0o600).
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except OSError as exc:
        _remove(temporary)
        raise type(exc)(
            exc.errno, f"Cannot save the model to {name!r}: {exc.strerror}"
        ) from None
    except BaseException:
        _remove(temporary)
        raise


def _mode_for(target):
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove(temporary):
    if temporary is not None and os.path.exists(temporary):
        os.remove(temporary)


# ---------------------------------------------------------------------------
# Reading.
def read_model_file(path, estimator_classes, *, device=None):
    """Load an estimator written by :func:`write_model_file`.

    Parameters
    ----------
    path : str, path-like or binary file object
        Where the model was saved.
    estimator_classes : dict
        The classes that may be loaded, by name.
    device : str, default=None
        See :func:`sklstm.load`.

    Returns
    -------
    estimator : object
        The fitted estimator.

    Raises
    ------
    ValueError
        If the file is not a valid model file; the message names the file
        and the problem.
    """
    _check_destination(path, "r")
    where = _describe(path)
    metadata, weights = _read_archive(path, where)
    name = metadata["estimator"]
    cls = estimator_classes.get(name) if isinstance(name, str) else None
    if cls is None or name not in FITTED_STATE:
        raise ValueError(
            f"{where} holds an estimator of unknown class {_show(name)}; this "
            f"sklstm loads {sorted(estimator_classes)}."
        )
    try:
        estimator, fields, module_kwargs = _check_metadata(metadata, cls)
    except _Invalid as exc:
        raise ValueError(
            f"{where} is not a valid sklstm model file: {exc}. The file is "
            "corrupt or was edited."
        ) from None
    except _NewerParameters as exc:
        raise ValueError(
            f"{where} has parameters {exc.args[0]} that this sklstm's "
            f"{name} does not know. It was written by sklstm "
            f"{_show(metadata.get('sklstm_version'))}: if that is a later "
            "version, upgrade sklstm to load it; if not, the file is corrupt "
            "or was edited."
        ) from None
    net = _rebuild_net(
        estimator, fields, module_kwargs, metadata["history"], weights, device, where
    )
    for field in FITTED_STATE[name]:
        if field.name in fields:
            setattr(estimator, field.attribute, fields[field.name])
    estimator.net_ = net
    estimator.history_ = net.history
    return estimator


class _NewerParameters(Exception):
    """Parameters this sklstm does not know; ``args[0]`` lists them."""


def _check_metadata(metadata, cls):
    """Validate parsed metadata against the schema of ``cls``.

    Returns the unfitted estimator with the file's parameters, the
    validated fitted fields and the decoded ``module_kwargs``. Raises
    ``_Invalid`` or ``_NewerParameters``.
    """
    name = cls.__name__
    unknown = sorted(set(metadata) - set(_TOP_LEVEL_KEYS))
    if unknown:
        raise _Invalid(f"{_METADATA} has unknown entries {unknown}")
    for key in ("sklstm_version", "torch_version"):
        if not isinstance(metadata[key], str):
            raise _Invalid(f"{key} must be a string, got {_show(metadata[key])}")
    params = _decode_mapping(metadata["params"], "params")
    module_kwargs = _decode_mapping(metadata["module_kwargs"], "module_kwargs")
    fitted = _decode_mapping(metadata["fitted"], "fitted")
    if metadata["format_version"] == 1:
        fitted = _format1_fields(fitted)
    history = metadata["history"]
    if not isinstance(history, list) or not all(
        isinstance(row, dict) for row in history
    ):
        raise _Invalid("the history is not a list of epochs")

    known = set(cls().get_params(deep=False))
    unknown = sorted(set(params) - known)
    if unknown:
        raise _NewerParameters(unknown)
    # Parameters a file lacks take their defaults: a file written before a
    # parameter existed loads with the behaviour it was trained with.
    estimator = cls(**params)
    _check_parameters(estimator)
    fields = _check_fitted(name, fitted)
    _check_network(name, fields, module_kwargs, estimator.output_mode)
    if len(history) != fields["n_iter"]:
        raise _Invalid(
            f"the history holds {len(history)} epochs but n_iter is {fields['n_iter']}"
        )
    return estimator, fields, module_kwargs


def _format1_fields(fitted):
    unknown = sorted(set(fitted) - set(FORMAT1_FIELDS))
    if unknown:
        raise _Invalid(f"unknown fitted attributes {unknown} (format version 1)")
    return {FORMAT1_FIELDS[key]: value for key, value in fitted.items()}


def _rebuild_net(estimator, fields, module_kwargs, history, weights, device, where):
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    try:
        tensors = safetensors_load(weights)
    except SafetensorError as exc:
        raise ValueError(
            f"{where} is corrupt: {_WEIGHTS} cannot be read ({exc})."
        ) from None
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(
                f"{where} is corrupt: the weight {key!r} holds NaN or infinity."
            )
    target = _load_device(estimator, device)
    try:
        net = estimator._net_for(
            module_kwargs,
            target,
            n_train=fields["n_train"],
            use_validation=fields["use_validation"],
            seed=fields["seed"],
        )
        # Initialisation draws weights (replaced just below) from the net's
        # own generator, so loading leaves torch's global one alone.
        net.initialize()
        _check_weight_shapes(net.module_.state_dict(), tensors)
        restore_net(net, tensors, history)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{where} does not match the network it describes ({exc}). The "
            "file is corrupt or was edited."
        ) from None
    return net


def _check_weight_shapes(expected, tensors):
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{_WEIGHTS} lacks tensors {missing} and has unexpected tensors "
            f"{unexpected}"
        )
    for key, tensor in expected.items():
        if tuple(tensors[key].shape) != tuple(tensor.shape):
            raise ValueError(
                f"tensor {key!r} has shape {tuple(tensors[key].shape)} in "
                f"{_WEIGHTS}, but {tuple(tensor.shape)} in the network that "
                "module_kwargs describes"
            )


def _describe(path):
    if isinstance(path, (str, os.PathLike)):
        return repr(os.fspath(path))
    name = getattr(path, "name", None)
    return repr(name) if isinstance(name, str) else "file"


def _read_archive(path, where):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, NotImplementedError, EOFError):
        # NotImplementedError: zipfile's word for damage that looks like an
        # unsupported zip feature (version, compression).
        raise ValueError(_not_a_model_message(path, where)) from None
    with archive:
        names = set(archive.namelist())
        if _METADATA not in names:
            raise ValueError(
                f"{where} is not an sklstm model file: the zip archive holds no "
                f"{_METADATA}. Save models with estimator.save(path)."
            )
        metadata = _parse_metadata(_read_member(archive, _METADATA, where), where)
        if _WEIGHTS not in names:
            raise ValueError(
                f"{where} is an incomplete sklstm model file: {_WEIGHTS} is "
                "missing. Save the model again."
            )
        weights = _read_member(archive, _WEIGHTS, where, limit=None)
    return metadata, weights


def _not_a_model_message(path, where):
    message = (
        f"{where} is not an sklstm model file: it is not a readable zip "
        "archive (it may be truncated, corrupt, or another format)."
    )
    head = b""
    try:
        if hasattr(path, "read"):
            path.seek(0)
            head = path.read(2)
        else:
            with open(path, "rb") as file:
                head = file.read(2)
    except OSError:
        pass
    if head[:1] == bytes([_PICKLE_PROTOCOL_BYTE]):
        message += (
            " It looks like a pickle (or joblib) file; sklstm.load never "
            "unpickles, as that can run arbitrary code. Load it with "
            "pickle/joblib only if you trust its source."
        )
    return message


def _read_member(archive, name, where, limit=_MAX_METADATA_BYTES):
    info = archive.getinfo(name)
    if limit is not None and info.file_size > limit:
        raise ValueError(
            f"{where} is not a valid sklstm model file: {name} claims "
            f"{info.file_size} bytes, more than a model's metadata can hold."
        )
    try:
        return archive.read(name)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        NotImplementedError,
    ) as exc:
        raise ValueError(
            f"{where} is corrupt: {name} cannot be read ({exc}). Save the model again."
        ) from None


def _parse_metadata(raw, where):
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than Python's parser recurses.
        raise ValueError(
            f"{where} is corrupt: {_METADATA} is not valid JSON ({exc})."
        ) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{where} is not an sklstm model file: {_METADATA} does not name "
            f"the {FORMAT_NAME!r} format."
        )
    version = metadata.get("format_version")
    if not _is_int(version) or version < 1:
        raise ValueError(
            f"{where} is corrupt: format_version {version!r} is not valid."
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{where} was written by sklstm {metadata.get('sklstm_version')} in "
            f"format version {version}, but this sklstm ({__version__}) "
            f"reads format versions up to {FORMAT_VERSION}. Upgrade sklstm "
            "(pip install -U sklstm) to load it."
        )
    missing = [key for key in _TOP_LEVEL_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"{where} is corrupt: {_METADATA} lacks {', '.join(missing)}.")
    return metadata


def _load_device(estimator, device):
    if device is not None:
        return resolve_device(device)
    try:
        return resolve_device(estimator.device)
    except (ValueError, TypeError):
        return torch.device("cpu")


__all__ = [
    "FITTED_STATE",
    "FORMAT1_FIELDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Field",
    "read_model_file",
    "write_model_file",
]

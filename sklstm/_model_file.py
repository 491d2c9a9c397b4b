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

Reading trusts no size a file declares. Members are decompressed in bounded
chunks, counting what comes out rather than what the zip headers claim; the
metadata is checked (parameters as ``fit`` checks them, fitted state against
the schema, the network's arguments against both) before the weights are
read; the weights' safetensors header is then checked against the network
those arguments describe, built on the meta device, and only the bytes that
network needs are read. A crafted file therefore costs about as much memory
as the model it claims to be, and only if it really holds that model.

This module knows no estimator class: ``sklstm.persistence.load`` passes
the classes in, and :meth:`BaseLSTM.save <sklstm._base.BaseLSTM.save>` calls
:func:`write_model_file`, so that imports run one way only.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import numbers
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._conformal import MAX_STORED_SCORES
from ._device import resolve_device
from ._network import (
    AUTO_DIFFERENCES,
    AUTO_POOLING,
    RecurrentNetwork,
    chunked_convolutions,
)
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
# The weights member: a safetensors header (about 100 bytes a tensor; this
# allows tens of thousands of tensors), then exactly the bytes the header
# declares, which must be the network's tensors.
_MAX_WEIGHTS_HEADER_BYTES = 4 * 2**20
# The widest element a weights tensor may have (float64, int64): the cap on
# the weights is the network's element count times this.
_MAX_ITEMSIZE = 8
# What save writes: stored or deflated members, which zipfile decompresses a
# bounded chunk at a time. bzip2 and lzma expand a small input far more, and
# zipfile decompresses what it reads of them whole.
_COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_READ_CHUNK = 2**20
# No file sklstm writes nests JSON deeper than about 8 levels; bounding the
# depth keeps every recursive walk over a loaded value (decoding, copying,
# pickling the estimator) far from Python's recursion limit.
_MAX_JSON_DEPTH = 32
# An array decoded from JSON may take at most this many bytes per character
# of its text, plus a small allowance: a declared dtype ("<U200000000") or one
# long string among many short ones then cannot turn bytes into gigabytes.
_ARRAY_BYTES_PER_CHARACTER = 256
_ARRAY_ALLOWANCE = 2**16
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


def _calibration(value, fields):
    """The regressor's validation errors that calibrate its intervals (see
    sklstm._conformal): how many there were, and the sorted ones it kept."""
    if not isinstance(value, dict) or set(value) != {"size", "scores"}:
        raise _Invalid(
            f"must be an object with keys ['scores', 'size'], got {_show(value)}"
        )
    size, scores = value["size"], value["scores"]
    if not _is_int(size) or size < 1:
        raise _Invalid(f"size must be an int >= 1, got {_show(size)}")
    shape = (min(size, MAX_STORED_SCORES), fields["n_outputs"])
    if (
        not isinstance(scores, np.ndarray)
        or scores.dtype.kind != "f"
        or scores.shape != shape
    ):
        raise _Invalid(
            f"scores must be a float array of shape {shape} (for size {size} "
            f"and n_outputs {fields['n_outputs']}), got {_show(scores)}"
        )
    if not np.isfinite(scores).all() or (scores < 0).any():
        raise _Invalid("scores must be finite and non-negative")
    if (np.diff(scores, axis=0) < 0).any():
        raise _Invalid("scores must be sorted in increasing order, per output")
    return {"size": int(size), "scores": scores.astype(np.float64)}


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
    # Time steps of the training sequences in all; files before it lack it.
    Field("train_steps", "_train_steps", False, _integer(1)),
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
        # Only after a fit that held a validation split out.
        Field("calibration", "_calibration", False, _calibration),
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
        array = _decode(value["__tensor__"])
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise ValueError("a tensor must hold a numeric array")
        return torch.as_tensor(array)
    if set(value) == {"__ndarray__", "dtype", "shape"}:
        return _decode_array(value["__ndarray__"], value["dtype"], value["shape"])
    raise ValueError(f"unknown tagged value with keys {sorted(value)}")


# What the elements of an array of each dtype kind must be in JSON.
_ELEMENT_TYPES = {
    "b": lambda item: isinstance(item, bool),
    "i": _is_int,
    "u": _is_int,
    "f": _is_number,
    "U": lambda item: isinstance(item, str),
    "O": lambda item: True,
}


def _decode_array(items, dtype_name, shape):
    """An array from its JSON form, allocated only once its size is checked."""
    if not isinstance(dtype_name, str):
        raise ValueError(f"an array's dtype must be a string, got {_show(dtype_name)}")
    try:
        dtype = np.dtype(dtype_name)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"unsupported array dtype {_show(dtype_name)}") from None
    if dtype.kind not in _ARRAY_KINDS:
        raise ValueError(f"unsupported array dtype {_show(dtype_name)}")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_JSON_DEPTH
        or not all(_is_int(size) and size >= 0 for size in shape)
        or (dtype.kind == "O" and len(shape) != 1)
    ):
        raise ValueError(f"an array has an invalid shape {_show(shape)}")
    # The nesting of the lists must be the shape: then the element count is
    # what the text holds, whatever the shape claims.
    flat = [items]
    for size in shape:
        if not all(isinstance(row, list) and len(row) == size for row in flat):
            raise ValueError(f"an array does not match its shape {_show(shape)}")
        flat = [item for row in flat for item in row]
    if dtype.kind == "O":
        flat = [_decode(item) for item in flat]
    if not all(map(_ELEMENT_TYPES[dtype.kind], flat)):
        raise ValueError(f"an array's elements do not fit its dtype {dtype.str}")
    characters = sum(len(item) if isinstance(item, str) else 1 for item in flat)
    if len(flat) * dtype.itemsize > (
        _ARRAY_BYTES_PER_CHARACTER * (characters + len(flat)) + _ARRAY_ALLOWANCE
    ):
        raise ValueError(
            f"an array of {len(flat)} elements of dtype {dtype.str} takes far "
            "more memory than its values need"
        )
    if dtype.kind == "U" and any(len(item) * 4 > dtype.itemsize for item in flat):
        raise ValueError(f"an array holds strings longer than its dtype {dtype.str}")
    if dtype.kind == "O":
        array = np.empty(len(flat), dtype=object)
        for index, item in enumerate(flat):
            array[index] = item
        return array
    # OverflowError: an integer beyond the dtype's range.
    try:
        return np.array(flat, dtype=dtype).reshape(shape)
    except OverflowError as exc:
        raise ValueError(f"an array's values overflow its dtype ({exc})") from None


def _decode_mapping(value, what):
    if not isinstance(value, dict):
        raise _Invalid(f"{what} is not a JSON object")
    decoded = {}
    for key, item in value.items():
        try:
            decoded[str(key)] = _decode(item)
        except (ValueError, TypeError, OverflowError) as exc:
            raise _Invalid(
                f"{what} entry {_show(key)} cannot be decoded ({_clip(str(exc))})"
            ) from None
    return decoded


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


def _architecture(estimator):
    """The network arguments that the estimator's parameters fix.

    As ``fit`` passes them; a warm start that changes any of them trains a
    new network, so a fitted network always has these.
    """
    return {
        "hidden_size": estimator.hidden_size,
        "num_layers": estimator.num_layers,
        "bidirectional": estimator.bidirectional,
        "cell": estimator.cell,
        "output_mode": estimator.output_mode,
        "pooling": estimator.pooling,
        "conv_filters": tuple(estimator.conv_filters or ()),
        "conv_kernel_sizes": estimator._conv_kernel_sizes(),
        "conv_placement": estimator.conv_placement,
        "sequence_norm": estimator.sequence_norm,
    }


def _same(value, expected):
    """Equal and of the same types: True == 1 and 3.0 == 3, but the network
    must be given what fit gives it."""
    if isinstance(expected, tuple):
        return (
            isinstance(value, tuple)
            and len(value) == len(expected)
            and all(map(_same, value, expected))
        )
    return type(value) is type(expected) and value == expected


def _int_tuple(value, minimum):
    return isinstance(value, tuple) and all(
        _is_int(item) and item >= minimum for item in value
    )


def _optional_vector(value, size):
    """None, or a finite float tensor of shape (size,)."""
    return value is None or (
        isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and tuple(value.shape) == (size,)
        and bool(torch.isfinite(value).all())
    )


def _check_network(estimator, fields, module_kwargs):
    """The network that ``module_kwargs`` describes must be the one the
    parameters and the fitted state give; raise _Invalid.

    Checked before any tensor of the network exists, so that every size it
    will be built with is one the file's other parts agree on.
    """
    name = type(estimator).__name__
    defaults = _network_defaults()
    unknown = sorted(set(module_kwargs) - set(defaults))
    if unknown:
        raise _Invalid(f"module_kwargs has unknown network arguments {unknown}")
    arguments = {**defaults, **module_kwargs}
    for key, minimum in (("n_inputs", 0), ("n_outputs", 1)):
        if not _is_int(arguments[key]) or arguments[key] < minimum:
            raise _Invalid(
                f"module_kwargs {key} must be an int >= {minimum}, got "
                f"{_show(arguments[key])}"
            )
    for key, expected in _architecture(estimator).items():
        value = arguments[key]
        if key == "pooling" and expected == "auto":
            # Resolved from the training data.
            expected = value if value in AUTO_POOLING else " or ".join(AUTO_POOLING)
        if not _same(value, expected):
            raise _Invalid(
                f"the network's {key} is {_show(value)} but the parameter "
                f"{key.replace('conv_kernel_sizes', 'conv_kernel_size')} is "
                f"{_show(expected)}"
            )
    stride = arguments["recurrent_stride"]
    wanted = estimator.recurrent_stride
    if estimator.output_mode == "sequence":
        wanted = 1
    if not (_is_int(stride) and stride >= 1 and wanted in ("auto", stride)):
        raise _Invalid(
            f"the network's recurrent_stride is {_show(stride)} but the parameter "
            f"recurrent_stride is {_show(estimator.recurrent_stride)} (output_mode "
            f"{estimator.output_mode!r})"
        )
    # 1 in files written before the convolutions read chunks of steps.
    conv_stride = arguments["conv_stride"]
    chunked = chunked_convolutions(
        arguments["conv_filters"], arguments["conv_placement"], arguments["output_mode"]
    )
    wanted = estimator.conv_stride
    if not chunked:
        allowed = {1}
    elif wanted == "auto":
        allowed = {1, 2, stride}
    else:
        allowed = {wanted}
    if not (_is_int(conv_stride) and conv_stride in allowed):
        raise _Invalid(
            f"the network's conv_stride is {_show(conv_stride)} but the parameter "
            f"conv_stride is {_show(wanted)}: it must be the parameter's value "
            "with parallel convolutions ('auto': 1, 2 or the network's "
            f"recurrent_stride, {_show(stride)}) and 1 otherwise"
        )
    _check_length_arguments(estimator, arguments)
    n_inputs = arguments["n_inputs"]
    dropout = arguments["dropout"]
    if not (_is_number(dropout) and 0 <= dropout < 1):
        raise _Invalid(f"the network's dropout must be in [0, 1), got {_show(dropout)}")
    if not (
        _is_number(arguments["forget_bias"]) and np.isfinite(arguments["forget_bias"])
    ):
        raise _Invalid(
            "the network's forget_bias must be a finite number, got "
            f"{_show(arguments['forget_bias'])}"
        )
    for key in ("feature_mean", "feature_scale"):
        if not _optional_vector(arguments[key], n_inputs):
            raise _Invalid(
                f"the network's {key} must be null or {n_inputs} finite numbers"
            )
        if (arguments[key] is not None) != estimator.standardize:
            raise _Invalid(
                f"the network's {key} is {'not ' * estimator.standardize}set but "
                f"the parameter standardize is {estimator.standardize}"
            )
    _check_differences(estimator, arguments)
    indicators = arguments["missing_indicators"]
    if not _int_tuple(indicators, 0) or list(indicators) != sorted(
        set(i for i in indicators if i < n_inputs)
    ):
        raise _Invalid(
            "the network's missing_indicators must be increasing feature "
            f"positions below n_inputs={n_inputs}, got {_show(indicators)}"
        )
    _check_embeddings(fields, arguments)
    layout = fields.get("layout")
    static_numeric = 0 if layout is None else len(layout["static_numeric"])
    if (
        not _is_int(arguments["static_numeric"])
        or arguments["static_numeric"] != static_numeric
    ):
        raise _Invalid(
            f"the network takes {_show(arguments['static_numeric'])} static "
            f"numeric features but the layout gives {static_numeric}"
        )
    for key in ("static_mean", "static_scale"):
        if not _optional_vector(arguments[key], static_numeric):
            raise _Invalid(
                f"the network's {key} must be null or {static_numeric} finite numbers"
            )
    description, expected_outputs = _NETWORK_OUTPUTS[name]
    if arguments["n_outputs"] != expected_outputs(fields):
        raise _Invalid(
            f"the network has {arguments['n_outputs']} outputs but "
            f"{description} is {expected_outputs(fields)}"
        )
    # LSTMRegressor(interval_width="adaptive"): a log-scale per target.
    adaptive = getattr(estimator, "interval_width", None) == "adaptive"
    scales = expected_outputs(fields) if adaptive else 0
    if not _same(arguments["n_scale_outputs"], scales):
        raise _Invalid(
            f"the network has {_show(arguments['n_scale_outputs'])} scale "
            f"outputs but interval_width is "
            f"{_show(getattr(estimator, 'interval_width', None))}, which needs "
            f"{scales}"
        )
    if n_inputs != fields["n_step_features"]:
        raise _Invalid(
            f"the network reads {n_inputs} features per time "
            f"step but n_step_features is {fields['n_step_features']}"
        )


def _check_differences(estimator, arguments):
    """``differences`` as the parameter gives it ("auto": 0 or the half span
    it resolves to), with one positive scale per feature when not 0."""
    half_span, scale = arguments["differences"], arguments["difference_scale"]
    wanted = estimator.differences
    allowed = (0, AUTO_DIFFERENCES) if wanted == "auto" else (wanted,)
    if not (_is_int(half_span) and half_span in allowed):
        raise _Invalid(
            f"the network's differences is {_show(half_span)} but the parameter "
            f"differences is {_show(wanted)}"
        )
    n_inputs = arguments["n_inputs"]
    if half_span and (
        scale is None
        or not _optional_vector(scale, n_inputs)
        or not bool((scale > 0).all())
    ):
        raise _Invalid(
            f"the network's difference_scale must be {n_inputs} positive finite numbers"
        )
    if not half_span and scale is not None:
        raise _Invalid("the network has a difference_scale but no differences")


def _check_length_arguments(estimator, arguments):
    """``length_scaling`` and ``conv_max``: both set by a length-aware fit
    on sequences of unequal lengths, or neither."""
    scaling, conv_max = arguments["length_scaling"], arguments["conv_max"]
    if scaling is not None and not (
        isinstance(scaling, tuple)
        and len(scaling) == 2
        and all(_is_number(value) and np.isfinite(value) for value in scaling)
        and scaling[1] > 0
    ):
        raise _Invalid(
            "the network's length_scaling must be null or a finite mean and a "
            f"positive scale, got {_show(scaling)}"
        )
    if type(conv_max) is not bool or conv_max != (scaling is not None):
        raise _Invalid(
            f"the network's conv_max ({_show(conv_max)}) and length_scaling "
            f"({_show(scaling)}) must be set together"
        )
    if scaling is not None and not (
        estimator.length_aware and estimator.output_mode == "last"
    ):
        raise _Invalid(
            "the network takes sequence lengths but the parameters are "
            f"length_aware={estimator.length_aware!r}, output_mode="
            f"{estimator.output_mode!r}"
        )


def _check_embeddings(fields, arguments):
    """Embedding sizes: one per categorical column, codes from its categories."""
    layout = fields.get("layout")
    categories = fields.get("categories") or []
    n_step = 0 if layout is None else len(layout["categorical"])
    n_columns = n_step + (0 if layout is None else len(layout["static_categorical"]))
    if len(categories) != n_columns:
        raise _Invalid(
            f"the layout has {n_columns} categorical columns but the file "
            f"holds categories for {len(categories)}"
        )
    codes = [len(c) + 2 for c in categories]
    for sizes_key, widths_key, expected in (
        ("categorical_sizes", "embedding_sizes", codes[:n_step]),
        ("static_sizes", "static_embedding_sizes", codes[n_step:]),
    ):
        sizes, widths = arguments[sizes_key], arguments[widths_key]
        if not _int_tuple(sizes, 1) or list(sizes) != expected:
            raise _Invalid(
                f"the network's embeddings take {_show(sizes)} codes ({sizes_key}) "
                f"but the categories give {expected}"
            )
        if not _int_tuple(widths, 1) or len(widths) != len(sizes):
            raise _Invalid(
                f"the network's {widths_key} must be one width >= 1 per "
                f"embedding, got {_show(widths)}"
            )


def _network_defaults():
    """Every argument the network takes, with its default."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(RecurrentNetwork).parameters.items()
    }


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
            f"format, got {type(estimator).__qualname__}. Save other estimators "
            "(subclasses, sklstm.forecasting.LSTMForecaster) with pickle or "
            "joblib instead."
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
    if getattr(path, "closed", False):
        raise ValueError("The file object is closed; pass an open one.")
    if isinstance(path, io.TextIOBase) or "b" not in getattr(path, "mode", "b"):
        raise TypeError(
            "The file object is open in text mode; model files are binary. "
            f"Open it with open(name, '{mode}b')."
        )
    able = getattr(path, "writable" if mode == "w" else "readable", None)
    if callable(able) and not able():
        raise TypeError(
            f"The file object is not open for {'writing' if mode == 'w' else 'reading'}"
            f"; open it with open(name, '{mode}b')."
        )
    seekable = getattr(path, "seekable", None)
    if mode == "r" and not (callable(seekable) and seekable()):
        # zipfile reads an archive from its end, where its directory is.
        raise TypeError(
            "The file object cannot seek, and a model file is read from its "
            "end. Pass io.BytesIO(file.read()) instead."
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
    with _open_archive(path, where) as archive:
        metadata = _parse_metadata(
            _read_member(archive, _METADATA, where, _MAX_METADATA_BYTES), where
        )
        if _WEIGHTS not in archive.namelist():
            raise ValueError(
                f"{where} is an incomplete sklstm model file: {_WEIGHTS} is "
                "missing. Save the model again."
            )
        name = metadata["estimator"]
        cls = estimator_classes.get(name) if isinstance(name, str) else None
        if cls is None or name not in FITTED_STATE:
            raise ValueError(
                f"{where} holds an estimator of unknown class {_show(name)}; this "
                f"sklstm loads {sorted(estimator_classes)}."
            )
        try:
            estimator, fields, module_kwargs = _check_metadata(metadata, cls)
        except _NewerParameters as exc:
            raise ValueError(
                f"{where} has parameters {exc.args[0]} that this sklstm's "
                f"{name} does not know. It was written by sklstm "
                f"{_show(metadata.get('sklstm_version'))}: if that is a later "
                "version, upgrade sklstm to load it; if not, the file is corrupt "
                "or was edited."
            ) from None
        except (ValueError, TypeError) as exc:
            # _Invalid, or what a value no check foresaw made a check raise.
            raise ValueError(
                f"{where} is not a valid sklstm model file: "
                f"{_clip(str(exc).rstrip('.'))}. The file is corrupt or was edited."
            ) from None
        # Only now, with every size the metadata declares checked, are the
        # weights read; the network they must fit caps how much is read.
        tensors = _read_weights(archive, where, module_kwargs)
    net = _rebuild_net(
        estimator, fields, module_kwargs, metadata["history"], tensors, device, where
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
    _check_network(estimator, fields, module_kwargs)
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


def _rebuild_net(estimator, fields, module_kwargs, history, tensors, device, where):
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
            train_steps=fields.get("train_steps"),
            use_validation=fields["use_validation"],
            seed=fields["seed"],
        )
        # Initialisation draws weights (replaced just below) from the net's
        # own generator, so loading leaves torch's global one alone.
        net.initialize()
        _check_weight_dtypes(net.module_.state_dict(), tensors)
        restore_net(net, tensors, history)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{where} does not match the network it describes ({exc}). The "
            "file is corrupt or was edited."
        ) from None
    return net


def _check_weight_dtypes(expected, tensors):
    # load_state_dict would cast silently; the saved network had these.
    for key, tensor in expected.items():
        if key in tensors and tensors[key].dtype != tensor.dtype:
            raise ValueError(
                f"tensor {key!r} is {tensors[key].dtype} in {_WEIGHTS}, but "
                f"{tensor.dtype} in the network"
            )


# safetensors' names for the dtypes a network's tensors can have.
_SAFETENSORS_ITEMSIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def _read_weights(archive, where, module_kwargs):
    """The weights, read only as far as the described network justifies.

    The safetensors header is read and checked against the tensors of the
    network that ``module_kwargs`` describes (built on the meta device, which
    allocates nothing) before any tensor data is read; the data read is then
    exactly what that header declares.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    with _Member(archive, _WEIGHTS, where) as member:
        prefix = member.read_exactly(8)
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > _MAX_WEIGHTS_HEADER_BYTES:
            raise ValueError(
                f"{where} is corrupt: {_WEIGHTS} declares a header of "
                f"{header_length} bytes."
            )
        header = member.read_exactly(header_length)
        try:
            entries = _weights_header(header)
            expected = _meta_state(module_kwargs, len(entries))
            data_size = _check_weights_header(entries, expected)
        except _Invalid as exc:
            raise ValueError(
                f"{where} does not match the network it describes: {exc}. The "
                "file is corrupt or was edited."
            ) from None
        data = member.read_exactly(data_size)
        if member.read_at_most(1):
            raise ValueError(
                f"{where} is corrupt: {_WEIGHTS} holds more data than its "
                "header describes."
            )
    try:
        return safetensors_load(prefix + header + data)
    except SafetensorError as exc:
        raise ValueError(
            f"{where} is corrupt: {_WEIGHTS} cannot be read ({exc})."
        ) from None


def _weights_header(raw):
    """{name: (dtype, shape, (start, end))} from a safetensors header."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Invalid(f"the {_WEIGHTS} header is not JSON") from None
    if not isinstance(header, dict):
        raise _Invalid(f"the {_WEIGHTS} header is not a JSON object")
    entries = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if (
            not isinstance(entry, dict)
            or set(entry) != {"dtype", "shape", "data_offsets"}
            or entry["dtype"] not in _SAFETENSORS_ITEMSIZES
            or not isinstance(entry["shape"], list)
            or not all(_is_int(size) and size >= 0 for size in entry["shape"])
            or not isinstance(entry["data_offsets"], list)
            or len(entry["data_offsets"]) != 2
            or not all(_is_int(offset) for offset in entry["data_offsets"])
        ):
            raise _Invalid(f"the {_WEIGHTS} header entry {_show(key)} is malformed")
        entries[key] = (
            entry["dtype"],
            tuple(entry["shape"]),
            tuple(entry["data_offsets"]),
        )
    return entries


def _meta_state(module_kwargs, n_tensors):
    """{name: shape} of the network's tensors, built without allocating them."""
    layers = (
        module_kwargs.get("num_layers", 1)
        * (1 + bool(module_kwargs.get("bidirectional")))
        + len(module_kwargs.get("conv_filters", ()))
        + len(module_kwargs.get("categorical_sizes", ()))
        + len(module_kwargs.get("static_sizes", ()))
    )
    # Every layer holds at least one tensor. Without this bound a file could
    # make even the meta network, one Python object per layer, huge.
    if layers > n_tensors:
        raise _Invalid(
            f"module_kwargs describe a network of {layers} layers, but "
            f"{_WEIGHTS} holds {n_tensors} tensors"
        )
    try:
        with torch.device("meta"):
            # Any seed: only the shapes matter, and no draw can run on meta.
            module = RecurrentNetwork(**{**module_kwargs, "seed": 0})
    except (RuntimeError, TypeError, ValueError, OverflowError) as exc:
        raise _Invalid(
            f"module_kwargs describe no network ({_clip(str(exc))})"
        ) from None
    return {key: tuple(tensor.shape) for key, tensor in module.state_dict().items()}


def _check_weights_header(entries, expected):
    """Check the header against the network's tensors; return the data size."""
    missing = sorted(set(expected) - set(entries))
    unexpected = sorted(set(entries) - set(expected))
    if missing or unexpected:
        raise _Invalid(
            f"{_WEIGHTS} lacks tensors {_clip(str(missing))} and has unexpected "
            f"tensors {_clip(str(unexpected))}"
        )
    position = 0
    for key, (dtype, shape, (start, end)) in sorted(
        entries.items(), key=lambda item: item[1][2]
    ):
        if shape != expected[key]:
            raise _Invalid(
                f"tensor {key!r} has shape {_clip(str(shape))} in {_WEIGHTS}, but "
                f"{expected[key]} in the network that module_kwargs describes"
            )
        if (
            start != position
            or end - start != math.prod(shape) * (_SAFETENSORS_ITEMSIZES[dtype])
        ):
            raise _Invalid(f"the data of tensor {key!r} is misplaced in {_WEIGHTS}")
        position = end
    # Implied by the checks above; stated as the cap it is.
    assert position <= sum(map(math.prod, expected.values())) * _MAX_ITEMSIZE
    return position


def _describe(path):
    if isinstance(path, (str, os.PathLike)):
        return repr(os.fspath(path))
    name = getattr(path, "name", None)
    return repr(name) if isinstance(name, str) else "file"


def _open_archive(path, where):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError):
        # NotImplementedError: zipfile's word for damage that looks like an
        # unsupported zip feature (version, compression). ValueError: sizes
        # and offsets in the zip directory that make no sense.
        raise ValueError(_not_a_model_message(path, where)) from None
    if _METADATA not in archive.namelist():
        archive.close()
        raise ValueError(
            f"{where} is not an sklstm model file: the zip archive holds no "
            f"{_METADATA}. Save models with estimator.save(path)."
        )
    return archive


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


class _Member:
    """One archive member, read in bounded chunks.

    The sizes in a zip's headers are whatever its writer put there: only the
    bytes that actually come out are counted, and a read stops as soon as it
    has what was asked for, so a member that decompresses without end costs
    no more than the read asked for.
    """

    def __init__(self, archive, name, where):
        info = archive.getinfo(name)
        self.name, self.where = name, where
        if info.flag_bits & 0x1:
            raise ValueError(
                f"{where} is not a valid sklstm model file: {name} is "
                "encrypted. Save the model again."
            )
        if info.compress_type not in _COMPRESSIONS:
            raise ValueError(
                f"{where} is not a valid sklstm model file: {name} is "
                f"compressed with zip method {info.compress_type}; model files "
                f"use {' or '.join(_COMPRESSIONS.values())}. Save the model again."
            )
        self.member = self._guard(archive.open, info)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.member.close()

    def _guard(self, function, *args):
        try:
            return function(*args)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise ValueError(
                f"{self.where} is corrupt: {self.name} cannot be read ({exc}). "
                "Save the model again."
            ) from None

    def read_at_most(self, size):
        """Up to ``size`` bytes; fewer only at the member's end."""
        chunks, total = [], 0
        while total < size:
            chunk = self._guard(self.member.read, min(_READ_CHUNK, size - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def read_exactly(self, size):
        data = self.read_at_most(size)
        if len(data) < size:
            raise ValueError(
                f"{self.where} is corrupt: {self.name} ends after {len(data)} "
                f"bytes, before the {size} it declares. Save the model again."
            )
        return data


def _read_member(archive, name, where, limit):
    """All of member ``name``, or a ValueError if it holds more than ``limit``."""
    if archive.getinfo(name).file_size > limit:
        raise ValueError(
            f"{where} is not a valid sklstm model file: {name} claims "
            f"{archive.getinfo(name).file_size} bytes, more than it can hold."
        )
    with _Member(archive, name, where) as member:
        # One byte past the limit tells a member that is too long (whatever
        # its header says) from one that just fits.
        data = member.read_at_most(limit + 1)
        if len(data) > limit:
            raise ValueError(
                f"{where} is not a valid sklstm model file: {name} holds more "
                f"than {limit} bytes, more than it can hold."
            )
        # Reading to the end is what makes zipfile check the CRC.
        member.read_at_most(1)
    return data


def _parse_metadata(raw, where):
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: also integers of more digits than Python converts.
        # RecursionError: JSON nested deeper than Python's parser recurses.
        raise ValueError(
            f"{where} is corrupt: {_METADATA} is not valid JSON ({_clip(str(exc))})."
        ) from None
    if _depth_exceeds(metadata, _MAX_JSON_DEPTH):
        raise ValueError(
            f"{where} is corrupt: {_METADATA} nests values more than "
            f"{_MAX_JSON_DEPTH} levels deep."
        )
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


def _depth_exceeds(value, limit):
    """Whether JSON ``value`` nests containers deeper than ``limit``."""
    level = [value]
    for _ in range(limit + 1):
        level = [
            item
            for container in level
            if isinstance(container, (list, dict))
            for item in (
                container.values() if isinstance(container, dict) else container
            )
        ]
        if not level:
            return False
    return True


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

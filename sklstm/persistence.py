"""Saving fitted estimators to a file that loads without running code.

Which to use when
-----------------
``estimator.save(path)`` and ``sklstm.load(path)``
    For keeping and sharing trained models. The file is a zip archive holding
    ``metadata.json`` (format version, sklstm version, estimator class,
    parameters, fitted attributes such as ``classes_``, training history) and
    ``weights.safetensors`` (the network's tensors). Loading parses JSON and
    raw tensors only: a file from an untrusted source cannot run code, and a
    pickle planted in its place is refused. Files load in later sklstm
    versions. Use this by default.
pickle / joblib
    For what scikit-learn does with them: ``GridSearchCV(n_jobs=...)``,
    caching in a ``Pipeline(memory=...)``, and saving an estimator that holds
    things JSON cannot (user ``callbacks``, a ``RandomState`` instance as
    ``random_state``). Unpickling runs code chosen by whoever wrote the file,
    so only load pickles you made yourself, and only with the same sklstm,
    torch and scikit-learn versions.
``estimator.to_onnx(path)``
    For serving predictions outside Python, or without torch: ONNX Runtime in
    C++, C#, Java, JavaScript or on mobile. The graph computes
    ``predict_proba`` (classifier) or ``predict`` (regressor) from a float32
    ``(batch, time, features)`` array; it cannot be trained further.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
import zlib

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._typing import Estimator, FileLike

FORMAT_NAME = "sklstm-model"
FORMAT_VERSION = 1

_METADATA = "metadata.json"
_WEIGHTS = "weights.safetensors"
# Far above what any real model needs (the history of 100k epochs is a few
# MiB), low enough that a crafted archive cannot exhaust memory.
_MAX_METADATA_BYTES = 64 * 2**20
# Attributes that are rebuilt rather than stored as data.
_REBUILT = ("net_", "history_")
_ATTRIBUTE_NAME = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")
_PICKLE_PROTOCOL_BYTE = 0x80


def _estimator_classes():
    from ._classifier import LSTMClassifier
    from ._regressor import LSTMRegressor

    return {cls.__name__: cls for cls in (LSTMClassifier, LSTMRegressor)}


class _Unsaveable(TypeError):
    """A value that has no JSON form; ``args[0]`` says where it sits."""


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


# ---------------------------------------------------------------------------
def save(estimator: Estimator, path: FileLike) -> None:
    """Save a fitted estimator to ``path`` without pickle.

    See :meth:`sklstm.LSTMClassifier.save`; this is the function behind it.
    """
    check_is_fitted(estimator)
    classes = _estimator_classes()
    name = type(estimator).__name__
    if classes.get(name) is not type(estimator):
        raise TypeError(
            f"Only {' and '.join(classes)} can be saved in the sklstm format, "
            f"got {type(estimator).__qualname__}. Save subclasses with pickle "
            "or joblib instead."
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
    for key, value in vars(estimator).items():
        if key in params or key in _REBUILT:
            continue
        try:
            fitted[key] = _encode(value, key)
        except _Unsaveable:
            raise ValueError(
                f"Fitted attribute {key} of type {type(value).__name__} cannot "
                "be saved in the sklstm format. Use pickle/joblib for this "
                "estimator."
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

    from . import __version__

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
    weights = _weights_to_bytes(net.module_.state_dict())
    _write_archive(path, json.dumps(metadata).encode("utf-8"), weights)


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


def _write_archive(path, metadata, weights):
    def write(target):
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_METADATA, metadata)
            zf.writestr(_WEIGHTS, weights)

    if hasattr(path, "write"):
        write(path)
        return
    path = os.fspath(path)
    # Write next to the target, then rename: an interrupted save never
    # leaves a half-written model where a good one was.
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


# ---------------------------------------------------------------------------
def load(path: FileLike, *, device: str | None = None) -> Estimator:
    """Load an estimator saved with ``save``, without running code from it.

    The file is read as a zip archive of JSON and safetensors data; nothing in
    it is unpickled or executed, so loading a file from an untrusted source is
    safe. A file that is not an sklstm model (a pickle or joblib file
    included), a truncated or corrupt one, or one written by a newer sklstm
    raises a ``ValueError`` that says which.

    Parameters
    ----------
    path : str, path-like or binary file object
        Where the model was saved.
    device : str, default=None
        torch device to put the network on, e.g. "cpu" or "cuda". None: the
        device the estimator's ``device`` parameter picks on this machine,
        or the CPU when that device is not available here (a model fitted on
        a GPU loads on a CPU-only machine).

    Returns
    -------
    estimator : LSTMClassifier or LSTMRegressor
        The fitted estimator; it predicts exactly as the saved one did.

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> import sklstm
    >>> X = np.random.RandomState(0).normal(size=(20, 5, 1)).astype("float32")
    >>> y = (X.sum(axis=(1, 2)) > 0).astype(int)
    >>> clf = sklstm.LSTMClassifier(hidden_size=4, max_epochs=2).fit(X, y)
    >>> file = io.BytesIO()
    >>> clf.save(file)
    >>> loaded = sklstm.load(io.BytesIO(file.getvalue()))
    >>> bool((loaded.predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    where = _describe(path)
    metadata, weights = _read_archive(path, where)
    return _rebuild(metadata, weights, device, where)


def _describe(path):
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "file"


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
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{where} is corrupt: {_METADATA} is not valid JSON ({exc})."
        ) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{where} is not an sklstm model file: {_METADATA} does not name "
            f"the {FORMAT_NAME!r} format."
        )
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(
            f"{where} is corrupt: format_version {version!r} is not valid."
        )
    if version > FORMAT_VERSION:
        from . import __version__

        raise ValueError(
            f"{where} was written by sklstm {metadata.get('sklstm_version')} in "
            f"format version {version}, but this sklstm ({__version__}) reads "
            f"format versions up to {FORMAT_VERSION}. Upgrade sklstm "
            "(pip install -U sklstm) to load it."
        )
    missing = [
        key
        for key in ("estimator", "params", "fitted", "module_kwargs", "history")
        if key not in metadata
    ]
    if missing:
        raise ValueError(f"{where} is corrupt: {_METADATA} lacks {', '.join(missing)}.")
    return metadata


def _rebuild(metadata, weights, device, where):
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    from ._device import seeded
    from ._trainer import restore_net

    classes = _estimator_classes()
    cls = classes.get(metadata["estimator"])
    if cls is None:
        raise ValueError(
            f"{where} holds an estimator of unknown class "
            f"{metadata['estimator']!r}; this sklstm loads {sorted(classes)}."
        )
    try:
        params = _decode_mapping(metadata["params"])
        fitted = _decode_mapping(metadata["fitted"])
        module_kwargs = _decode_mapping(metadata["module_kwargs"])
        history = metadata["history"]
        if not isinstance(history, list) or not all(
            isinstance(row, dict) for row in history
        ):
            raise ValueError("the history is not a list of epochs")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where} is corrupt: {exc}.") from None

    known = set(cls().get_params(deep=False))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"{where} has parameters {unknown} that this sklstm's "
            f"{cls.__name__} does not know; it was written by sklstm "
            f"{metadata.get('sklstm_version')}. Upgrade sklstm to load it."
        )
    estimator = cls(**params)
    for key, value in fitted.items():
        if not _ATTRIBUTE_NAME.match(key) or key in known or hasattr(cls, key):
            raise ValueError(f"{where} is corrupt: invalid attribute name {key!r}.")
        setattr(estimator, key, value)

    try:
        tensors = safetensors_load(weights)
    except SafetensorError as exc:
        raise ValueError(
            f"{where} is corrupt: {_WEIGHTS} cannot be read ({exc})."
        ) from None

    target = _load_device(estimator, device)
    seed = int(fitted.get("_seed", 0))
    try:
        net = estimator._net_for(
            module_kwargs,
            target,
            n_train=int(fitted.get("_n_train", 1)),
            use_validation=bool(fitted.get("_use_validation", False)),
        )
        # Initialisation draws random weights (replaced just below): fork the
        # RNG so that loading leaves the caller's random state alone.
        with seeded(seed, target):
            net.initialize()
        restore_net(net, tensors, history)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{where} does not match the network it describes ({exc}). The "
            "file is corrupt or was edited."
        ) from None
    estimator.net_ = net
    estimator.history_ = net.history
    return estimator


def _decode_mapping(value):
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return {str(key): _decode(item) for key, item in value.items()}


def _load_device(estimator, device):
    from ._device import resolve_device

    if device is not None:
        return resolve_device(device)
    try:
        return resolve_device(estimator.device)
    except (ValueError, TypeError):
        return torch.device("cpu")


__all__ = ["FORMAT_VERSION", "load", "save"]

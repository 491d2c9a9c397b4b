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

from ._classifier import LSTMClassifier
from ._model_file import FORMAT_VERSION, read_model_file, write_model_file
from ._regressor import LSTMRegressor
from ._typing import Estimator, FileLike

# The classes a model file may name, by the name it gives.
_ESTIMATORS = {cls.__name__: cls for cls in (LSTMClassifier, LSTMRegressor)}


def save(estimator: Estimator, path: FileLike) -> None:
    """Save a fitted estimator to ``path`` without pickle.

    The same as ``estimator.save(path)``; see :meth:`sklstm.LSTMClassifier.save`.

    Parameters
    ----------
    estimator : LSTMClassifier or LSTMRegressor
        The fitted estimator.
    path : str, path-like or binary file object
        Where to write.
    """
    write_model_file(estimator, path)


def load(path: FileLike, *, device: str | None = None) -> Estimator:
    """Load an estimator saved with ``save``, without running code from it.

    The file is read as a zip archive of JSON and safetensors data; nothing in
    it is unpickled or executed, so loading a file from an untrusted source is
    safe. Every part of the file is checked before the estimator is built:
    the parameters as ``fit`` checks them, the fitted state against the
    model-file schema, and both against the network and its weights. No
    size the file declares is trusted before these checks, so a crafted
    file (a zip bomb, a huge declared network) cannot exhaust memory. A file
    that is not an sklstm model (a pickle or joblib file included), a
    truncated, corrupt or edited one, or one written by a newer sklstm
    raises a ``ValueError`` that names the file and the problem. Files
    written by earlier sklstm versions load.

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
    return read_model_file(path, _ESTIMATORS, device=device)


__all__ = ["FORMAT_VERSION", "load", "save"]

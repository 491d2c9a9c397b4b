"""Type aliases of the public API's signatures (see ``sklstm/py.typed``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, TypeAlias

import numpy as np
from numpy.typing import ArrayLike

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Self

if TYPE_CHECKING:
    from ._classifier import LSTMClassifier
    from ._regressor import LSTMRegressor

# Sequences as fit and predict take them: a 3-D or 2-D array or DataFrame, or
# a list of sequences of different lengths (the ragged form).
SequencesLike = ArrayLike | Sequence[ArrayLike]
# Targets: one per sequence, or one per time step (ragged for ragged X).
TargetsLike = ArrayLike | Sequence[ArrayLike]
# A time series for the forecaster, or a list of series.
SeriesLike = ArrayLike | Sequence[ArrayLike]
# What predict and predict_proba return: an array, or one array per sequence
# for ragged input in output_mode="sequence".
Predictions = np.ndarray | list[np.ndarray]
# A file name, or an open binary file.
PathLike = str | os.PathLike[str]
FileLike = str | os.PathLike[str] | IO[bytes]
# A fitted estimator that can be saved, loaded and plotted.
Estimator: TypeAlias = "LSTMClassifier | LSTMRegressor"

__all__ = [
    "ArrayLike",
    "Estimator",
    "FileLike",
    "PathLike",
    "Predictions",
    "Self",
    "SequencesLike",
    "SeriesLike",
    "TargetsLike",
]

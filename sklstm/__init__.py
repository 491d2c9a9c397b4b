"""scikit-learn estimators backed by recurrent neural networks (LSTM, GRU)."""

from ._classifier import LSTMClassifier
from ._display import HistoryDisplay
from ._long_table import SequenceFrame, from_long_format
from ._out_of_core import RaggedSequences
from ._regressor import LSTMRegressor
from ._sequences import from_channels_first
from ._version import __version__
from .forecasting import LSTMForecaster
from .persistence import load

__all__ = [
    "HistoryDisplay",
    "LSTMClassifier",
    "LSTMForecaster",
    "LSTMRegressor",
    "RaggedSequences",
    "SequenceFrame",
    "from_channels_first",
    "from_long_format",
    "load",
    "__version__",
]

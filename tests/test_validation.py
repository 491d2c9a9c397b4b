"""Bad input: a clear ValueError or TypeError from sklstm before torch runs.

Each case names the mistake a user makes, calls the public API with it and
checks both the exception type and a fragment of the message that names the
problem. While these cases run, the skorch net refuses to initialise, train
or predict, so an error raised by torch itself (or no error) fails the test.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
from skorch.callbacks import Callback

from sklstm import LSTMClassifier, LSTMRegressor, from_channels_first, from_long_format
from sklstm._trainer import SequenceNet

FAST = {"hidden_size": 4, "max_epochs": 1, "random_state": 0, "device": "cpu"}

_rng = np.random.RandomState(0)
X = _rng.normal(size=(12, 5, 2)).astype(np.float32)
Y = np.array([0, 1] * 6)
STEP_Y = (X[:, :, 0] > 0).astype(int)
RAGGED = [X[i, : 2 + i % 4] for i in range(12)]


def clf(**params):
    return LSTMClassifier(**{**FAST, **params})


def reg(**params):
    return LSTMRegressor(**{**FAST, **params})


def with_value(array, index, value):
    array = np.array(array, dtype=np.float64)
    array[index] = value
    return array


@pytest.fixture(scope="module")
def fitted():
    """Estimators fitted once on good data, for the after-fit cases."""
    return {
        "clf": clf().fit(X, Y),
        "reg": reg().fit(X, Y.astype(float)),
        "table": clf().fit(X[:, :, 0], Y),
        "frame": clf().fit(pd.DataFrame(X[:, :, 0], columns=list("abcde")), Y),
        "steps": clf(output_mode="sequence").fit(X, STEP_Y),
        "reg_steps": reg(output_mode="sequence").fit(X, X[:, :, 1]),
    }


@pytest.fixture
def torch_forbidden(monkeypatch):
    """Fail loudly if a bad input gets as far as the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("invalid input reached the torch network")

    for method in ("initialize", "fit_loop", "infer"):
        monkeypatch.setattr(SequenceNet, method, refuse)


class _Noop(Callback):
    pass


# (case id, call, exception type, message fragment)
def _assuming_finite(call):
    """Run ``call`` with scikit-learn's finiteness checks switched off."""
    import sklearn

    def run():
        with sklearn.config_context(assume_finite=True):
            return call()

    return run


FIT_CASES = [
    # extremes and missing targets, refused before training even when
    # scikit-learn is told to assume finite data
    (
        "reg_y_overflows_standardisation",
        _assuming_finite(lambda: reg().fit(X, np.linspace(-1, 1, 12) * 1e308)),
        ValueError,
        "y holds values so large",
    ),
    (
        "reg_y_nan_assume_finite",
        _assuming_finite(lambda: reg().fit(X, with_value(np.zeros(12), 3, np.nan))),
        ValueError,
        "y contains NaN",
    ),
    (
        "clf_y_none_assume_finite",
        _assuming_finite(
            lambda: clf().fit(X, np.array([0, 1] * 5 + [None, 1], dtype=object))
        ),
        ValueError,
        "missing labels",
    ),
    (
        "clf_y_nan_assume_finite",
        _assuming_finite(
            lambda: clf().fit(X, with_value(np.array([0.0, 1.0] * 6), 2, np.nan))
        ),
        ValueError,
        "missing labels",
    ),
    (
        "clf_steps_two_columns",
        lambda: clf(output_mode="sequence").fit(X, np.zeros((12, 5, 2), dtype=int)),
        ValueError,
        "one label per time step",
    ),
    (
        "sample_weight_overflows",
        lambda: reg().fit(X, np.arange(12.0), sample_weight=np.full(12, 1e308)),
        ValueError,
        "sample_weight holds values so large",
    ),
    # non-finite values
    (
        "inf",
        lambda: clf().fit(with_value(X, (3, 0, 1), np.inf), Y),
        ValueError,
        "infinity",
    ),
    (
        "beyond_float32",
        lambda: clf().fit(with_value(X, (0, 0, 0), 1e300), Y),
        ValueError,
        "precision='64'",
    ),
    (
        "variance_overflow",
        lambda: clf(precision="64").fit(with_value(X, (0, 0, 0), 1e300), Y),
        ValueError,
        "Rescale X",
    ),
    # dimensionality
    ("1d", lambda: clf().fit(np.arange(12.0), Y), ValueError, "1-D array"),
    ("4d", lambda: clf().fit(X[..., None], Y), ValueError, "from_channels_first"),
    (
        "ragged_item_3d",
        lambda: clf().fit([np.zeros((2, 2, 2))] * 2, [0, 1]),
        ValueError,
        "3 dimensions",
    ),
    (
        "ragged_item_scalar",
        lambda: clf().fit([np.zeros(3), np.float64(1.0)], [0, 1]),
        ValueError,
        "0 dimensions",
    ),
    # empty inputs and empty sequences
    ("no_samples", lambda: clf().fit(X[:0], Y[:0]), ValueError, "0 sample"),
    ("empty_list", lambda: clf().fit([], []), ValueError, "X is empty"),
    ("zero_timesteps", lambda: clf().fit(X[:, :0], Y), ValueError, "0 time steps"),
    ("zero_features", lambda: clf().fit(X[:, :, :0], Y), ValueError, "0 features"),
    (
        "empty_sequence",
        lambda: clf().fit(RAGGED[:-1] + [np.zeros((0, 2))], Y),
        ValueError,
        "X[11] is empty",
    ),
    # inconsistent features within a ragged list
    (
        "ragged_zero_features",
        lambda: clf().fit([np.zeros((3, 0))] * 12, Y),
        ValueError,
        "0 features per time step",
    ),
    (
        "ragged_features",
        lambda: clf().fit(RAGGED[:-1] + [np.zeros((3, 3))], Y),
        ValueError,
        "different numbers of features",
    ),
    # not a collection of numeric sequences
    ("X_none", lambda: clf().fit(None, Y), TypeError, "array-like of sequences"),
    (
        "X_string",
        lambda: clf().fit("sequences.csv", Y),
        TypeError,
        "array-like of sequences",
    ),
    ("X_generator", lambda: clf().fit((x for x in X), Y), TypeError, "list(X)"),
    ("X_dict", lambda: clf().fit({"a": X}, Y), TypeError, "dict"),
    (
        "none_in_list",
        lambda: clf().fit([X[0], None], [0, 1]),
        TypeError,
        "X[1] is NoneType",
    ),
    (
        "object_dicts",
        lambda: clf().fit(np.array([[{"a": 1}] * 5] * 12, dtype=object), Y),
        TypeError,
        "must be a string or a number",
    ),
    (
        "sparse_dok",
        lambda: clf().fit(scipy.sparse.dok_matrix(X[:, :, 0]), Y),
        TypeError,
        "dense data is required",
    ),
    (
        "frame_strings",
        lambda: clf().fit(pd.DataFrame({"t0": ["x"] * 12, "t1": [1.0] * 12}), Y),
        ValueError,
        "non-numeric",
    ),
    ("complex", lambda: clf().fit(X.astype(complex), Y), ValueError, "complex"),
    (
        "complex_ragged",
        lambda: clf().fit([x.astype(complex) for x in RAGGED], Y),
        ValueError,
        "complex",
    ),
    (
        "datetime",
        lambda: clf().fit(np.zeros((12, 5), "datetime64[s]"), Y),
        ValueError,
        "datetime64",
    ),
    (
        "masked",
        lambda: clf().fit(np.ma.masked_greater(X, 1.0), Y),
        ValueError,
        "masked values",
    ),
    (
        "sparse",
        lambda: clf().fit(scipy.sparse.csr_matrix(X[:, :, 0]), Y),
        TypeError,
        "dense",
    ),
    # X / y length mismatches
    (
        "y_too_short",
        lambda: clf().fit(X, Y[:-1]),
        ValueError,
        "X has 12 sequences but y has 11",
    ),
    (
        "reg_y_too_long",
        lambda: reg().fit(X, np.zeros(13)),
        ValueError,
        "X has 12 sequences but y has 13",
    ),
    (
        "steps_count",
        lambda: clf(output_mode="sequence").fit(X, STEP_Y[:-1]),
        ValueError,
        "X has 12 sequences but y has 11",
    ),
    (
        "steps_per_sequence",
        lambda: clf(output_mode="sequence").fit(X, STEP_Y[:, :4]),
        ValueError,
        "y[0] has 4 steps but X[0] has 5",
    ),
    (
        "steps_ragged",
        lambda: reg(output_mode="sequence").fit(
            RAGGED, [np.zeros(len(x)) for x in RAGGED[:-1]] + [np.zeros(1)]
        ),
        ValueError,
        "y[11] has 1 steps",
    ),
    (
        "steps_given_labels",
        lambda: clf(output_mode="sequence").fit(X, Y),
        ValueError,
        "one target per time step",
    ),
    # targets
    ("y_none", lambda: clf().fit(X, None), ValueError, "requires y"),
    ("single_class", lambda: clf().fit(X, np.zeros(12)), ValueError, "only one class"),
    (
        "single_class_steps",
        lambda: clf(output_mode="sequence").fit(X, np.zeros((12, 5), int)),
        ValueError,
        "only one class",
    ),
    (
        "continuous_labels",
        lambda: clf().fit(X, _rng.normal(size=12)),
        ValueError,
        "Unknown label type",
    ),
    (
        "mixed_label_types",
        lambda: clf().fit(X, np.array(["a", 1] * 6, object)),
        TypeError,
        "mixes label types",
    ),
    (
        "complex_labels",
        lambda: clf().fit(X, np.array([0, 1j] * 6)),
        ValueError,
        "complex",
    ),
    ("labels_2d", lambda: clf().fit(X, np.zeros((12, 2))), ValueError, "1d array"),
    (
        "reg_y_nan",
        lambda: reg().fit(X, with_value(np.zeros(12), 3, np.nan)),
        ValueError,
        "NaN",
    ),
    (
        "reg_y_strings",
        lambda: reg().fit(X, np.array(["a", "b"] * 6)),
        ValueError,
        "LSTMClassifier",
    ),
    (
        "reg_y_complex",
        lambda: reg().fit(X, np.zeros(12, complex)),
        ValueError,
        "complex",
    ),
    ("reg_y_3d", lambda: reg().fit(X, np.zeros((12, 2, 2))), ValueError, "dim 3"),
    # invalid parameters
    (
        "hidden_size_0",
        lambda: clf(hidden_size=0).fit(X, Y),
        ValueError,
        "'hidden_size' parameter",
    ),
    ("lr_negative", lambda: clf(lr=-1.0).fit(X, Y), ValueError, "'lr' parameter"),
    ("lr_nan", lambda: clf(lr=float("nan")).fit(X, Y), ValueError, "'lr' parameter"),
    ("cell", lambda: clf(cell="rnn").fit(X, Y), ValueError, "'cell' parameter"),
    (
        "batch_size_float",
        lambda: clf(batch_size=2.5).fit(X, Y),
        ValueError,
        "'batch_size' parameter",
    ),
    (
        "dropout_1",
        lambda: clf(dropout=1.0).fit(X, Y),
        ValueError,
        "'dropout' parameter",
    ),
    (
        "precision",
        lambda: clf(precision="16").fit(X, Y),
        ValueError,
        "'precision' parameter",
    ),
    (
        "kernel_even",
        lambda: clf(conv_kernel_size=4).fit(X, Y),
        ValueError,
        "must be odd",
    ),
    (
        "conv_filters",
        lambda: clf(conv_filters=(8, 0)).fit(X, Y),
        ValueError,
        "positive ints",
    ),
    (
        "callback_object",
        lambda: clf(callbacks=["print"]).fit(X, Y),
        TypeError,
        "skorch Callback",
    ),
    (
        "callback_tuple",
        lambda: clf(callbacks=[(_Noop(), "name")]).fit(X, Y),
        TypeError,
        "(name, Callback)",
    ),
    (
        "early_stopping_too_few",
        lambda: clf(early_stopping=True, validation_fraction=0.01).fit(X, Y),
        ValueError,
        "validation_fraction",
    ),
    # devices that do not exist here
    (
        "device_banana",
        lambda: clf(device="banana").fit(X, Y),
        ValueError,
        "not a torch device",
    ),
    ("device_int", lambda: clf(device=0).fit(X, Y), ValueError, "'device' parameter"),
    # class_weight
    (
        "class_weight_unknown",
        lambda: clf(class_weight={5: 1.0}).fit(X, Y),
        ValueError,
        "not classes",
    ),
    (
        "class_weight_negative",
        lambda: clf(class_weight={0: -1.0}).fit(X, Y),
        ValueError,
        "non-negative",
    ),
    (
        "class_weight_nan",
        lambda: clf(class_weight={0: np.nan}).fit(X, Y),
        ValueError,
        "finite",
    ),
    (
        "class_weight_text",
        lambda: clf(class_weight={0: "high"}).fit(X, Y),
        TypeError,
        "must be numbers",
    ),
    (
        "class_weight_string",
        lambda: clf(class_weight="balance").fit(X, Y),
        ValueError,
        "'class_weight' parameter",
    ),
    (
        "class_weight_list",
        lambda: clf(class_weight=[1.0, 2.0]).fit(X, Y),
        ValueError,
        "'class_weight' parameter",
    ),
    (
        "class_weight_all_zero",
        lambda: clf(class_weight={0: 0, 1: 0}).fit(X, Y),
        ValueError,
        "weight zero",
    ),
    # sample_weight
    (
        "sample_weight_negative",
        lambda: clf().fit(X, Y, sample_weight=-np.ones(12)),
        ValueError,
        "Negative",
    ),
    (
        "sample_weight_length",
        lambda: clf().fit(X, Y, sample_weight=np.ones(11)),
        ValueError,
        "11 values but X has 12 sequences",
    ),
    (
        "sample_weight_nan",
        lambda: clf().fit(X, Y, sample_weight=with_value(np.ones(12), 0, np.nan)),
        ValueError,
        "NaN",
    ),
    (
        "sample_weight_inf",
        lambda: clf().fit(X, Y, sample_weight=with_value(np.ones(12), 0, np.inf)),
        ValueError,
        "infinity",
    ),
    (
        "sample_weight_zero",
        lambda: clf().fit(X, Y, sample_weight=np.zeros(12)),
        ValueError,
        "non-zero",
    ),
    (
        "sample_weight_per_step",
        lambda: clf(output_mode="sequence").fit(
            X, STEP_Y, sample_weight=np.ones((12, 5))
        ),
        ValueError,
        "Per-step weights are not supported",
    ),
    (
        "sample_weight_text",
        lambda: clf().fit(X, Y, sample_weight=["a"] * 12),
        ValueError,
        "non-numeric",
    ),
    # partial_fit
    (
        "partial_fit_no_classes",
        lambda: clf().partial_fit(X, Y),
        ValueError,
        "classes must be passed",
    ),
    (
        "partial_fit_one_class",
        lambda: clf().partial_fit(X, Y, classes=[0]),
        ValueError,
        "only one class",
    ),
]


def _device_cases():
    """Devices that do not exist on this machine, whatever it has."""
    missing = f"cuda:{torch.cuda.device_count() + 7}"  # "cuda:7" without CUDA
    cases = [
        (
            "device_cuda_missing_index",
            lambda: clf(device=missing).fit(X, Y),
            ValueError,
            "does not exist" if torch.cuda.is_available() else "CUDA is not",
        )
    ]
    if not torch.cuda.is_available():
        cases.append(
            (
                "device_cuda",
                lambda: clf(device="cuda").fit(X, Y),
                ValueError,
                "CUDA is not available",
            )
        )
    if not torch.backends.mps.is_available():
        cases.append(
            (
                "device_mps",
                lambda: clf(device="mps").fit(X, Y),
                ValueError,
                "MPS is not available",
            )
        )
    return cases


AFTER_FIT_CASES = [
    (
        "predict_proba_inf",
        lambda f: f["clf"].predict_proba(with_value(X, (0, 0, 0), -np.inf)),
        ValueError,
        "infinity",
    ),
    (
        "predict_features",
        lambda f: f["clf"].predict(X[:, :, :1]),
        ValueError,
        "expecting 2 features",
    ),
    (
        "predict_ragged_features",
        lambda f: f["clf"].predict([np.zeros((3, 3))]),
        ValueError,
        "expecting 2 features",
    ),
    (
        "predict_table_on_sequences",
        lambda f: f["clf"].predict(X[:, :, 0]),
        ValueError,
        "features per time step",
    ),
    (
        "predict_sequences_on_table",
        lambda f: f["table"].predict(X),
        ValueError,
        "features per time step",
    ),
    (
        "predict_table_columns",
        lambda f: f["table"].predict(X[:, :3, 0]),
        ValueError,
        "expecting 5 features",
    ),
    (
        "predict_frame_names",
        lambda f: f["frame"].predict(pd.DataFrame(X[:, :, 0], columns=list("vwxyz"))),
        ValueError,
        "feature names",
    ),
    ("predict_empty", lambda f: f["clf"].predict(X[:0]), ValueError, "0 sample"),
    (
        "predict_empty_sequence",
        lambda f: f["clf"].predict([np.zeros((0, 2))]),
        ValueError,
        "is empty",
    ),
    (
        "predict_strings",
        lambda f: f["clf"].predict_proba(np.full((2, 5, 2), "a")),
        ValueError,
        "non-numeric",
    ),
    (
        "predict_proba_1d",
        lambda f: f["clf"].predict_proba(X[0, :, 0]),
        ValueError,
        "1-D array",
    ),
    ("predict_unfitted", lambda f: clf().predict(X), ValueError, "not fitted"),
    (
        "predict_proba_unfitted",
        lambda f: clf().predict_proba(X),
        ValueError,
        "not fitted",
    ),
    (
        "score_y_length",
        lambda f: f["clf"].score(X, Y[:-1]),
        ValueError,
        "X has 12 sequences but y has 11",
    ),
    ("score_y_none", lambda f: f["clf"].score(X, None), ValueError, "got None"),
    (
        "score_sample_weight",
        lambda f: f["clf"].score(X, Y, sample_weight=[1.0, 2.0]),
        ValueError,
        "2 values but X has 12",
    ),
    (
        "score_steps_length",
        lambda f: f["steps"].score(X, STEP_Y[:, :4]),
        ValueError,
        "y[0] has 4 steps",
    ),
    (
        "score_steps_labels",
        lambda f: f["steps"].score(X, Y),
        ValueError,
        "one target per time step",
    ),
    (
        "score_steps_none",
        lambda f: f["steps"].score(X, None),
        ValueError,
        "one target per time step",
    ),
    (
        "reg_score_outputs",
        lambda f: f["reg"].score(X, np.zeros((12, 3))),
        ValueError,
        "3 outputs",
    ),
    (
        "reg_score_steps_strings",
        lambda f: f["reg_steps"].score(X, np.full((12, 5), "a")),
        ValueError,
        "non-numeric",
    ),
    (
        "partial_fit_new_features",
        lambda f: f["clf"].partial_fit(X[:, :, :1], Y),
        ValueError,
        "expecting 2 features",
    ),
    (
        "partial_fit_unseen_label",
        lambda f: f["clf"].partial_fit(X, Y + 5),
        ValueError,
        "not among the classes",
    ),
    (
        "partial_fit_other_classes",
        lambda f: f["clf"].partial_fit(X, Y, classes=[0, 1, 2]),
        ValueError,
        "differs from the classes",
    ),
    (
        "reg_partial_fit_outputs",
        lambda f: f["reg"].partial_fit(X, np.zeros((12, 2))),
        ValueError,
        "2 outputs",
    ),
]

HELPER_CASES = [
    (
        "channels_first_2d",
        lambda: from_channels_first(np.zeros((3, 40))),
        ValueError,
        "3-D array",
    ),
    (
        "channels_first_none",
        lambda: from_channels_first(None),
        TypeError,
        "got NoneType",
    ),
    ("channels_first_empty", lambda: from_channels_first([]), ValueError, "empty"),
    (
        "channels_first_case_3d",
        lambda: from_channels_first([np.zeros((2, 2, 2))]),
        ValueError,
        "X[0] has shape (2, 2, 2)",
    ),
    (
        "channels_first_uneven_channels",
        lambda: from_channels_first([[[1.0, 2.0], [1.0]]]),
        ValueError,
        "same number of time points",
    ),
    (
        "channels_first_uneven_cases",
        lambda: from_channels_first([np.zeros((2, 3)), [[0.0, 1.0], [0.0]]]),
        ValueError,
        "X[1] could not be read",
    ),
    (
        "long_not_frame",
        lambda: from_long_format(np.zeros((3, 3)), id_column="id", time_column="t"),
        TypeError,
        "pandas DataFrame",
    ),
    (
        "long_missing_column",
        lambda: from_long_format(
            pd.DataFrame({"id": [1]}), id_column="id", time_column="t"
        ),
        ValueError,
        "Column 't' is not in the DataFrame",
    ),
    (
        "long_empty",
        lambda: from_long_format(
            pd.DataFrame({"id": [], "t": [], "v": []}), id_column="id", time_column="t"
        ),
        ValueError,
        "no rows",
    ),
    (
        "long_missing_id",
        lambda: from_long_format(
            pd.DataFrame({"id": [1.0, np.nan], "t": [0, 1], "v": [0.5, 0.6]}),
            id_column="id",
            time_column="t",
        ),
        ValueError,
        "missing values",
    ),
    (
        "long_text_feature",
        lambda: from_long_format(
            pd.DataFrame({"id": [1, 1], "t": [0, 1], "v": ["a", "b"]}),
            id_column="id",
            time_column="t",
        ),
        ValueError,
        "not numeric",
    ),
    (
        "long_duplicate_steps",
        lambda: from_long_format(
            pd.DataFrame({"id": [1, 1], "t": [0, 0], "v": [0.5, 0.6]}),
            id_column="id",
            time_column="t",
        ),
        ValueError,
        "ambiguous",
    ),
    (
        "long_feature_columns_unhashable",
        lambda: from_long_format(
            pd.DataFrame({"id": [1, 1], "t": [0, 1], "v": [0.5, 0.6]}),
            id_column="id",
            time_column="t",
            feature_columns=[["v"]],
        ),
        TypeError,
        "list of column names",
    ),
    (
        "long_unknown_feature",
        lambda: from_long_format(
            pd.DataFrame({"id": [1, 1], "t": [0, 1], "v": [0.5, 0.6]}),
            id_column="id",
            time_column="t",
            feature_columns=["w"],
        ),
        ValueError,
        "missing or empty",
    ),
]


def _ids(cases):
    return [case[0] for case in cases]


ALL_FIT_CASES = FIT_CASES + _device_cases()


@pytest.mark.parametrize(
    "name, call, error, message", ALL_FIT_CASES, ids=_ids(ALL_FIT_CASES)
)
def test_fit_rejects_bad_input(torch_forbidden, name, call, error, message):
    with pytest.raises(error, match=_literal(message)):
        call()


@pytest.mark.parametrize(
    "name, call, error, message", AFTER_FIT_CASES, ids=_ids(AFTER_FIT_CASES)
)
def test_fitted_estimator_rejects_bad_input(
    fitted, torch_forbidden, name, call, error, message
):
    with pytest.raises(error, match=_literal(message)):
        call(fitted)


@pytest.mark.parametrize(
    "name, call, error, message", HELPER_CASES, ids=_ids(HELPER_CASES)
)
def test_helpers_reject_bad_input(name, call, error, message):
    with pytest.raises(error, match=_literal(message)):
        call()


def _literal(fragment):
    import re

    return re.escape(fragment)


def test_an_array_that_looks_channels_first_gets_a_warning():
    rng = np.random.RandomState(0)
    aeon_like = rng.normal(size=(16, 6, 100)).astype(np.float32)  # 6 channels
    y = np.array([0, 1] * 8)
    with pytest.warns(UserWarning, match="from_channels_first"):
        LSTMClassifier(max_epochs=1, hidden_size=4).fit(aeon_like, y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        converted = from_channels_first(aeon_like)
        LSTMClassifier(max_epochs=1, hidden_size=4).fit(converted, y)


@pytest.mark.parametrize(
    "param",
    [
        "hidden_size",
        "num_layers",
        "batch_size",
        "recurrent_stride",
        "lr",
        "min_frequency",
    ],
)
@pytest.mark.parametrize("value", [True, False, np.True_])
def test_a_bool_is_not_taken_for_a_number(param, value):
    X = np.random.RandomState(0).normal(size=(10, 5, 2))
    estimator = LSTMClassifier(**{param: value}, max_epochs=1)
    with pytest.raises(ValueError, match=param):
        estimator.fit(X, np.arange(10) % 2)
    assert not hasattr(estimator, "net_")

"""Input conversion: every accepted form ends as steps + lengths."""

import numpy as np
import pandas as pd
import pytest

from sklstm import from_channels_first, from_long_format
from sklstm._sequences import to_sequences


def test_3d_array_keeps_shape_and_computes_in_float32():
    X = np.arange(24, dtype=np.float64).reshape(2, 4, 3)
    sequences = to_sequences(X)
    assert sequences.steps.shape == (8, 3)
    assert sequences.steps.dtype == np.float32
    assert sequences.lengths.tolist() == [4, 4]
    assert sequences.equal_lengths and sequences.max_length == 4
    assert not sequences.ragged and not sequences.tabular
    np.testing.assert_array_equal(sequences.steps.reshape(X.shape), X)


def test_float64_precision_keeps_float64():
    X = np.random.RandomState(0).normal(size=(3, 5, 2))
    sequences = to_sequences(X, precision="64")
    assert sequences.steps.dtype == np.float64
    np.testing.assert_array_equal(sequences.steps.reshape(X.shape), X)


def test_float32_input_is_not_copied():
    X = np.zeros((4, 5, 2), dtype=np.float32)
    assert np.shares_memory(to_sequences(X).steps, X)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32, np.float64])
def test_2d_table_is_univariate_sequences(dtype):
    X = np.arange(12).reshape(3, 4).astype(dtype)
    sequences = to_sequences(X)
    assert sequences.tabular
    assert sequences.steps.shape == (12, 1)
    assert sequences.table_width == 4
    np.testing.assert_array_equal(sequences.steps[:, 0].reshape(X.shape), X)


def test_dataframe_rows_are_sequences_and_names_are_kept():
    frame = pd.DataFrame(np.ones((3, 4)), columns=["t0", "t1", "t2", "t3"])
    sequences = to_sequences(frame)
    assert sequences.steps.shape == (12, 1)
    assert sequences.lengths.tolist() == [4, 4, 4]
    assert sequences.feature_names.tolist() == ["t0", "t1", "t2", "t3"]


def test_ragged_list_is_its_steps_back_to_back_with_lengths():
    X = [np.ones((2, 3)), 2 * np.ones((5, 3)), 3 * np.ones((1, 3))]
    sequences = to_sequences(X)
    assert sequences.ragged and not sequences.equal_lengths
    # No padding: the steps take what the sequences take.
    assert sequences.steps.shape == (8, 3)
    assert sequences.lengths.tolist() == [2, 5, 1]
    assert sequences.offsets.tolist() == [0, 2, 7, 8]
    assert sequences.max_length == 5
    np.testing.assert_array_equal(sequences.steps, np.concatenate(X))


def test_ragged_1d_items_are_univariate():
    sequences = to_sequences([np.arange(3), np.arange(6), pd.Series([1.0, 2.0])])
    assert sequences.steps.shape == (11, 1)
    assert sequences.lengths.tolist() == [3, 6, 2]


def test_list_of_unequal_plain_lists_is_ragged():
    sequences = to_sequences([[1.0, 2.0], [3.0, 4.0, 5.0]])
    assert sequences.ragged
    assert sequences.lengths.tolist() == [2, 3]


def test_list_of_equal_plain_lists_is_a_table():
    sequences = to_sequences([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert sequences.tabular and not sequences.ragged


@pytest.mark.parametrize(
    "X, message",
    [
        ([np.ones((3, 2)), np.ones((3, 3))], "different numbers of features"),
        ([np.ones((3, 2)), np.ones((0, 2))], "empty"),
        ([np.ones((2, 2, 2))], "dimensions"),
        ([np.array(["a", "b"], dtype=object)], "non-numeric"),
        ([np.array([1j, 2j])], "complex"),
        (np.ones((2, 3, 4, 5)), "2-D or 3-D"),
        (np.ones(5), "1-D"),
        (np.ones((3, 0, 2)), "time steps"),
        (np.full((2, 3, 1), np.inf), "infinity"),
        ([], "empty"),
    ],
)
def test_invalid_inputs_raise_clear_errors(X, message):
    with pytest.raises(ValueError, match=message):
        to_sequences(X)


@pytest.mark.parametrize(
    "layout",
    ["contiguous", "reversed", "strided", "read-only", "float64"],
)
@pytest.mark.parametrize(
    "value, message", [(np.inf, "infinity"), (-np.inf, "infinity")]
)
def test_non_finite_values_are_found_in_every_memory_layout(layout, value, message):
    # Every layout is made contiguous and writeable (copied if need be)
    # before the quick sum: a single bad value must be found in each.
    X = np.zeros((6, 5, 3), dtype=np.float32)
    X[4, 2, 1] = value
    if layout == "reversed":
        X = X[::-1]
    elif layout == "strided":
        X = np.repeat(X, 2, axis=2)[:, :, ::2]
    elif layout == "read-only":
        X.flags.writeable = False
    elif layout == "float64":
        X = X.astype(np.float64)
    with pytest.raises(ValueError, match=message):
        to_sequences(X)


def test_large_finite_values_whose_sum_overflows_are_accepted():
    # The quick check sums the values; an overflowing sum alone is no error.
    X = np.full((4, 10, 2), 3e38, dtype=np.float32)
    sequences = to_sequences(X)
    assert np.isfinite(sequences.steps).all()


def test_strings_and_scalars_are_type_errors():
    for X in ["abc", 3.0, None]:
        with pytest.raises(TypeError, match="X must be"):
            to_sequences(X)


def test_from_channels_first_transposes_arrays_and_lists():
    X = np.random.RandomState(0).normal(size=(4, 3, 10))
    converted = from_channels_first(X)
    assert converted.shape == (4, 10, 3)
    np.testing.assert_array_equal(converted[1, :, 2], X[1, 2])
    ragged = from_channels_first([np.ones((3, 7)), np.ones((3, 4))])
    assert [item.shape for item in ragged] == [(7, 3), (4, 3)]


def test_from_channels_first_rejects_other_shapes():
    with pytest.raises(ValueError, match="n_cases, n_channels, n_timepoints"):
        from_channels_first(np.ones((4, 5)))


def test_from_long_format_orders_steps_and_keeps_id_order():
    frame = pd.DataFrame(
        {
            "id": ["b", "a", "b", "a", "b"],
            "time": [2, 1, 1, 0, 0],
            "x": [5.0, 4.0, 3.0, 2.0, 1.0],
            "z": [50.0, 40.0, 30.0, 20.0, 10.0],
        }
    )
    sequences, ids = from_long_format(frame, id_column="id", time_column="time")
    assert ids.tolist() == ["b", "a"]
    np.testing.assert_array_equal(sequences[0], [[1, 10], [3, 30], [5, 50]])
    np.testing.assert_array_equal(sequences[1], [[2, 20], [4, 40]])
    only_x, _ = from_long_format(
        frame, id_column="id", time_column="time", feature_columns=["x"]
    )
    assert only_x[0].shape == (3, 1)


def test_from_long_format_names_missing_columns():
    frame = pd.DataFrame({"id": [1], "t": [0], "v": [1.0]})
    with pytest.raises(ValueError, match="'when'"):
        from_long_format(frame, id_column="id", time_column="when")
    with pytest.raises(TypeError, match="DataFrame"):
        from_long_format(np.ones((3, 3)), id_column="id", time_column="t")


def test_nan_is_a_missing_value_not_an_error():
    X = np.zeros((4, 5, 2), dtype=np.float32)
    X[1, 2, 0] = np.nan
    sequences = to_sequences(X)
    assert np.isnan(sequences.steps[1 * 5 + 2, 0])
    # NaN beside an infinity: the infinity is still found.
    X[2, 0, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        to_sequences(X)

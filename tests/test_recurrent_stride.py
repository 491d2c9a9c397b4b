"""``recurrent_stride``: the recurrent layers read several steps at a time."""

import numpy as np
import pytest
import torch

import sklstm
from sklstm import LSTMClassifier, LSTMRegressor

from .conftest import make_ragged_sequences

TINY = dict(hidden_size=6, max_epochs=2, random_state=0, device="cpu")


def _stride(estimator):
    return estimator.net_.module_.recurrent_stride


@pytest.mark.parametrize(
    ("n_timesteps", "expected"), [(7, 1), (500, 1), (501, 2), (1200, 3)]
)
def test_auto_leaves_at_most_500_recurrent_steps(n_timesteps, expected):
    X = np.random.RandomState(0).normal(size=(6, n_timesteps, 1))
    y = np.arange(6) % 2
    assert _stride(LSTMClassifier(**TINY, conv_filters=None).fit(X, y)) == expected


def test_auto_is_one_for_per_step_outputs():
    X = np.random.RandomState(0).normal(size=(6, 600, 2))
    y = X[..., 0] > 0
    assert _stride(LSTMClassifier(**TINY, output_mode="sequence").fit(X, y)) == 1


def test_a_stride_with_per_step_outputs_is_refused():
    X = np.random.RandomState(0).normal(size=(6, 10, 2))
    estimator = LSTMRegressor(**TINY, output_mode="sequence", recurrent_stride=2)
    with pytest.raises(ValueError, match="recurrent_stride=2 needs output_mode='last'"):
        estimator.fit(X, X[..., 0])
    assert not hasattr(estimator, "net_")


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
def test_padding_changes_no_prediction(bidirectional, pooling):
    # Lengths 3 to 20 with stride 4: partial last chunks of every size.
    X, y = make_ragged_sequences(n_samples=30, max_length=20)
    clf = LSTMClassifier(
        **TINY, recurrent_stride=4, bidirectional=bidirectional, pooling=pooling
    ).fit(X, y)
    together = clf.predict_proba(X)
    alone = np.vstack([clf.predict_proba([x]) for x in X])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_the_recurrent_layers_see_fewer_wider_steps():
    X = np.random.RandomState(0).normal(size=(8, 30, 3))
    reg = LSTMRegressor(**TINY, recurrent_stride=4).fit(X, X[:, -1, 0])
    # 4 steps of 3 features side by side, beside the per-sequence
    # normalised copy that sequence_norm="append" adds.
    assert reg.net_.module_.rnn.input_size == 4 * 3 * 2


def test_warm_start_keeps_the_fitted_stride_and_rebuilds_on_a_new_one():
    X = np.random.RandomState(0).normal(size=(8, 600, 1))
    y = np.arange(8) % 2
    clf = LSTMClassifier(**TINY, warm_start=True).fit(X, y)
    assert _stride(clf) == 2
    clf.fit(X[:, :50], y)  # "auto" would give 1 for 50 steps; it continues
    assert _stride(clf) == 2 and clf.n_iter_ == 4
    clf.set_params(recurrent_stride=3)
    with pytest.warns(UserWarning, match="recurrent_stride"):
        clf.fit(X, y)
    assert _stride(clf) == 3 and clf.n_iter_ == 2


def test_save_and_load_keep_the_stride(tmp_path):
    X = np.random.RandomState(0).normal(size=(8, 600, 1))
    clf = LSTMClassifier(**TINY).fit(X, np.arange(8) % 2)
    clf.save(tmp_path / "model.sklstm")
    loaded = sklstm.load(tmp_path / "model.sklstm")
    assert _stride(loaded) == 2
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_chunk_means_average_each_sequences_own_steps():
    from sklstm._network import _chunk_means

    rng = np.random.RandomState(0)
    lengths = np.array([7, 3, 1, 9])
    x = rng.normal(size=(4, 2, 9)).astype(np.float32)
    mask = np.arange(9)[None, :] < lengths[:, None]
    x = x * mask[:, None, :]  # padding is zero, as the network keeps it
    means, new_lengths, new_mask = _chunk_means(
        torch.as_tensor(x), torch.as_tensor(lengths), torch.as_tensor(mask), 3
    )
    np.testing.assert_array_equal(new_lengths.numpy(), [3, 1, 1, 3])
    np.testing.assert_array_equal(new_mask.numpy(), np.arange(3) < [[3], [1], [1], [3]])
    for row, length in enumerate(lengths):
        steps = x[row, :, :length]
        for chunk in range(-(-length // 3)):
            expected = steps[:, 3 * chunk : 3 * chunk + 3].mean(axis=1)
            np.testing.assert_allclose(
                means[row, :, chunk].numpy(), expected, rtol=1e-6
            )
        assert not means[row, :, -(-length // 3) :].any()
    # Without a mask every row is full: of 8 steps, the last chunk's 2 are
    # averaged on their own, not with a padding zero.
    full, _, none = _chunk_means(torch.as_tensor(x[:, :, :8]), None, None, 3)
    assert none is None
    np.testing.assert_allclose(
        full[..., 2].numpy(), x[:, :, 6:8].mean(axis=2), rtol=1e-6
    )


def _second_convolution_input_length(estimator, X):
    seen = []
    second = estimator.net_.module_.convolutions[1]
    handle = second.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].shape[-1])
    )
    try:
        estimator.predict(X)
    finally:
        handle.remove()
    return max(seen)  # batches are grouped by length: the longest


@pytest.mark.parametrize(
    ("placement", "conv_stride", "steps"), [("parallel", 3, 4), ("before", 1, 12)]
)
def test_parallel_convolutions_after_the_first_follow_the_stride(
    placement, conv_stride, steps
):
    X = np.random.RandomState(0).normal(size=(6, 12, 2))
    clf = LSTMClassifier(
        **TINY, recurrent_stride=3, conv_filters=(4, 4), conv_placement=placement
    ).fit(X, np.arange(6) % 2)
    assert clf.net_.module_.conv_stride == conv_stride
    assert _second_convolution_input_length(clf, X) == steps


def test_a_network_pickled_before_conv_stride_keeps_every_step():
    X = np.random.RandomState(0).normal(size=(6, 12, 2))
    clf = LSTMClassifier(**TINY, recurrent_stride=3, conv_filters=(4, 4))
    clf.fit(X, np.arange(6) % 2)
    # Unpickled from a version without it, a network has no such attribute.
    del vars(clf.net_.module_)["conv_stride"]
    assert clf.net_.module_.conv_stride == 1
    assert _second_convolution_input_length(clf, X) == 12
    assert np.isfinite(clf.predict_proba(X)).all()


@pytest.mark.parametrize(
    ("lengths", "params", "conv_stride"),
    [
        ((100, 130), {}, 2),  # every sequence at least 100 steps: pairs
        ((99, 130), {}, 1),  # one shorter: every step
        ((1200, 1200), {}, 3),  # the recurrent stride past 500 steps
        ((40, 1200), {}, 3),
        ((100, 130), {"conv_placement": "before"}, 1),
        ((100, 130), {"output_mode": "sequence"}, 1),
        # The parameter overrides the rule either way.
        ((100, 130), {"conv_stride": 1}, 1),
        ((1200, 1200), {"conv_stride": 1}, 1),
        ((40, 60), {"conv_stride": 4}, 4),
        ((1200, 1200), {"conv_stride": 5}, 5),
        ((100, 130), {"conv_stride": 1, "conv_placement": "before"}, 1),
    ],
)
def test_later_convolutions_read_pairs_of_steps_on_long_sequences(
    lengths, params, conv_stride
):
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(lengths[row % 2], 1)) for row in range(6)]
    if params.get("output_mode") == "sequence":
        y = [(x[:, 0] > 0).astype(int) for x in X]
    else:
        y = np.arange(6) % 2
    settings = dict(TINY, max_epochs=1, conv_filters=(4, 4))
    clf = LSTMClassifier(**settings, **params).fit(X, y)
    assert clf.net_.module_.conv_stride == conv_stride
    assert _second_convolution_input_length(clf, X) == -(-max(lengths) // conv_stride)


@pytest.mark.parametrize(
    "params",
    [
        {"conv_placement": "before"},
        {"output_mode": "sequence"},
        {"conv_filters": None},
    ],
)
def test_a_conv_stride_the_convolutions_cannot_take_is_refused(params):
    X = np.random.RandomState(0).normal(size=(6, 12, 2))
    y = np.arange(6) % 2
    if params.get("output_mode") == "sequence":
        y = (X[:, :, 0] > 0).astype(int)
    clf = LSTMClassifier(**TINY, conv_stride=2, **params)
    with pytest.raises(ValueError, match="conv_stride=2 needs convolutions"):
        clf.fit(X, y)
    assert not hasattr(clf, "net_")


def test_warm_start_rebuilds_on_a_new_conv_stride():
    X = np.random.RandomState(0).normal(size=(6, 120, 1))
    y = np.arange(6) % 2
    clf = LSTMClassifier(**TINY, conv_filters=(4, 4), warm_start=True).fit(X, y)
    assert clf.net_.module_.conv_stride == 2
    clf.set_params(conv_stride=2)  # what "auto" chose: it continues
    clf.fit(X, y)
    assert clf.n_iter_ == 4
    clf.set_params(conv_stride=1)
    with pytest.warns(UserWarning, match=r"conv_stride \(2 -> 1\)"):
        clf.fit(X, y)
    assert clf.net_.module_.conv_stride == 1 and clf.n_iter_ == 2


def test_save_and_load_keep_an_explicit_conv_stride(tmp_path):
    X = np.random.RandomState(0).normal(size=(6, 120, 1))
    clf = LSTMRegressor(**TINY, conv_filters=(4, 4), conv_stride=1)
    clf.fit(X, X[:, -1, 0])
    clf.save(tmp_path / "model.sklstm")
    loaded = sklstm.load(tmp_path / "model.sklstm")
    assert loaded.conv_stride == 1 and loaded.net_.module_.conv_stride == 1
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))

"""length_aware: ragged training data gives the network each sequence's
length and a length-free summary of its convolutions."""

import warnings

import numpy as np
import pytest
import torch

import sklstm
from sklstm import LSTMClassifier, LSTMRegressor
from sklstm._network import RecurrentNetwork

from .conftest import make_ragged_sequences

TINY = dict(hidden_size=8, conv_filters=(4,), max_epochs=2, random_state=0)


def _lengths_seen(estimator, X):
    """The standardised log lengths the network's static layer reads for X
    (each once: prediction may fill a batch with copies of its rows)."""
    seen = []
    hook = estimator.net_.module_.static_layer.register_forward_pre_hook(
        lambda module, args: seen.append(args[0][:, -1].detach().clone())
    )
    try:
        estimator.predict(X)
    finally:
        hook.remove()
    return np.unique(torch.cat(seen).numpy())


def test_ragged_training_data_makes_the_network_length_aware():
    X, y = make_ragged_sequences(n_samples=40, min_length=3, max_length=30)
    clf = LSTMClassifier(**TINY).fit(X, y)
    network = clf.net_.module_
    log_lengths = np.log([len(x) for x in X])
    np.testing.assert_allclose(
        network.length_scaling, (log_lengths.mean(), log_lengths.std()), rtol=1e-12
    )
    assert network.conv_max
    # The column is each sequence's own, whatever it is predicted beside.
    new = [np.zeros((n, 2), np.float32) for n in (9, 2, 200)]
    expected = (np.log([2, 9, 200]) - log_lengths.mean()) / log_lengths.std()
    np.testing.assert_allclose(_lengths_seen(clf, new), expected, rtol=1e-5)
    np.testing.assert_allclose(_lengths_seen(clf, new[1:2]), expected[:1], rtol=1e-5)


def test_nearly_equal_lengths_keep_new_lengths_in_bounds():
    # Lengths 40 and 41: their spread of log lengths (0.012) would put a
    # sequence of 400 steps 190 units out. The scale is at least 0.2 and
    # the column is bounded to [-5, 5].
    rng = np.random.RandomState(0)
    X = [rng.normal(size=(40 + i % 2, 2)).astype(np.float32) for i in range(30)]
    y = np.arange(30) % 2
    clf = LSTMClassifier(**TINY).fit(X, y)
    mean, scale = clf.net_.module_.length_scaling
    assert scale == 0.2
    new = [np.zeros((n, 2), np.float32) for n in (41, 400)]
    seen = _lengths_seen(clf, new)
    np.testing.assert_allclose(seen, [(np.log(41) - mean) / 0.2, 5.0], rtol=1e-5)


@pytest.mark.parametrize(
    "params, ragged",
    [
        (dict(length_aware=False), True),
        (dict(output_mode="sequence"), True),
        (dict(), False),
    ],
    ids=["length_aware=False", "per-step outputs", "equal lengths"],
)
def test_lengths_stay_out_of_the_network(params, ragged):
    if ragged:
        X, y = make_ragged_sequences(n_samples=30, min_length=3, max_length=30)
    else:
        X = np.random.RandomState(0).normal(size=(30, 12, 2)).astype(np.float32)
        y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    if params.get("output_mode") == "sequence":
        y = [np.full(len(x), label) for x, label in zip(X, y, strict=True)]
    clf = LSTMClassifier(**TINY, **params).fit(X, y)
    network = clf.net_.module_
    assert network.length_scaling is None
    assert not network.conv_max
    assert network.static_layer is None


def test_a_label_given_by_the_length_alone_is_learned():
    # Every step is drawn alike; only the number of steps tells the classes
    # apart. The log length reaches the output through one small layer.
    rng = np.random.RandomState(0)
    lengths = rng.randint(5, 60, 160)
    X = [rng.normal(size=(n, 1)).astype(np.float32) for n in lengths]
    y = (lengths > 30).astype(int)
    params = dict(hidden_size=8, conv_filters=(8,), max_epochs=30, random_state=0)
    clf = LSTMClassifier(**params).fit(X[:120], y[:120])
    assert clf.score(X[120:], y[120:]) >= 0.9


def test_the_maximum_finds_a_pattern_at_any_length():
    # One spike in a long or a short sequence: the mean of the convolution's
    # output over the valid steps shrinks with the length, the maximum not.
    network = RecurrentNetwork(
        n_inputs=1,
        n_outputs=2,
        hidden_size=4,
        conv_filters=(3,),
        conv_kernel_sizes=(1,),
        length_scaling=(0.0, 1.0),
        conv_max=True,
        seed=0,
    ).eval()
    summaries = []
    hook = network.head.register_forward_pre_hook(
        lambda module, args: summaries.append(args[0].detach().clone())
    )
    padded = torch.zeros(2, 40, 1)
    padded[:, 2, 0] = 5.0
    with torch.no_grad():
        network(padded, torch.tensor([40, 4]))
    hook.remove()
    conv = summaries[0][:, 4:10]  # after the 4 recurrent units
    mean, peak = conv[:, :3], conv[:, 3:]
    torch.testing.assert_close(peak[0], peak[1])
    assert (mean[0] <= mean[1]).all() and (mean[0] < mean[1]).any()


def test_equal_length_and_ragged_paths_agree_with_lengths():
    network = RecurrentNetwork(
        n_inputs=3,
        n_outputs=2,
        hidden_size=8,
        conv_filters=(4, 4),
        conv_kernel_sizes=(3, 3),
        length_scaling=(1.5, 0.4),
        conv_max=True,
        seed=0,
    ).eval()
    padded = torch.randn(4, 6, 3)
    with torch.no_grad():
        equal = network(padded)
        mixed = network(
            torch.cat([padded, torch.zeros(1, 6, 3)]),
            torch.tensor([6, 6, 6, 6, 2]),
        )
    torch.testing.assert_close(mixed[:4], equal, atol=1e-6, rtol=0)


def test_lengths_need_the_last_output():
    with pytest.raises(ValueError, match="output_mode='last'"):
        RecurrentNetwork(
            n_inputs=1, n_outputs=1, output_mode="sequence", length_scaling=(0, 1)
        )


def test_turning_length_aware_off_retrains_on_a_warm_start():
    X, y = make_ragged_sequences(n_samples=30, min_length=3, max_length=30)
    clf = LSTMClassifier(**TINY, warm_start=True).fit(X, y)
    assert clf.net_.module_.length_scaling is not None
    clf.set_params(length_aware=False)
    with pytest.warns(UserWarning, match="length_aware"):
        clf.fit(X, y)
    assert clf.net_.module_.length_scaling is None


def test_length_aware_regressor_saves_and_loads(tmp_path):
    X, _ = make_ragged_sequences(n_samples=30, min_length=3, max_length=30)
    y = np.array([float(len(x)) for x in X])
    reg = LSTMRegressor(**TINY).fit(X, y)
    assert reg.net_.module_.length_scaling is not None
    reg.save(tmp_path / "model.sklstm")
    loaded = sklstm.load(tmp_path / "model.sklstm")
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.net_.module_.length_scaling == reg.net_.module_.length_scaling


@pytest.mark.parametrize("ragged, expected", [(False, "mean"), (True, "last")])
def test_auto_pooling_follows_the_training_lengths(ragged, expected, tmp_path):
    if ragged:
        X, y = make_ragged_sequences(n_samples=30, min_length=3, max_length=30)
    else:
        X = np.random.RandomState(0).normal(size=(30, 12, 2)).astype(np.float32)
        y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    clf = LSTMClassifier(**TINY, warm_start=True).fit(X, y)
    assert clf.pooling == "auto"
    assert clf.net_.module_.pooling == expected
    # The resolved pooling is the network's: a warm start keeps training it,
    # and a model file with it loads under pooling="auto".
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    assert not [w for w in caught if "pooling" in str(w.message)]
    clf.save(tmp_path / "model.sklstm")
    loaded = sklstm.load(tmp_path / "model.sklstm")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))

"""The torch module: padding never leaks into an output; its randomness is its own."""

import pickle

import numpy as np
import pytest
import torch

from sklstm import LSTMClassifier, LSTMRegressor
from sklstm._network import (
    MaskedBatchNorm1d,
    RecurrentNetwork,
    _blank,
    _initialise_weights,
)

from .conftest import make_ragged_sequences

ARCHITECTURES = [
    dict(),
    dict(bidirectional=True),
    dict(num_layers=2),
    dict(num_layers=2, bidirectional=True, cell="gru"),
    dict(cell="gru"),
    dict(pooling="mean", bidirectional=True),
    dict(pooling="max"),
    dict(pooling="attention", bidirectional=True),
    dict(conv_filters=(8, 8), conv_kernel_size=3, bidirectional=True),
]


@pytest.mark.parametrize("architecture", ARCHITECTURES, ids=repr)
def test_padding_never_changes_a_prediction(architecture):
    X, y = make_ragged_sequences(n_samples=40, min_length=3, max_length=12)
    clf = LSTMClassifier(
        hidden_size=16, max_epochs=2, random_state=0, **architecture
    ).fit(X, y)
    rng = np.random.RandomState(1)
    short = rng.normal(size=(4, 2)).astype(np.float32)
    much_longer = [rng.normal(size=(n, 2)).astype(np.float32) for n in (60, 150)]
    alone = clf.predict_proba([short])
    beside_longer = clf.predict_proba([short] + much_longer)
    np.testing.assert_allclose(beside_longer[:1], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("architecture", ARCHITECTURES[:5], ids=repr)
def test_padding_never_changes_per_step_outputs(architecture):
    X, _ = make_ragged_sequences(n_samples=30, min_length=3, max_length=10)
    y = [x[:, 0] * 2 for x in X]
    reg = LSTMRegressor(
        hidden_size=16,
        max_epochs=2,
        random_state=0,
        output_mode="sequence",
        **architecture,
    ).fit(X, y)
    short = np.random.RandomState(2).normal(size=(5, 2)).astype(np.float32)
    long = np.random.RandomState(3).normal(size=(80, 2)).astype(np.float32)
    alone = reg.predict([short])[0]
    beside_longer = reg.predict([short, long])[0]
    assert alone.shape == (5,)
    np.testing.assert_allclose(beside_longer, alone, atol=1e-5, rtol=0)


def test_one_very_long_sequence_among_short_ones():
    # Predicted together, each sequence gets what it gets alone, in input
    # order, and the network runs no more steps than predicting the short
    # ones and the long one separately.
    X, y = make_ragged_sequences(n_samples=40, min_length=3, max_length=12)
    clf = LSTMClassifier(hidden_size=8, max_epochs=2, random_state=0).fit(X, y)
    X_steps = [x[:, 0] > 0 for x in X]
    per_step = LSTMClassifier(
        hidden_size=8, max_epochs=2, random_state=0, output_mode="sequence"
    ).fit(X, X_steps)
    rng = np.random.RandomState(1)
    short = [rng.normal(size=(n, 2)).astype(np.float32) for n in rng.randint(2, 9, 60)]
    long = rng.normal(size=(4000, 2)).astype(np.float32)
    mixed = short[:25] + [long] + short[25:]

    steps_run = []

    def count_steps(module, args, kwargs):
        steps_run.append(kwargs["padded"].shape[0] * kwargs["padded"].shape[1])

    hook = clf.net_.module_.register_forward_pre_hook(count_steps, with_kwargs=True)
    together = clf.predict_proba(mixed)
    n_together = sum(steps_run)
    steps_run.clear()
    clf.predict_proba(short)
    clf.predict_proba([long])
    n_separately = sum(steps_run)
    hook.remove()
    assert n_together <= n_separately

    alone = np.vstack([clf.predict_proba([x]) for x in mixed])
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    per_step_together = per_step.predict_proba(mixed)
    for x, predicted in zip(mixed, per_step_together, strict=True):
        assert predicted.shape == (len(x), 2)
        np.testing.assert_allclose(
            predicted, per_step.predict_proba([x])[0], atol=1e-5, rtol=0
        )


def test_equal_length_and_ragged_paths_agree():
    torch.manual_seed(0)
    network = RecurrentNetwork(
        n_inputs=3, n_outputs=2, hidden_size=8, bidirectional=True
    ).eval()
    padded = torch.randn(4, 6, 3)
    with torch.no_grad():
        equal = network(padded, torch.full((4,), 6))
        # One extra short row forces the ragged path for the same four rows.
        mixed = network(
            torch.cat([padded, torch.zeros(1, 6, 3)]),
            torch.tensor([6, 6, 6, 6, 2]),
        )
    torch.testing.assert_close(mixed[:4], equal, atol=1e-6, rtol=0)


def test_forget_gate_bias_is_initialised():
    network = RecurrentNetwork(n_inputs=2, n_outputs=2, hidden_size=5, forget_bias=2.5)
    bias_ih = network.rnn.bias_ih_l0.detach()
    bias_hh = network.rnn.bias_hh_l0.detach()
    forget = slice(5, 10)
    assert torch.all(bias_ih[forget] + bias_hh[forget] == 2.5)
    gru = RecurrentNetwork(
        n_inputs=2, n_outputs=2, hidden_size=5, cell="gru", forget_bias=-1.0
    )
    assert torch.all(gru.rnn.bias_ih_l0.detach()[forget] == -1.0)


def test_standardisation_buffers_are_applied():
    network = RecurrentNetwork(
        n_inputs=1,
        n_outputs=1,
        feature_mean=torch.tensor([10.0]),
        feature_scale=torch.tensor([2.0]),
    ).eval()
    reference = RecurrentNetwork(n_inputs=1, n_outputs=1).eval()
    reference.load_state_dict(
        {
            **network.state_dict(),
            "feature_mean": torch.zeros(1),
            "feature_scale": torch.ones(1),
        }
    )
    x = torch.randn(2, 4, 1)
    with torch.no_grad():
        torch.testing.assert_close(
            network(x * 2 + 10, torch.full((2,), 4)),
            reference(x, torch.full((2,), 4)),
        )


def test_bidirectional_reads_each_sequence_backwards_from_its_own_end():
    torch.manual_seed(0)
    network = RecurrentNetwork(
        n_inputs=2,
        n_outputs=1,
        hidden_size=4,
        bidirectional=True,
        output_mode="sequence",
    ).eval()
    sequence = torch.randn(1, 5, 2)
    padded = torch.cat([sequence, torch.randn(1, 3, 2)], dim=1)
    with torch.no_grad():
        alone = network(sequence, torch.tensor([5]))
        with_garbage_after = network(padded, torch.tensor([5]))
        # Reversing the sequence swaps the roles of the two directions.
        backward_half = network.layers[0][1](sequence.flip(1))[0].flip(1)
        full = torch.cat([network.layers[0][0](sequence)[0], backward_half], -1)
    torch.testing.assert_close(with_garbage_after[:, :5], alone)
    torch.testing.assert_close(network.head(full), alone)


def test_forget_bias_reaches_every_direction_and_layer():
    network = RecurrentNetwork(
        n_inputs=2,
        n_outputs=2,
        hidden_size=3,
        bidirectional=True,
        num_layers=2,
        forget_bias=4.0,
    )
    for layer in network.layers:
        for direction in layer:
            assert torch.all(direction.bias_ih_l0.detach()[3:6] == 4.0)


def _network(**options):
    torch.manual_seed(0)
    settings = dict(
        n_inputs=3,
        n_outputs=2,
        hidden_size=8,
        conv_filters=(8, 16),
        conv_kernel_sizes=(5, 3),
    )
    settings.update(options)
    return RecurrentNetwork(**settings)


@pytest.mark.parametrize("sequence_norm", [None, "append"])
@pytest.mark.parametrize("placement", ["parallel", "before"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("output_mode", ["last", "sequence"])
def test_padding_never_changes_an_output(
    placement, pooling, output_mode, sequence_norm
):
    network = _network(
        conv_placement=placement,
        sequence_norm=sequence_norm,
        pooling=pooling,
        output_mode=output_mode,
        bidirectional=True,
    )
    # Train mode first, on a ragged batch, so the running statistics move.
    rng = np.random.RandomState(0)
    padded = torch.from_numpy(rng.normal(size=(4, 12, 3)).astype(np.float32))
    lengths = torch.tensor([12, 7, 3, 9])
    network.train()
    network(padded, lengths).sum().backward()
    network.eval()
    with torch.no_grad():
        batch = network(padded, lengths)
        for row, length in enumerate(lengths.tolist()):
            alone = network(padded[row : row + 1, :length], lengths[row : row + 1])
            if output_mode == "sequence":
                np.testing.assert_allclose(
                    batch[row, :length], alone[0], rtol=1e-5, atol=1e-5
                )
            else:
                np.testing.assert_allclose(batch[row], alone[0], rtol=1e-5, atol=1e-5)


def test_masked_batch_norm_ignores_padding():
    rng = np.random.RandomState(0)
    values = torch.from_numpy(rng.normal(size=(3, 4, 10)).astype(np.float32))
    lengths = torch.tensor([10, 6, 2])
    mask = torch.arange(10)[None, :] < lengths[:, None]
    norm = MaskedBatchNorm1d(4)
    garbage = values.clone()
    garbage[~mask[:, None, :].expand_as(garbage)] = 1e3
    normed = norm(garbage, mask)
    valid = normed.transpose(1, 2)[mask]
    np.testing.assert_allclose(valid.mean(0).detach(), 0, atol=1e-5)
    np.testing.assert_allclose(valid.std(0, unbiased=False).detach(), 1, atol=1e-3)


def test_masked_batch_norm_accepts_one_value_per_channel():
    norm = MaskedBatchNorm1d(2)
    output = norm(torch.ones(1, 2, 1))
    assert torch.isfinite(output).all()


# ---------------------------------------------------------------------------
# Randomness: initial weights and dropout masks come from the module's own
# generators, with the distributions torch's modules would use.
@pytest.mark.parametrize(
    "kind, args",
    [
        (torch.nn.LSTM, (3, 4, 2)),
        (torch.nn.GRU, (3, 4, 2)),
        (torch.nn.Linear, (5, 3)),
        (torch.nn.Conv1d, (3, 6, 5)),
        (torch.nn.Embedding, (7, 3)),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_initial_weights_are_torch_defaults_drawn_from_a_generator(kind, args):
    # torch's global generator and a fresh torch.Generator, given the same
    # seed, draw the same numbers: so the same values mean the same
    # distributions, drawn in the same order.
    torch.manual_seed(7)
    default = kind(*args)
    blank = _blank(kind, *args)
    _initialise_weights(blank, torch.Generator().manual_seed(7), forget_bias=1.0)
    for (name, expected), got in zip(
        default.named_parameters(), blank.parameters(), strict=True
    ):
        if kind is torch.nn.Embedding:
            # Code 0 (unknown categories) starts at zero on purpose.
            expected, got = expected[1:], got[1:]
        elif name.startswith("bias") and kind in (torch.nn.LSTM, torch.nn.GRU):
            # The forget (update) gate block is set on purpose.
            expected, got = expected[:4], got[:4]
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_by_layer_computes_what_the_stacked_layers_compute(cell):
    network = RecurrentNetwork(
        n_inputs=3, n_outputs=2, hidden_size=6, num_layers=3, cell=cell, seed=0
    )
    x = torch.randn(4, 7, 3)
    with torch.no_grad():
        # dropout=0: nothing between the layers.
        torch.testing.assert_close(
            network._layer_by_layer(x), network.rnn(x)[0], rtol=0, atol=1e-6
        )


@pytest.mark.parametrize("architecture", [dict(), dict(bidirectional=True)])
def test_dropout_masks_come_from_the_seed_not_the_global_generator(architecture):
    def training_outputs(seed, global_seed):
        torch.manual_seed(global_seed)
        network = RecurrentNetwork(
            n_inputs=3,
            n_outputs=2,
            hidden_size=8,
            num_layers=2,
            dropout=0.5,
            seed=seed,
            **architecture,
        ).train()
        before = torch.get_rng_state()
        outputs = network(torch.ones(4, 6, 3), torch.full((4,), 6))
        outputs.sum().backward()
        assert torch.equal(torch.get_rng_state(), before)
        # Gradients reach both layers through the masks.
        assert all(p.grad is not None for p in network.parameters())
        return outputs.detach(), network

    first, network = training_outputs(seed=3, global_seed=0)
    again, _ = training_outputs(seed=3, global_seed=1)
    other, _ = training_outputs(seed=4, global_seed=0)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert not torch.equal(other, first)
    # Dropout is on: the same batch twice gets new masks.
    assert not torch.equal(network(torch.ones(4, 6, 3), torch.full((4,), 6)), first)
    # Evaluation has no dropout, so no randomness at all.
    network.eval()
    with torch.no_grad():
        evaluated = network(torch.ones(4, 6, 3), torch.full((4,), 6))
        torch.testing.assert_close(
            network(torch.ones(4, 6, 3), torch.full((4,), 6)), evaluated
        )


def test_pickles_and_state_dicts_carry_no_generator():
    network = RecurrentNetwork(
        n_inputs=2, n_outputs=1, hidden_size=4, num_layers=2, dropout=0.5, seed=0
    ).train()
    network(torch.ones(2, 3, 2), torch.full((2,), 3))
    assert network.dropout._generator is not None
    assert network._one_layer is not None
    copied = pickle.loads(pickle.dumps(network))
    assert copied.dropout._generator is None and copied._one_layer is None
    assert network.state_dict().keys() == copied.state_dict().keys()
    for key, value in network.state_dict().items():
        assert torch.equal(copied.state_dict()[key], value)
    # The copy draws afresh from the same seed, on the device it runs on.
    copied(torch.ones(2, 3, 2), torch.full((2,), 3))
    assert copied.dropout._generator.device == torch.device("cpu")

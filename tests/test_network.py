"""The torch module: padding never changes an output, whatever the layers."""

import numpy as np
import pytest
import torch

from sklstm._network import MaskedBatchNorm1d, RecurrentNetwork


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

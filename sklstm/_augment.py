"""Training-time augmentation of sequences: random smooth time warps.

A classifier trained on a few dozen sequences learns the exact timing of
its training examples; the same pattern a little faster or slower in a
test sequence can then fall on the wrong side of the boundary. Re-reading
every training batch at a random, smoothly varying speed (window and time
warping, Le Guennec et al. 2016; Um et al. 2017; compared for recurrent
and convolutional networks by Iwana and Uchida 2021) shows the network
each example at many timings. :class:`~sklstm._trainer.SequenceNet` warps
its training batches with :func:`time_warp`; validation and prediction
read the sequences as they are.
"""

from __future__ import annotations

import torch

# Log-speeds are drawn at this many points evenly spread over each sequence
# and interpolated in between: a handful of stretches and compressions, not
# a jitter of every step.
_KNOTS = 4


def time_warp(inputs, amount, generator):
    """A batch's network inputs with every sequence re-read at a random speed.

    Parameters
    ----------
    inputs : dict
        The batch's network inputs: ``padded`` (batch, max_timesteps,
        n_inputs), ``lengths`` (int64, or None when every sequence fills
        all steps) and, when there are categorical step features, ``codes``
        (batch, max_timesteps, n_categorical); other entries (static
        features, weights) pass through.
    amount : float
        Standard deviation of the log-speed at each knot: 0.1 reads parts of
        a sequence about 10% faster or slower.
    generator : torch.Generator
        Source of the random speeds, on the device of ``padded``.

    Returns
    -------
    dict
        ``inputs`` with ``padded`` and ``codes`` warped. Each sequence keeps
        its length, first and last step; step ``t`` is read at a position
        between its original steps, interpolated linearly for numeric
        features (from the nearer step where a neighbour is missing, NaN)
        and from the nearer step for codes. Padding is left as it is, and a
        sequence's warp depends only on its length and its draws, not on the
        longest sequence of its batch.
    """
    padded = inputs["padded"]
    batch, n_timesteps, _ = padded.shape
    device = padded.device
    steps = torch.arange(n_timesteps, device=device)
    lengths = inputs.get("lengths")
    if lengths is None:
        lengths = torch.full((batch,), n_timesteps, device=device)
    else:
        lengths = lengths.to(device)
    last = (lengths - 1).clamp(min=0)[:, None]
    valid = steps[None, :] < lengths[:, None]

    log_speed = amount * torch.randn(batch, _KNOTS, generator=generator, device=device)
    # Where each step lies between the knots, over its own sequence's length.
    relative = (steps[None, :] / last.clamp(min=1)).clamp(max=1.0)
    knot = relative * (_KNOTS - 1)
    below = knot.floor().long().clamp(max=_KNOTS - 2)
    share = knot - below
    speed = torch.exp(
        log_speed.gather(1, below) * (1 - share)
        + log_speed.gather(1, below + 1) * share
    )
    # Positions: the running sum of the speeds from the first step,
    # rescaled so that the last valid step maps onto itself.
    speed = torch.where(valid, speed, torch.zeros_like(speed))
    travelled = speed.cumsum(1) - speed[:, :1]
    total = travelled.gather(1, last).clamp(min=1e-12)
    position = travelled / total * last
    position = torch.where(valid, position, steps[None, :].to(position.dtype))

    before = position.floor().long().clamp(min=0)
    before = torch.minimum(before, torch.where(valid, last, steps[None, :]))
    after = torch.where(valid, torch.minimum(before + 1, last), before)
    weight = (position - before).to(padded.dtype)[..., None]

    def read(values, rows):
        return values.gather(1, rows[..., None].expand(-1, -1, values.shape[-1]))

    first, second = read(padded, before), read(padded, after)
    warped = first * (1 - weight) + second * weight
    nearer = torch.where(weight < 0.5, first, second)
    warped = torch.where(torch.isnan(warped), nearer, warped)
    result = {**inputs, "padded": warped}
    codes = inputs.get("codes")
    if codes is not None:
        nearest = torch.where(weight[..., 0] < 0.5, before, after)
        result["codes"] = read(codes, nearest)
    return result


__all__ = ["time_warp"]

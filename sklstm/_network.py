"""The torch module behind both estimators.

One module covers every architecture the estimators expose: an optional
convolutional block (batch-normalised, LSTM-FCN style) that either runs in
parallel with the recurrent layers or feeds them, a stacked (bi)directional
LSTM or GRU, and either a pooled sequence-to-label head or a per-step
sequence-to-sequence head. It
takes the padded batch and the true lengths, and no position past a
sequence's end ever influences an output.

Every random draw the module makes (initial weights, dropout masks) comes
from generators of its own, seeded by ``seed``, never from torch's global
generator: estimators fitted at once in threads then give the models they
give one after the other.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from ._device import new_generator

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
# The weights of one layer of a (unidirectional) torch recurrent module.
_LAYER_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
# What the estimators' pooling="auto" builds, for ragged and for
# equal-length training data; the model file checks a network against it.
AUTO_POOLING = ("last", "mean")
# The half span differences="auto" gives the series it applies to.
AUTO_DIFFERENCES = 3


class RecurrentNetwork(nn.Module):
    """Recurrent network over padded sequences.

    Parameters
    ----------
    n_inputs : int
        Features per time step.
    n_outputs : int
        Classes (logits) or regression targets per output.
    hidden_size, num_layers, bidirectional, cell, dropout : see the estimators.
    output_mode : {"last", "sequence"}
        One output per sequence, or one per time step.
    pooling : {"last", "mean", "max", "attention"}
        How "last" mode summarises the recurrent states over time.
    conv_filters : tuple of int
        Channels of each convolution; empty for none.
    conv_kernel_sizes : tuple of int
        Odd kernel width of each convolution.
    conv_placement : {"parallel", "before"}
        "parallel": the convolutions read the input beside the recurrent
        layers and their output, averaged over valid steps, joins the pooled
        recurrent state (LSTM-FCN). "before": they feed the recurrent layers.
    recurrent_stride : int
        The recurrent layers read this many consecutive steps at once, side
        by side as one wider step (the last one zero-padded), and so step
        through that many times fewer steps. 1 in "sequence" mode.
    conv_stride : int
        The convolutions after the first read the means of this many
        consecutive steps of the first one's output (each sequence's last
        chunk averaged over its valid steps only): they reach this many
        times further along the series at about this many times less cost,
        while the first convolution reads every step. 1: every layer reads
        every step. Only with ``conv_placement="parallel"`` and ``"last"``
        mode.
    forget_bias : float
        Initial bias of the LSTM forget gate (GRU: update gate).
    differences : int
        Also feed each numeric feature's centred change over
        ``2 * differences`` steps, ``(x[t + d] - x[t - d]) / (2 d)`` on the
        standardised values, with each sequence's first and last steps
        repeated past its ends; divided by ``difference_scale``. 0: none.
    difference_scale : tensor of shape (n_inputs,) or None
        Typical size (root mean square) of each change on the training
        data, so that the changes enter at about unit scale. With
        ``differences`` only.
    sequence_norm : {"append", "replace"} or None
        Also feed (or feed instead) each sequence z-normalised over its own
        valid steps, per feature (the changes of ``differences`` included).
    feature_mean, feature_scale : tensor of shape (n_inputs,)
        Per-feature standardisation learned in ``fit``.
    missing_indicators : tuple of int
        Numeric features that had missing values (NaN) in ``fit``: each gets
        a 0/1 channel saying where it is missing. Missing values themselves
        are imputed by the feature's mean.
    categorical_sizes, embedding_sizes : tuple of int
        Codes of each categorical step feature (see sklstm._tabular) and
        the width of its learned embedding.
    static_numeric : int
        Numeric static features, standardised by ``static_mean`` and
        ``static_scale``.
    static_sizes, static_embedding_sizes : tuple of int
        Codes and embedding width of each categorical static feature.
        Static features pass through a ReLU layer of ``hidden_size`` units
        and join the pooled state (``"last"``) or every step
        (``"sequence"``) before the output layer.
    length_scaling : tuple of two floats or None
        Mean and scale of the training sequences' log lengths: each
        sequence's standardised log length, bounded to [-5, 5], then joins
        the static features
        (a static layer is built for it). Only with ``output_mode="last"``:
        per step, the whole sequence's length would tell each step about
        the steps after it.
    conv_max : bool
        The convolutions' summary is their maximum over valid steps beside
        their mean (``"parallel"`` placement only).
    n_scale_outputs : int
        Outputs after the ``n_outputs`` ones, from a linear layer of their
        own beside the output layer: the log-scales of
        ``LSTMRegressor(interval_width="adaptive")``. 0 for none. With
        them, no dropout acts before the output layers.
    seed : int or None
        Seeds the initial weights and the dropout masks. None draws one
        from torch's global generator, as torch's own modules would.
    """

    # Class defaults, so that networks pickled before these existed still
    # load and predict as they did.
    differences = 0
    conv_stride = 1

    def __init__(
        self,
        *,
        n_inputs,
        n_outputs,
        hidden_size=64,
        num_layers=1,
        bidirectional=False,
        cell="lstm",
        dropout=0.0,
        output_mode="last",
        pooling="last",
        conv_filters=(),
        conv_kernel_sizes=(),
        conv_placement="parallel",
        recurrent_stride=1,
        conv_stride=1,
        forget_bias=1.0,
        differences=0,
        difference_scale=None,
        sequence_norm=None,
        feature_mean=None,
        feature_scale=None,
        missing_indicators=(),
        categorical_sizes=(),
        embedding_sizes=(),
        static_numeric=0,
        static_mean=None,
        static_scale=None,
        static_sizes=(),
        static_embedding_sizes=(),
        length_scaling=None,
        conv_max=False,
        n_scale_outputs=0,
        seed=None,
    ):
        super().__init__()
        if seed is None:
            seed = int(torch.empty((), dtype=torch.int64).random_())
        self.seed = seed
        self.output_mode = output_mode
        self.pooling = pooling
        self.bidirectional = bidirectional
        mean = torch.zeros(n_inputs) if feature_mean is None else feature_mean
        scale = torch.ones(n_inputs) if feature_scale is None else feature_scale
        self.register_buffer("feature_mean", torch.as_tensor(mean).float())
        self.register_buffer("feature_scale", torch.as_tensor(scale).float())
        self.standardize = feature_mean is not None or feature_scale is not None
        self.differences = int(differences)
        if self.differences:
            # Registered only when used, as the static statistics below.
            scale = (
                torch.ones(n_inputs) if difference_scale is None else difference_scale
            )
            self.register_buffer(
                "difference_scale", torch.as_tensor(scale).float().clone()
            )
            n_inputs = 2 * n_inputs
        self.sequence_norm = sequence_norm
        if sequence_norm == "append":
            n_inputs = 2 * n_inputs
        self.missing_indicators = tuple(missing_indicators)
        self.embeddings = _embeddings(categorical_sizes, embedding_sizes)
        n_inputs += len(self.missing_indicators) + sum(embedding_sizes)
        self.static_numeric = static_numeric
        if static_numeric:
            # Registered only when used, so that networks without static
            # features keep the tensors (and model files) they always had.
            mean = torch.zeros(static_numeric) if static_mean is None else static_mean
            scale = torch.ones(static_numeric) if static_scale is None else static_scale
            self.register_buffer("static_mean", torch.as_tensor(mean).float())
            self.register_buffer("static_scale", torch.as_tensor(scale).float())
        self.static_embeddings = _embeddings(static_sizes, static_embedding_sizes)
        if length_scaling is not None and output_mode != "last":
            raise ValueError("length_scaling needs output_mode='last'")
        self.length_scaling = (
            None if length_scaling is None else tuple(map(float, length_scaling))
        )
        static_width = (
            static_numeric + sum(static_embedding_sizes) + (length_scaling is not None)
        )
        # Static features pass through a layer of their own before they join
        # the pooled state: joined to the output layer directly, each would
        # reach the logits through one weight, which the optimiser moves by
        # about lr a step, far slower than the recurrent path learns.
        self.static_layer = (
            nn.Sequential(_blank(nn.Linear, static_width, hidden_size), nn.ReLU())
            if static_width
            else None
        )
        static_width = hidden_size if static_width else 0

        self.conv_placement = conv_placement
        convolutions, norms = [], []
        channels = n_inputs
        for filters, width in zip(conv_filters, conv_kernel_sizes, strict=True):
            convolutions.append(
                _blank(
                    nn.Conv1d, channels, filters, width, padding=width // 2, bias=False
                )
            )
            norms.append(MaskedBatchNorm1d(filters))
            channels = filters
        self.convolutions = nn.ModuleList(convolutions)
        self.conv_norms = nn.ModuleList(norms)
        parallel = bool(conv_filters) and conv_placement == "parallel"
        self.conv_max = bool(conv_max) and parallel
        conv_outputs = (2 if self.conv_max else 1) * channels if parallel else 0

        if conv_stride > 1 and not chunked_convolutions(
            conv_filters, conv_placement, output_mode
        ):
            raise ValueError(
                "conv_stride > 1 needs parallel convolutions and one output "
                "per sequence."
            )
        self.conv_stride = conv_stride

        recurrent = _CELLS[cell]
        self.recurrent_stride = recurrent_stride
        first_input = (n_inputs if parallel else channels) * recurrent_stride
        if bidirectional:
            # One unidirectional module per direction and layer: the backward
            # one reads each sequence reversed within its own length, so it
            # starts on real data, never on padding (see _bidirectional).
            self.rnn = None
            self.layers = nn.ModuleList()
            for layer in range(num_layers):
                size = first_input if layer == 0 else 2 * hidden_size
                self.layers.append(
                    nn.ModuleList(
                        [
                            _blank(recurrent, size, hidden_size, batch_first=True)
                            for _ in range(2)
                        ]
                    )
                )
        else:
            # No dropout= here: torch would draw its masks from the global
            # generator. Training with dropout runs the layers one at a time
            # instead, with masks of our own between them (_layer_by_layer).
            self.rnn = _blank(
                recurrent,
                input_size=first_input,
                hidden_size=hidden_size,
                num_layers=num_layers,
                batch_first=True,
            )
        # One-layer stand-ins that run the layers of self.rnn one by one;
        # built on first use (see _layer_by_layer).
        self._one_layer = None
        state_size = hidden_size * (2 if bidirectional else 1)
        self.attention = (
            _blank(nn.Linear, state_size, 1) if pooling == "attention" else None
        )
        # One dropout for every place it applies (between recurrent layers,
        # before the output layer): one generator, one stream of masks.
        self.dropout = GeneratorDropout(dropout, seed)
        self.head = _blank(
            nn.Linear, state_size + conv_outputs + static_width, n_outputs
        )
        self.scale_head = (
            _blank(nn.Linear, state_size + conv_outputs + static_width, n_scale_outputs)
            if n_scale_outputs
            else None
        )
        if torch.get_default_device().type != "meta":
            _initialise_weights(self, new_generator(seed, "weights"), forget_bias)

    def __getstate__(self):
        state = super().__getstate__()
        # The one-layer stand-ins are rebuilt on demand; after a call their
        # flat-weight lists still refer to this module's weights, which a
        # pickle would otherwise store twice.
        state["_one_layer"] = None
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        # Unpickled recurrent weights are separate tensors. cuDNN wants each
        # layer's weights in one block and would otherwise copy them together
        # on every call; on the CPU this does nothing.
        for module in self.modules():
            if isinstance(module, nn.RNNBase):
                module.flatten_parameters()

    def forward(self, padded, lengths=None, codes=None, static=None, static_codes=None):
        """Outputs for a batch.

        Parameters
        ----------
        padded : tensor of shape (batch, max_timesteps, n_inputs)
            Numeric step features; NaN marks a missing value.
        lengths : int64 tensor of shape (batch,), on the CPU, or None
            None: every sequence fills all ``max_timesteps`` steps. The ONNX
            export takes this path, as a traced graph cannot branch on data.
        codes : int64 tensor of shape (batch, max_timesteps, n_categorical)
            Categorical step features as codes, when there are any.
        static : tensor of shape (batch, static_numeric)
        static_codes : int64 tensor of shape (batch, n_static_categorical)

        Returns
        -------
        tensor of shape (batch, n_outputs) or (batch, max_timesteps, n_outputs)
        """
        n_timesteps = padded.shape[1]
        # Lengths live on the CPU, so this check costs no device sync.
        equal_lengths = lengths is None or bool(lengths.min() == n_timesteps)
        mask = None
        x = padded
        if self.standardize:
            x = (x - self.feature_mean) / self.feature_scale
        missing = None
        if self.missing_indicators:
            missing = torch.isnan(x[..., list(self.missing_indicators)]).to(x.dtype)
        # A missing value is the feature's mean: zero once standardised.
        x = torch.nan_to_num(x, nan=0.0)
        if not equal_lengths:
            steps = torch.arange(n_timesteps, device=padded.device)
            mask = steps[None, :] < lengths.to(padded.device)[:, None]
            # Zero the padding so the convolutions see what they would see
            # at the end of a lone sequence: their own zero padding.
            x = x * mask[..., None].to(x.dtype)
        if self.differences:
            changes = _centred_changes(x, lengths, mask, self.differences)
            x = torch.cat([x, changes / self.difference_scale], dim=-1)
        if self.sequence_norm is not None:
            normalised = _normalise_each(x, lengths, mask)
            if self.sequence_norm == "replace":
                x = normalised
            else:
                x = torch.cat([x, normalised], dim=-1)
        extra = [] if missing is None else [missing]
        for position, embedding in enumerate(self.embeddings):
            extra.append(embedding(codes[..., position]).to(x.dtype))
        if extra:
            extra = torch.cat(extra, dim=-1)
            if mask is not None:
                extra = extra * mask[..., None].to(x.dtype)
            x = torch.cat([x, extra], dim=-1)
        conv_states = None
        if self.convolutions:
            conv_states, conv_lengths, conv_mask = self._convolve(x, lengths, mask)
            if self.conv_placement == "before":
                x, conv_states = conv_states, None

        # The recurrent layers' own view of the batch; the convolutions'
        # summary below keeps the lengths and mask of their own last layer.
        steps_lengths, steps_mask = lengths, mask
        if self.recurrent_stride > 1:
            x, steps_lengths, steps_mask = _side_by_side(
                x, lengths, mask, self.recurrent_stride
            )
        if self.rnn is not None:
            # Forward recurrence: steps past a sequence's end cannot reach
            # its valid outputs, so the padded batch runs as is, on the fast
            # fused kernels (packing would be several times slower on CPU).
            if self.training and self.dropout.p and self.rnn.num_layers > 1:
                states = self._layer_by_layer(x)
            else:
                states = _recur(self.rnn, x)
        else:
            states = self._bidirectional(x, steps_lengths, equal_lengths)

        sequence_features = self._static_features(
            static, static_codes, x.dtype, self._log_lengths(padded, lengths)
        )
        if self.output_mode == "sequence":
            if conv_states is not None:
                states = torch.cat([states, conv_states], dim=-1)
            if sequence_features is not None:
                per_step = sequence_features[:, None, :].expand(-1, states.shape[1], -1)
                states = torch.cat([states, per_step], dim=-1)
            return self._output(states)
        features = self._pool(states, steps_lengths, steps_mask)
        if conv_states is not None:
            conv_summary = _masked_mean(conv_states, conv_lengths, conv_mask)
            if self.conv_max:
                # A mean over the valid steps dilutes a short pattern by the
                # sequence's length; the maximum finds it at any length.
                peaks = conv_states
                if conv_mask is not None:
                    # After a ReLU every value is >= 0: padding at -1 never wins.
                    peaks = conv_states.masked_fill(~conv_mask[..., None], -1.0)
                conv_summary = torch.cat([conv_summary, peaks.amax(dim=1)], dim=-1)
            features = torch.cat([features, conv_summary], dim=-1)
        if sequence_features is not None:
            features = torch.cat([features, sequence_features], dim=-1)
        return self._output(features)

    def _output(self, features):
        """The output layer(s) on the final features."""
        if self.scale_head is None:
            return self.head(self._drop(features))
        # The scales learn the size of the training errors. Dropout's masks
        # would add errors of their own, which predictions in evaluation do
        # not make, and blur which inputs are noisy: where the targets are
        # predictable the scales then learned several times the errors.
        return torch.cat([self.head(features), self.scale_head(features)], dim=-1)

    def _log_lengths(self, padded, lengths):
        """Each sequence's standardised log length, as a (batch, 1) column;
        None without ``length_scaling``."""
        if self.length_scaling is None:
            return None
        if lengths is None:
            # Every row fills the batch. A sum rather than the shape as a
            # number, so that an exported graph keeps its time axis dynamic.
            counts = torch.ones_like(padded[..., 0], dtype=torch.float32).sum(dim=1)
        else:
            counts = lengths.to(device=padded.device, dtype=torch.float32)
        mean, scale = self.length_scaling
        # Bounded, so that a length far outside the training ones (a
        # sequence of a million steps) cannot swamp the other features.
        standardised = ((torch.log(counts) - mean) / scale).clamp(-5.0, 5.0)
        return standardised[:, None]

    def _static_features(self, static, static_codes, dtype, log_lengths=None):
        """The static features of each sequence, standardised and embedded,
        with its log length when the network takes it."""
        parts = []
        if self.static_numeric:
            values = (static.to(dtype) - self.static_mean) / self.static_scale
            parts.append(torch.nan_to_num(values, nan=0.0))
        for position, embedding in enumerate(self.static_embeddings):
            parts.append(embedding(static_codes[:, position]).to(dtype))
        if log_lengths is not None:
            parts.append(log_lengths.to(dtype))
        if not parts:
            return None
        return self.static_layer(torch.cat(parts, dim=-1))

    def _drop(self, values):
        # Dropout is the identity in eval mode or at p=0: skip the module
        # call, a measurable share of a step on small batches.
        return self.dropout(values) if self.training and self.dropout.p else values

    def _layer_by_layer(self, x):
        """``self.rnn`` over ``x`` one layer at a time, with dropout between.

        What ``nn.LSTM(..., dropout=p)`` computes in training, but with
        masks from this module's own generator. Each layer runs as a
        one-layer module of the same kind given that layer's weights
        (``torch.func.functional_call``), so the weights stay those of the
        fused module: the same state dict, model files and warm starts
        whatever the dropout, and the fused call wherever dropout is off.
        """
        if self._one_layer is None:
            kind, rnn = type(self.rnn), self.rnn
            self._one_layer = tuple(
                kind(size, rnn.hidden_size, batch_first=True, device="meta")
                for size in (rnn.input_size, rnn.hidden_size)
            )
        first, later = self._one_layer
        for depth in range(self.rnn.num_layers):
            if depth:
                x = self._drop(x)
            weights = {
                f"{name}_l0": getattr(self.rnn, f"{name}_l{depth}")
                for name in _LAYER_WEIGHTS
            }
            x = functional_call(first if depth == 0 else later, weights, (x,))[0]
        return x

    def _convolve(self, x, lengths, mask):
        """Convolution, batch norm and ReLU per layer; padding stays zero.

        Returns the last layer's output (batch, time, channels) and the
        lengths and mask it is valid at: ``conv_stride`` times fewer steps
        than ``x`` when the first layer's output is averaged in chunks.
        """
        x = x.transpose(1, 2)
        channel_mask = None if mask is None else mask[:, None, :].to(x.dtype)
        for depth, (convolution, norm) in enumerate(
            zip(self.convolutions, self.conv_norms, strict=True)
        ):
            x = torch.relu(norm(convolution(x), mask))
            if channel_mask is not None:
                # Zero the padding so the next convolution sees what it would
                # see at the end of a lone sequence: its own zero padding.
                x = x * channel_mask
            if depth == 0 and self.conv_stride > 1:
                # On long series the later, wider layers cost most of a
                # training step and reach only a few steps each; on chunk
                # means they cost conv_stride times less and reach
                # conv_stride times further.
                x, lengths, mask = _chunk_means(x, lengths, mask, self.conv_stride)
                channel_mask = None if mask is None else mask[:, None, :].to(x.dtype)
        return x.transpose(1, 2), lengths, mask

    def _bidirectional(self, x, lengths, equal_lengths):
        if equal_lengths:
            reverse = lambda values: values.flip(1)  # noqa: E731
        else:
            index = _reversal_index(lengths, x.shape[1]).to(x.device)

            def reverse(values):
                expanded = index[..., None].expand(-1, -1, values.shape[-1])
                return values.gather(1, expanded)

        for depth, (forward_rnn, backward_rnn) in enumerate(self.layers):
            if depth:
                x = self._drop(x)
            forward_states = _recur(forward_rnn, x)
            backward_states = _recur(backward_rnn, reverse(x))
            x = torch.cat([forward_states, reverse(backward_states)], dim=-1)
        return x

    def _pool(self, states, lengths, mask):
        if self.pooling == "last":
            # Without a mask every row is full length: no gather needed.
            full_length = mask is None
            return _last_states(
                states, None if full_length else lengths, self.bidirectional
            )
        if self.pooling == "mean":
            return _masked_mean(states, lengths, mask)
        if self.pooling == "max":
            if mask is None:
                return states.amax(dim=1)
            return states.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
        # attention: a learned score per step, softmax over valid steps only
        scores = self.attention(states).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return torch.bmm(weights[:, None, :], states).squeeze(1)


def _embeddings(sizes, widths):
    """One embedding per categorical feature (initialised by _initialise_weights)."""
    return nn.ModuleList(
        _blank(nn.Embedding, size, width)
        for size, width in zip(sizes, widths, strict=True)
    )


def _blank(kind, *args, **kwargs):
    """A ``kind`` module with uninitialised float32 weights on the CPU.

    Built on the meta device, so torch's own initialisation draws nothing
    from the global generator; :func:`_initialise_weights` then fills the
    weights. float32 whatever the caller's default dtype, so that a seed
    gives the same initial weights everywhere.
    """
    module = kind(*args, device="meta", dtype=torch.float32, **kwargs)
    # Built under ``torch.device("meta")`` (a model file's shapes are checked
    # so, allocating nothing), the module stays there, uninitialised.
    if torch.get_default_device().type == "meta":
        return module
    return module.to_empty(device="cpu")


def _initialise_weights(network, generator, forget_bias):
    """Torch's default initialisation of every layer, drawn from ``generator``.

    The same distributions as each module's ``reset_parameters``: uniform
    within 1/sqrt(hidden_size) for recurrent layers, torch's Kaiming-uniform
    weights and fan-in-bounded uniform biases for linear layers and
    convolutions, standard normal embeddings. Then what this network sets
    on purpose: the forget (update) gate bias, and code 0 of each embedding
    (unknown or rare categories) as the zero vector, so that an unseen
    category adds nothing until rare ones in training move it.
    """
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.RNNBase):
                bound = 1.0 / math.sqrt(module.hidden_size)
                for parameter in module.parameters():
                    nn.init.uniform_(parameter, -bound, bound, generator=generator)
                _init_gate_bias(module, module.hidden_size, forget_bias)
            elif isinstance(module, (nn.Linear, nn.Conv1d)):
                nn.init.kaiming_uniform_(
                    module.weight, a=math.sqrt(5), generator=generator
                )
                if module.bias is not None:
                    bound = 1.0 / math.sqrt(module.weight[0].numel())
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, generator=generator)
                module.weight[0].zero_()
            elif list(module.parameters(recurse=False)) and not isinstance(
                module, nn.BatchNorm1d
            ):
                # _blank leaves memory uninitialised: a new kind of layer
                # must get its initialisation here, not train from garbage.
                raise TypeError(f"no initialisation for {type(module).__name__}")


class GeneratorDropout(nn.Module):
    """Dropout whose masks come from a generator of its own.

    ``nn.Dropout`` draws from torch's global generator, which fits running
    at once in threads would share. The generator is seeded from ``seed``
    and lives on the device of the values it masks: it is created on first
    use, and again (from the same seed) if the module moves to another
    device. It is neither in the state dict nor pickled.
    """

    # The data-parallel rank whose stream of masks this draws from (see
    # draw_for_process); a class default, so that modules pickled before
    # it existed still load.
    process = 0

    def __init__(self, p, seed):
        super().__init__()
        self.p = p
        self.seed = seed
        self._generator = None

    def extra_repr(self):
        return f"p={self.p}"

    def __getstate__(self):
        state = super().__getstate__()
        # A CUDA generator could not be unpickled on a CPU-only machine.
        state["_generator"] = None
        return state

    def draw_for_process(self, rank):
        """Draw masks from data-parallel process ``rank``'s own stream.

        Every process of a data-parallel fit holds the same module, seed
        included; without this, the shards of one step would all get the
        same masks, row for row. Rank 0 draws what a single process draws.
        """
        if rank:
            self.process = rank
        else:
            self.__dict__.pop("process", None)
        self._generator = None

    def forward(self, values):
        if not self.training or not self.p:
            return values
        generator = self._generator
        if generator is None or generator.device != values.device:
            generator = new_generator(self.seed, "dropout", values.device, self.process)
            self._generator = generator
        keep = 1.0 - self.p
        mask = torch.empty_like(values).bernoulli_(keep, generator=generator)
        # Inverted dropout, as nn.Dropout: kept values are scaled by 1/keep
        # so that evaluation needs no rescaling.
        return values * mask.div_(keep)


def chunked_convolutions(conv_filters, conv_placement, output_mode):
    """Whether a network's convolutions after the first may read chunk means
    (``conv_stride`` > 1): parallel ones, with one output per sequence."""
    return bool(conv_filters) and conv_placement == "parallel" and output_mode == "last"


def _side_by_side(x, lengths, mask, stride):
    """Every ``stride`` consecutive steps of ``x`` as one step of the result.

    Chunks start at each sequence's first step, and the padding is already
    zero, so a sequence's chunks are the same alone or in a batch of longer
    ones; its last chunk ends in zeros, as it would alone. Returns the new
    ``x``, ``lengths`` and ``mask`` (None stays None: every row full).
    """
    batch, _, width = x.shape
    # stride - 1 zeros after the end make room for the last, partial chunk;
    # unfold then takes exactly ceil(n_timesteps / stride) chunks. No
    # arithmetic on the length: an exported graph keeps a dynamic time axis.
    x = nn.functional.pad(x, (0, 0, 0, stride - 1)).unfold(1, stride, stride)
    x = x.transpose(2, 3).reshape(batch, -1, stride * width)
    return (x, *_strided(lengths, mask, stride, x.shape[1], x.device))


def _chunk_means(x, lengths, mask, stride):
    """The mean of every ``stride`` consecutive steps of ``x`` (batch,
    channels, time) over the valid ones among them.

    Chunks start at each sequence's first step, as in _side_by_side, and
    padding is zero and not counted, so a sequence's means are the same
    alone or in a batch. Returns the means and their ``lengths`` and
    ``mask`` (None stays None).
    """

    def chunk_sums(values):
        # As in _side_by_side: room for the last, partial chunk without
        # arithmetic on the length, which an exported graph keeps dynamic.
        padded = nn.functional.pad(values, (0, stride - 1))
        return padded.unfold(2, stride, stride).sum(dim=-1)

    counted = torch.ones_like(x[:1, :1]) if mask is None else mask[:, None, :]
    counts = chunk_sums(counted.to(x.dtype)).clamp_min(1.0)
    x = chunk_sums(x) / counts
    return (x, *_strided(lengths, mask, stride, x.shape[2], x.device))


def _strided(lengths, mask, stride, n_chunks, device):
    """Lengths and mask in chunks of ``stride`` steps (the last one partial)."""
    if lengths is not None:
        lengths = torch.div(lengths + (stride - 1), stride, rounding_mode="floor")
    if mask is None:
        return lengths, None
    steps = torch.arange(n_chunks, device=device)
    return lengths, steps[None, :] < lengths.to(device)[:, None]


def _centred_changes(x, lengths, mask, half_span):
    """``(x[t + h] - x[t - h]) / (2 h)`` along time, ``h = half_span``.

    Positions past a sequence's ends read its first or last step, so a
    sequence's changes are the same alone or in a batch of longer ones, and
    its padding stays zero.
    """
    if mask is None:
        # Every row full: edge padding, which an exported graph keeps with a
        # dynamic time axis.
        padded = nn.functional.pad(
            x.transpose(1, 2), (half_span, half_span), mode="replicate"
        ).transpose(1, 2)
        return (padded[:, 2 * half_span :] - padded[:, : -2 * half_span]) / (
            2 * half_span
        )
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    last = (lengths.to(x.device) - 1).clamp(min=0)[:, None]
    ahead = torch.minimum(steps + half_span, last)
    behind = (steps - half_span).clamp(min=0).expand_as(ahead)
    width = x.shape[-1]
    later = x.gather(1, ahead[..., None].expand(-1, -1, width))
    earlier = x.gather(1, behind[..., None].expand(-1, -1, width))
    return (later - earlier) / (2 * half_span) * mask[..., None].to(x.dtype)


def _recur(rnn, x):
    """States of the batch-first ``rnn`` over ``x``, from a zero state."""
    return rnn(x)[0]


def _masked_mean(states, lengths, mask):
    """Mean of ``states`` (batch, time, channels) over each valid step."""
    if mask is None:
        return states.mean(dim=1)
    weights = mask[..., None].to(states.dtype)
    totals = (states * weights).sum(dim=1)
    return totals / lengths.to(states.device)[:, None].to(states.dtype)


def _normalise_each(x, lengths, mask):
    """Each sequence z-normalised per feature over its own valid steps."""
    mean = _masked_mean(x, lengths, mask)[:, None, :]
    centred = x - mean
    if mask is not None:
        centred = centred * mask[..., None].to(x.dtype)
    var = _masked_mean(centred.square(), lengths, mask)[:, None, :]
    # A constant feature carries no shape: it becomes zeros, not NaN.
    scale = torch.where(var > 1e-12, var.sqrt(), torch.ones_like(var))
    return centred / scale


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch normalisation whose training statistics skip padded steps.

    In training, mean and variance are taken over the valid steps of the
    batch only, so padding never shifts them; in evaluation the running
    statistics make it a per-step affine map, so a sequence gets the same
    output alone or inside a batch of longer ones. Unlike ``BatchNorm1d`` it
    accepts a batch holding a single value per channel (variance zero).
    """

    def forward(self, x, mask=None):
        """Normalise ``x`` of shape (batch, channels, time)."""
        if not self.training:
            return super().forward(x)
        if mask is None:
            if x.shape[0] * x.shape[2] > 1:
                return super().forward(x)
            weights = torch.ones_like(x[:, :1])
        else:
            weights = mask[:, None, :].to(x.dtype)
        count = weights.sum()
        mean = (x * weights).sum(dim=(0, 2)) / count
        centred = (x - mean[None, :, None]) * weights
        var = centred.square().sum(dim=(0, 2)) / count
        with torch.no_grad():
            unbiased = var * count / (count - 1).clamp_min(1)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
            self.num_batches_tracked += 1
        scale = self.weight / torch.sqrt(var + self.eps)
        shift = self.bias - mean * scale
        return x * scale[None, :, None] + shift[None, :, None]


def _last_states(states, lengths, bidirectional):
    """Forward state at each sequence's last step (+ backward state at 0)."""
    if lengths is None:
        forward_states = states[:, -1]
    else:
        batch = torch.arange(states.shape[0], device=states.device)
        forward_states = states[batch, (lengths - 1).to(states.device)]
    if not bidirectional:
        return forward_states
    half = states.shape[-1] // 2
    return torch.cat([forward_states[:, :half], states[:, 0, half:]], dim=-1)


def _reversal_index(lengths, n_timesteps):
    """Per row, the time index that reverses the valid steps in place.

    Padding positions map to themselves, so they stay at the end.
    """
    steps = torch.arange(n_timesteps)[None, :]
    last = lengths[:, None] - 1
    return torch.where(steps <= last, last - steps, steps)


def _init_gate_bias(rnn, hidden_size, forget_bias):
    """Set the initial bias of the gate that keeps memory.

    LSTM biases are laid out as (input, forget, cell, output) gates; GRU as
    (reset, update, new). A positive forget (LSTM) or update (GRU) bias makes
    the cell remember by default, which helps gradients flow early in
    training (Gers et al. 2000; Jozefowicz et al. 2015).
    """
    gate = 1  # the forget gate (LSTM) and update gate (GRU) are both block 1
    with torch.no_grad():
        for name, parameter in rnn.named_parameters():
            if not name.startswith("bias"):
                continue
            block = parameter[gate * hidden_size : (gate + 1) * hidden_size]
            # Biases of input and hidden paths add; put all of it on one.
            block.fill_(forget_bias if name.startswith("bias_ih") else 0.0)


# ---------------------------------------------------------------------------
# Losses. Weights already hold sample and class weights and are zero on
# padded steps, so ``sum(weights * losses) / sum(weights)`` serves every
# output mode; None weights (all 1) take the plain, cheaper mean.
class WeightedCrossEntropy(nn.Module):
    """Weighted mean cross-entropy of logits against class codes."""

    @staticmethod
    def chance_loss(n_outputs):
        """The loss of predicting every class equally likely."""
        return math.log(max(n_outputs, 2))

    def forward(self, outputs, targets, weights=None):
        if outputs.dtype in (torch.float16, torch.bfloat16):
            outputs = outputs.float()
        if weights is None:
            return nn.functional.cross_entropy(
                outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1)
            )
        losses = nn.functional.cross_entropy(
            outputs.reshape(-1, outputs.shape[-1]),
            targets.reshape(-1),
            reduction="none",
        ).view(targets.shape)
        return (losses * weights).sum() / weights.sum()


class WeightedSquaredError(nn.Module):
    """Weighted mean squared error, averaged over the outputs of each target."""

    @staticmethod
    def chance_loss(n_outputs):
        """The loss of predicting the mean of standardised targets: 1."""
        return 1.0

    def forward(self, outputs, targets, weights=None):
        if outputs.dtype in (torch.float16, torch.bfloat16):
            outputs = outputs.float()
        if weights is None:
            return nn.functional.mse_loss(outputs, targets)
        losses = (outputs - targets).square().mean(dim=-1)
        return (losses * weights).sum() / weights.sum()


# The log-scales of WeightedErrorAndScale are clipped to this range, in
# training and prediction alike: exp() of a log-scale a few steps of an
# overfitting optimiser pushed far down would overflow float32, and an
# expected error of 1e-9 target standard deviations means nothing anyway.
LOG_SCALE_LIMIT = 20.0


class WeightedErrorAndScale(nn.Module):
    """Squared error of the predictions, plus a fit of their expected error.

    The outputs hold, per step or sequence, the ``n`` predictions of ``n``
    targets, then ``n`` log-scales: the log of the absolute error each
    prediction is expected to make there. The scale part of the loss is the
    negative log-likelihood of a Laplace distribution of the error,
    ``|error| / scale + log(scale)``, which is least where ``scale`` is the
    expected absolute error. It sees the error with its gradient stopped, so
    the predictions' own gradient is the squared error's alone: they are not
    pulled towards where errors look small, and the point predictions learn
    what they learn without the scales (the features both read are shared).
    """

    @staticmethod
    def chance_loss(n_outputs):
        """About the loss of the mean and a constant scale: 1 + 0.77."""
        return 2.0

    def forward(self, outputs, targets, weights=None):
        if outputs.dtype in (torch.float16, torch.bfloat16):
            outputs = outputs.float()
        n_targets = targets.shape[-1]
        predictions = outputs[..., :n_targets]
        log_scale = outputs[..., n_targets:].clamp(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT)
        error = targets - predictions
        scale_loss = error.detach().abs() * torch.exp(-log_scale) + log_scale
        losses = (error.square() + scale_loss).mean(dim=-1)
        if weights is None:
            return losses.mean()
        return (losses * weights).sum() / weights.sum()


# ---------------------------------------------------------------------------
# Prediction heads: what predict_proba / predict compute from the network's
# outputs, as modules so that an exported graph carries them too.
class ClassProbabilities(nn.Module):
    """Softmax probabilities (float32) and the index of the predicted class."""

    output_names = ("probabilities", "class_index")

    def forward(self, outputs):
        probabilities = torch.softmax(outputs.double(), dim=-1)
        return probabilities.float(), probabilities.argmax(dim=-1)


class TargetScale(nn.Module):
    """Outputs mapped back from the standardised target scale (float32)."""

    output_names = ("predictions",)

    def __init__(self, mean, scale, *, single_output):
        super().__init__()
        self.single_output = single_output
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float64))

    def forward(self, outputs):
        n_targets = self.mean.shape[0]
        if outputs.shape[-1] != n_targets:
            # interval_width="adaptive": the log-scales follow the
            # predictions; the graph returns what predict does.
            outputs = outputs[..., :n_targets]
        values = outputs.double() * self.scale + self.mean
        if self.single_output:
            values = values[..., 0]
        return values.float()

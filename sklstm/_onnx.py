"""ONNX export of a fitted estimator's network, for serving without torch."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import logging
import os
import warnings

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._version import __version__

INPUT_NAME = "X"


class _ExportedNetwork(nn.Module):
    """The fitted network plus what ``predict``/``predict_proba`` add to it.

    Takes equal-length sequences only (no lengths input), so the graph has no
    packing and no data-dependent branches.
    """

    def __init__(self, network, head):
        super().__init__()
        self.network = network
        self.head = head

    def forward(self, X):
        return self.head(self.network(X))


def _check_exporter_installed():
    missing = [
        name
        for name in ("onnx", "onnxscript")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ImportError(
            f"to_onnx needs {' and '.join(missing)}, which torch's ONNX "
            'exporter uses. Install them with: pip install "sklstm[onnx]"'
        )


@contextlib.contextmanager
def _fresh_rnn_kernels():
    """Clear torch's cached Python kernels of the LSTM and GRU ops, around export.

    For dynamic sequence lengths the exporter swaps in loop-based LSTM/GRU
    decompositions by editing the ops' kernel tables, which does not reset
    the ops' dispatch caches: from the second export in a process on, the
    cached unrolled decomposition wins and the time axis silently becomes
    fixed. torch has no public way to reset an op's dispatch cache, so this
    clears the private ``_dispatch_cache`` where it exists; without it (a
    torch that renamed it) the export still runs, and a fixed time axis is
    refused below rather than returned.
    """

    def clear():
        for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
            cache = getattr(op, "_dispatch_cache", None)
            if cache is not None:
                cache.clear()

    clear()
    try:
        yield
    finally:
        clear()


def _symbolic_axes(program):
    """Names of the graph input's dimensions: str when dynamic, int when fixed."""
    return list(program.model.graph.inputs[0].shape)


def export_onnx(estimator, path):
    """Write the ONNX graph of a fitted estimator to ``path``.

    See :meth:`LSTMClassifier.to_onnx`; this is the function behind it.
    """
    check_is_fitted(estimator)
    module = estimator.net_.module_
    if module.embeddings or module.static_embeddings or module.static_numeric:
        raise ValueError(
            "to_onnx exports networks of numeric step features only; this "
            "estimator was fitted with categorical or static features, whose "
            "encoding the graph would not hold. Serve it with sklstm (save / "
            "sklstm.load) instead."
        )
    _check_exporter_installed()

    # float32 throughout: ONNX Runtime's LSTM and GRU kernels take no
    # float64, and float32 is what serving expects.
    network = copy.deepcopy(estimator.net_.module_).cpu().float().eval()
    head = estimator._prediction_head().cpu()
    wrapper = _ExportedNetwork(network, head)
    output_names = list(head.output_names)
    metadata = {}
    if hasattr(estimator, "classes_"):
        metadata["classes"] = json.dumps(estimator.classes_.tolist())
    metadata.update(
        sklstm_version=__version__,
        estimator=type(estimator).__name__,
        output_mode=estimator.output_mode,
    )
    wrapper.eval()

    # An example with at least two recurrent steps (and two rows): the
    # exporter specialises any axis of size 1 in the example to that size.
    stride = getattr(network, "recurrent_stride", 1)
    example = torch.zeros(
        2, 2 * stride + 1, network.feature_mean.numel(), dtype=torch.float32
    )
    batch = torch.export.Dim("batch", min=1)
    time = torch.export.Dim("time", min=1)
    # The exporter reports its progress through print, logging and warnings
    # (some of them deprecation notices about torch internals): none of that
    # concerns the user, so keep it out of their output.
    exporter_logger = logging.getLogger("torch.onnx")
    previous_level = exporter_logger.level
    exporter_logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            torch.no_grad(),
            _fresh_rnn_kernels(),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                (example,),
                input_names=[INPUT_NAME],
                output_names=output_names,
                dynamic_shapes=({0: batch, 1: time},),
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:
        gru = any(isinstance(part, torch.nn.GRU) for part in network.modules())
        if not (gru and stride > 1):
            raise
        # torch 2.13's exporter fails to decompose a GRU whose time axis is
        # computed in the graph (here, from the steps read side by side),
        # where an LSTM exports; later versions may not.
        raise ValueError(
            f"torch {torch.__version__} could not export this GRU network: "
            f"its recurrent layers read {stride} steps at a time "
            "(recurrent_stride, which 'auto' sets past 500 steps), and "
            "torch's exporter fails on a GRU fed such steps. Fit with "
            "cell='lstm' or recurrent_stride=1 to export it, or serve this "
            "one with sklstm (save / sklstm.load)."
        ) from exc
    finally:
        exporter_logger.setLevel(previous_level)
    axes = _symbolic_axes(program)
    if any(isinstance(size, int) for size in axes[:2]):
        # The exporter falls back to fixed shapes rather than fail; a graph
        # that only takes one batch size or length is not what was asked for.
        raise RuntimeError(
            f"torch {torch.__version__} exported the network with input shape "
            f"{[str(size) for size in axes]} instead of dynamic (batch, time) "
            "axes. Please report this at sklstm's issue tracker with your "
            "estimator's parameters."
        )
    program.model.metadata_props.update(metadata)
    program.save(os.fspath(path))

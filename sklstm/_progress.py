"""What the estimators print while training, by ``verbose`` level."""

from __future__ import annotations

import sys

from skorch.callbacks import Callback


def _epoch_summary(row):
    parts = [f"train_loss={row['train_loss']:.4f}"]
    if "valid_loss" in row:
        parts.append(f"valid_loss={row['valid_loss']:.4f}")
    if "valid_score" in row:
        parts.append(f"valid_score={row['valid_score']:.4f}")
    return parts


class EpochLines(Callback):
    """``verbose=2``: one line per epoch."""

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        parts = [f"epoch {row['epoch']:>4d}"] + _epoch_summary(row)
        parts.append(f"{row['dur']:.2f}s")
        print("  ".join(parts), file=sys.stdout, flush=True)


class EpochProgressBar(Callback):
    """``verbose=1``: a tqdm bar over epochs showing loss and score."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, unit="epoch", leave=True)

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        self.bar_.set_postfix_str(", ".join(_epoch_summary(row)), refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.bar_.close()
        del self.bar_


def progress_callbacks(verbose):
    """The skorch callbacks that report progress at this ``verbose`` level."""
    if not verbose:
        return []
    if verbose == 1:
        return [("progress", EpochProgressBar())]
    return [("progress", EpochLines())]

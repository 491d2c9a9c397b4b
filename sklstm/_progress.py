"""What the estimators print while training, by ``verbose`` level.

``verbose=0`` prints nothing, ``1`` shows a tqdm bar over the epochs of one
``fit`` (loss and validation score beside it), ``2`` prints one line per
epoch. Prediction never prints.
"""

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

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.printed_ = len(net.history)

    def on_epoch_end(self, net, **kwargs):
        self._print_new_epochs(net)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        # Early stopping ends training from its own on_epoch_end, which can
        # run before ours: print the epoch it stopped at here.
        self._print_new_epochs(net)

    def _print_new_epochs(self, net):
        for row in net.history[getattr(self, "printed_", len(net.history) - 1) :]:
            parts = [f"epoch {row['epoch']:>4d}"] + _epoch_summary(row)
            parts.append(f"{row['dur']:.2f}s")
            print("  ".join(parts), file=sys.stdout, flush=True)
        self.printed_ = len(net.history)


class EpochProgressBar(Callback):
    """``verbose=1``: a tqdm bar over epochs showing loss and score.

    The bar spans the epochs this call may run (``max_epochs`` for ``fit``,
    one for ``partial_fit``); when early stopping ends training sooner, it
    closes where training stopped and says so.
    """

    def on_train_begin(self, net, X=None, y=None, epochs=None, **kwargs):
        from tqdm.auto import tqdm

        # A fit that raised (e.g. diverged) never reached on_train_end.
        self._close()
        total = net.max_epochs if epochs is None else epochs
        self.first_epoch_ = len(net.history)
        self.bar_ = tqdm(total=total, unit="epoch", leave=True, file=sys.stderr)

    def on_epoch_end(self, net, **kwargs):
        self._advance(net)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        bar = getattr(self, "bar_", None)
        if bar is None:
            return
        # Early stopping ends training from its own on_epoch_end, which can
        # run before ours: count the epoch it stopped at here.
        self._advance(net)
        if bar.n < bar.total:
            bar.set_description_str("stopped early", refresh=False)
        self._close()

    def _advance(self, net):
        done = len(net.history) - self.first_epoch_
        if done > self.bar_.n:
            row = net.history[-1]
            self.bar_.set_postfix_str(", ".join(_epoch_summary(row)), refresh=False)
            self.bar_.update(done - self.bar_.n)

    def _close(self):
        bar = getattr(self, "bar_", None)
        if bar is not None:
            bar.close()
            del self.bar_


def progress_callbacks(verbose):
    """The skorch callbacks that report progress at this ``verbose`` level."""
    if not verbose:
        return []
    if verbose == 1:
        return [("progress", EpochProgressBar())]
    return [("progress", EpochLines())]

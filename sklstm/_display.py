"""Plot of how training went, in the style of scikit-learn's Display objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._typing import ArrayLike, Estimator, Self

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "HistoryDisplay needs matplotlib. Install it with "
            'pip install "sklstm[plot]" (or pip install matplotlib).'
        ) from exc
    return plt


def restored_epoch(validation_scores, tol):
    """The 1-based epoch whose weights early stopping keeps.

    Early stopping counts an epoch as better only when its score beats the
    best so far by more than ``tol``; the weights of the last such epoch are
    restored at the end.
    """
    best_epoch, best_score = None, -np.inf
    for epoch, score in enumerate(validation_scores, start=1):
        if score > best_score + tol:
            best_epoch, best_score = epoch, score
    return best_epoch


class HistoryDisplay:
    """Training loss and validation score per epoch.

    Create it with :meth:`from_estimator` from a fitted estimator, or
    directly from the curves; then :meth:`plot` draws it. The training loss
    goes on the left axis, the validation score (when there is one) on a
    twin right axis, and a dashed vertical line marks the best epoch.

    Needs matplotlib (``pip install "sklstm[plot]"``).

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,)
        Training loss after each epoch.
    validation_scores : array-like of shape (n_epochs,), default=None
        Validation score after each epoch; None when there was no
        validation set.
    best_epoch : int, default=None
        1-based epoch to mark. None: the epoch of the highest validation
        score, or no mark without validation scores.
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    line_loss_ : matplotlib Line2D
        The training-loss curve.
    line_score_ : matplotlib Line2D or None
        The validation-score curve.
    best_line_ : matplotlib Line2D or None
        The vertical line at the best epoch.
    ax_ : matplotlib Axes
        Axes of the training loss.
    ax_score_ : matplotlib Axes or None
        Twin axes of the validation score.
    figure_ : matplotlib Figure
        Figure holding the plot.

    See Also
    --------
    HistoryDisplay.from_estimator : Plot the history of a fitted estimator.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklstm import HistoryDisplay
    >>> display = HistoryDisplay([0.9, 0.6, 0.5], validation_scores=[0.5, 0.7, 0.6])
    >>> display = display.plot()
    >>> display.best_epoch
    2
    """

    def __init__(
        self,
        loss_curve: ArrayLike,
        validation_scores: ArrayLike | None = None,
        best_epoch: int | None = None,
        estimator_name: str | None = None,
    ) -> None:
        self.loss_curve = loss_curve
        self.validation_scores = validation_scores
        self.best_epoch = best_epoch
        self.estimator_name = estimator_name

    def _checked_curves(self):
        loss = np.asarray(self.loss_curve, dtype=float)
        if loss.ndim != 1 or len(loss) == 0:
            raise ValueError(
                "loss_curve must be a non-empty 1-D sequence of per-epoch "
                f"losses, got shape {loss.shape}."
            )
        scores = None
        if self.validation_scores is not None:
            scores = np.asarray(self.validation_scores, dtype=float)
            if scores.shape != loss.shape:
                raise ValueError(
                    f"validation_scores has shape {scores.shape} but "
                    f"loss_curve has {loss.shape}: pass one score per epoch."
                )
        best = self.best_epoch
        if best is None and scores is not None and np.isfinite(scores).any():
            best = int(np.nanargmax(scores)) + 1
        if best is not None and not 1 <= best <= len(loss):
            raise ValueError(
                f"best_epoch={best} is outside the {len(loss)} epochs "
                "(epochs count from 1)."
            )
        return loss, scores, best

    def plot(
        self,
        ax: Axes | None = None,
        *,
        loss_kwargs: dict[str, Any] | None = None,
        score_kwargs: dict[str, Any] | None = None,
    ) -> Self:
        """Draw the history.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes for the training loss; a new figure when None. The
            validation score goes on a twin of it.
        loss_kwargs : dict, default=None
            Keyword arguments for the loss curve's ``plot`` call.
        score_kwargs : dict, default=None
            Keyword arguments for the validation curve's ``plot`` call.

        Returns
        -------
        display : HistoryDisplay
            This object, with the ``line_*_``, ``ax_``, ``ax_score_`` and
            ``figure_`` attributes set.
        """
        loss, scores, best = self._checked_curves()
        self.best_epoch = best
        plt = _pyplot()
        if ax is None:
            _, ax = plt.subplots()
        epochs = np.arange(1, len(loss) + 1)

        loss_style = {"color": "C0", "label": "training loss"}
        loss_style.update(loss_kwargs or {})
        (self.line_loss_,) = ax.plot(epochs, loss, **loss_style)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("training loss")
        lines = [self.line_loss_]

        self.ax_score_ = None
        self.line_score_ = None
        if scores is not None:
            self.ax_score_ = ax.twinx()
            score_style = {"color": "C1", "label": "validation score"}
            score_style.update(score_kwargs or {})
            (self.line_score_,) = self.ax_score_.plot(epochs, scores, **score_style)
            self.ax_score_.set_ylabel("validation score")
            lines.append(self.line_score_)

        self.best_line_ = None
        if best is not None:
            self.best_line_ = ax.axvline(
                best, color="0.4", linestyle="--", label=f"best epoch ({best})"
            )
            lines.append(self.best_line_)
            if scores is not None:
                self.ax_score_.plot(
                    [best], [scores[best - 1]], marker="o", color="C1", linestyle=""
                )
        # Loss ends low and scores end high: the right middle is usually free.
        ax.legend(handles=lines, loc="center right")
        if self.estimator_name:
            ax.set_title(f"{self.estimator_name} training history")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(
        cls, estimator: Estimator, *, ax: Axes | None = None, **kwargs: Any
    ) -> Self:
        """Plot the training history of a fitted sklstm estimator.

        Parameters
        ----------
        estimator : LSTMClassifier or LSTMRegressor
            A fitted estimator. With ``early_stopping=True`` the validation
            score is drawn too, and the epoch whose weights early stopping
            kept is marked.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : HistoryDisplay
        """
        check_is_fitted(estimator)
        loss_curve = getattr(estimator, "loss_curve_", None)
        if loss_curve is None:
            raise TypeError(
                f"{type(estimator).__name__} has no loss_curve_: pass a fitted "
                "sklstm estimator (LSTMClassifier or LSTMRegressor)."
            )
        scores = getattr(estimator, "validation_scores_", None)
        best = None
        if scores is not None:
            best = restored_epoch(scores, getattr(estimator, "tol", 0.0))
        display = cls(
            loss_curve,
            validation_scores=scores,
            best_epoch=best,
            estimator_name=type(estimator).__name__,
        )
        return display.plot(ax=ax, **kwargs)

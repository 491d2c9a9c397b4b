"""Stock skorch callbacks passed in ``callbacks`` work as skorch documents them."""

import numpy as np
import pytest
import torch
from skorch.callbacks import (
    Callback,
    Checkpoint,
    EpochScoring,
    LoadInitState,
    LRScheduler,
    PrintLog,
    ProgressBar,
)

from sklstm import LSTMClassifier, LSTMRegressor

from .conftest import make_classification_sequences, make_ragged_sequences

SMALL = dict(hidden_size=8, conv_filters=(4,), batch_size=16, random_state=0)


def accuracy_of_logits(net, X, y):
    """A custom scorer, as skorch's docs write them: (net, X, y) -> float."""
    logits = net.predict(X)
    return float((logits.argmax(axis=-1) == y).mean())


@pytest.mark.parametrize("ragged", [False, True])
def test_epoch_scoring_with_a_custom_scorer(ragged):
    X, y = make_ragged_sequences() if ragged else make_classification_sequences()
    scoring = EpochScoring(accuracy_of_logits, name="acc", lower_is_better=False)
    clf = LSTMClassifier(
        **SMALL, max_epochs=4, early_stopping=True, callbacks=[scoring]
    ).fit(X, y)
    scores = clf.history_[:, "acc"]
    assert len(scores) == 4
    assert all(0 <= score <= 1 for score in scores)
    # The validation batches of each epoch score the same as sklstm's own
    # validation accuracy: the scorer saw the right targets in the right order.
    np.testing.assert_allclose(scores, clf.validation_scores_)
    assert "acc_best" in clf.history_[-1]


def test_epoch_scoring_on_training_batches():
    X, y = make_classification_sequences()
    scoring = EpochScoring(accuracy_of_logits, name="train_acc", on_train=True)
    clf = LSTMClassifier(**SMALL, max_epochs=3, callbacks=[scoring]).fit(X, y)
    assert len(clf.history_[:, "train_acc"]) == 3


def test_checkpoint_and_load_init_state_resume_an_interrupted_fit(tmp_path):
    X, y = make_classification_sequences()

    class Crash(Callback):
        """Ends the first fit in its third epoch, as a killed process would."""

        def on_batch_end(self, net, training=False, **kwargs):
            if training and len(net.history) == 3:
                raise RuntimeError("machine lost")

    checkpoint = Checkpoint(dirname=tmp_path, monitor=None)
    first = LSTMClassifier(
        **SMALL, max_epochs=5, lr_schedule=None, callbacks=[checkpoint, Crash()]
    )
    with pytest.raises(RuntimeError, match="machine lost"):
        first.fit(X, y)
    assert (tmp_path / "params.pt").exists()
    saved = torch.load(tmp_path / "params.pt", weights_only=True)

    # A new estimator, as in a new process, picks up where the files left off.
    checkpoint = Checkpoint(dirname=tmp_path, monitor=None)
    resumed = LSTMClassifier(
        **SMALL,
        max_epochs=2,
        lr_schedule=None,
        callbacks=[checkpoint, LoadInitState(checkpoint)],
    )
    loaded = {}

    class Spy(Callback):
        def on_train_begin(self, net, **kwargs):
            loaded.update(
                {k: v.clone() for k, v in net.module_.state_dict().items()},
            )

    resumed.set_params(callbacks=[checkpoint, LoadInitState(checkpoint), Spy()])
    resumed.fit(X, y)
    for key, value in saved.items():
        torch.testing.assert_close(loaded[key], value)
    # Two finished epochs from the files, then two more.
    assert resumed.n_iter_ == 4
    assert list(resumed.history_[:, "epoch"]) == [1, 2, 3, 4]


def test_lr_scheduler_around_a_torch_scheduler():
    X, y = make_classification_sequences()
    schedule = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    clf = LSTMClassifier(
        **SMALL, max_epochs=3, lr=0.01, lr_schedule=None, callbacks=[schedule]
    ).fit(X, y)
    np.testing.assert_allclose(clf.history_[:, "event_lr"], [0.01, 0.005, 0.0025])
    group = clf.net_.optimizer_.param_groups[0]
    assert group["lr"] == pytest.approx(0.00125)


def test_print_log_prints_the_history_table():
    X, y = make_classification_sequences()
    lines = []
    LSTMRegressor(**SMALL, max_epochs=3, callbacks=[PrintLog(sink=lines.append)]).fit(
        X, X[:, 0, 0]
    )
    assert "epoch" in lines[0] and "train_loss" in lines[0]
    assert len(lines) == 2 + 3  # header, rule, one row per epoch


def test_progress_bar_shows_batches(capfd):
    X, y = make_classification_sequences(n_samples=64)
    LSTMClassifier(**SMALL, max_epochs=2, callbacks=[ProgressBar()]).fit(X, y)
    err = capfd.readouterr().err
    # One bar per epoch over its 4 batches (64 sequences in batches of 16).
    assert err.count("0/4 [") == 2


def test_batch_history_is_recorded():
    X, y = make_classification_sequences(n_samples=64)
    clf = LSTMClassifier(**SMALL, max_epochs=2).fit(X, y)
    batches = clf.history_[-1, "batches"]
    assert len(batches) == 4
    assert all(np.isfinite(batch["train_loss"]) for batch in batches)
    assert sum(batch["train_batch_size"] for batch in batches) == 64

"""
=====================================
Watching training with early stopping
=====================================

Fit an :class:`~sklstm.LSTMClassifier` with early stopping, look at how the
training loss and the validation accuracy evolved with
:class:`~sklstm.HistoryDisplay`, then keep the model with
:meth:`~sklstm.LSTMClassifier.save` and load it back with :func:`sklstm.load`.

Like every example, it saves its figure in the current working directory,
named after the script: ``plot_training_history.png``.
"""

# %%
# Data: noisy sine waves
# ----------------------
# Each sequence is a sine wave of one of two frequencies, buried in noise.
# The classifier must tell the frequencies apart.
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the figure is saved, not shown

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

import sklstm
from sklstm import HistoryDisplay, LSTMClassifier

rng = np.random.RandomState(0)
n_samples, n_timesteps = 200, 24
frequency = rng.choice([0.08, 0.2], size=n_samples)
phase = rng.uniform(0, 2 * np.pi, size=n_samples)
steps = np.arange(n_timesteps)
X = np.sin(2 * np.pi * frequency[:, None] * steps + phase[:, None])
X = (X + rng.normal(scale=0.6, size=X.shape))[:, :, None].astype(np.float32)
y = np.where(frequency < 0.15, "slow", "fast")
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# Training with early stopping
# ----------------------------
# A tenth of the training data is held out; training stops once the
# validation accuracy has not improved for ``n_iter_no_change`` epochs, and
# the weights of the best epoch are kept. ``verbose=1`` would show a
# progress bar, ``verbose=2`` a line per epoch.
clf = LSTMClassifier(
    hidden_size=16,
    max_epochs=60,
    early_stopping=True,
    n_iter_no_change=10,
    lr=1e-2,
    random_state=0,
)
clf.fit(X_train, y_train)
print(f"{clf.n_iter_} epochs, test accuracy {clf.score(X_test, y_test):.2f}")

# %%
# The training history
# --------------------
# The training loss is on the left axis, the validation accuracy on the
# right; the dashed line marks the epoch whose weights were kept.
display = HistoryDisplay.from_estimator(clf)
display.ax_.set_title("LSTMClassifier on noisy sine waves")
display.figure_.tight_layout()
display.figure_.savefig("plot_training_history.png", dpi=100)  # working directory

# %%
# Keeping the model
# -----------------
# ``save`` writes JSON and safetensors, never a pickle, so ``sklstm.load`` is
# safe even on files from others; the loaded model predicts identically.
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "sine-classifier.sklstm"
    clf.save(path)
    loaded = sklstm.load(path)
assert (loaded.predict_proba(X_test) == clf.predict_proba(X_test)).all()

# The history travels with the model: the same plot from the loaded copy.
HistoryDisplay.from_estimator(loaded)
plt.close("all")

"""
===============================================
Speaker recognition from ragged vowel sequences
===============================================

The Japanese Vowels data set (Kudo et al., 1999) holds recordings of nine
male speakers uttering the vowels "ae". Each utterance is a sequence of 12
LPC cepstrum coefficients per frame, 7 to 29 frames long. The task: who is
speaking?

The sequences have different lengths, and :class:`~sklstm.LSTMClassifier`
takes them as they are, a list of ``(n_timesteps_i, 12)`` arrays: no
padding, truncating or resampling by hand. Run with::

    python examples/plot_japanese_vowels.py

Like every example, it saves its figure in the current working directory,
named after the script: ``plot_japanese_vowels.png``.
"""

# %%
# Load the data
# -------------
# aeon ships the standard train/test split. It stores each case as
# ``(n_channels, n_timepoints)``; :func:`sklstm.from_channels_first` turns
# that into sklstm's time-major layout.
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the figure is saved, not shown

import matplotlib.pyplot as plt
import numpy as np
from aeon.datasets import load_classification
from sklearn.metrics import ConfusionMatrixDisplay

from sklstm import LSTMClassifier, from_channels_first

X_train, y_train = load_classification("JapaneseVowels", split="train")
X_test, y_test = load_classification("JapaneseVowels", split="test")
X_train, X_test = from_channels_first(X_train), from_channels_first(X_test)
lengths = np.array([len(x) for x in X_train])
print(
    f"{len(X_train)} training sequences of {X_train[0].shape[1]} features, "
    f"{lengths.min()} to {lengths.max()} steps; {len(X_test)} test sequences"
)

# %%
# Train with default parameters
# -----------------------------
clf = LSTMClassifier(random_state=0)
start = time.perf_counter()
clf.fit(X_train, y_train)
seconds = time.perf_counter() - start
accuracy = clf.score(X_test, y_test)
print(f"test accuracy: {accuracy:.3f} (fit in {seconds:.1f} s, {clf.n_iter_} epochs)")

# %%
# Where does it err?
# ------------------
# The confusion matrix shows which speakers get mixed up; the second panel
# shows accuracy by utterance length, since short utterances carry less
# evidence.
predicted = clf.predict(X_test)
test_lengths = np.array([len(x) for x in X_test])
bins = [0, 12, 16, 20, 30]
labels, per_bin = [], []
for low, high in zip(bins[:-1], bins[1:], strict=True):
    in_bin = (test_lengths > low) & (test_lengths <= high)
    if in_bin.any():
        labels.append(f"{low + 1}-{high}\n(n={in_bin.sum()})")
        per_bin.append((predicted[in_bin] == y_test[in_bin]).mean())

figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
ConfusionMatrixDisplay.from_predictions(
    y_test, predicted, ax=left, colorbar=False, cmap="Blues"
)
left.set_title(f"Speakers, test accuracy {accuracy:.3f}")
right.bar(labels, per_bin, color="tab:blue")
right.set_ylim(min(per_bin) - 0.05, 1.0)
right.set_xlabel("utterance length (frames)")
right.set_ylabel("test accuracy")
right.set_title("Accuracy by sequence length")
figure.tight_layout()
output = Path("plot_japanese_vowels.png")  # in the current working directory
figure.savefig(output, dpi=100)
print(f"figure saved to {output.resolve()}")

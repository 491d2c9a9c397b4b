"""
===========================================
A character-level language model (char-RNN)
===========================================

The classic char-RNN reads text one character at a time and, at every
step, predicts the next character. With ``output_mode="sequence"``,
:class:`~sklstm.LSTMClassifier` makes one prediction per time step, and
with ``categorical_features=[0]`` it reads a sequence of tokens (here
characters, strings of length 1) through a learned embedding. Both input
and target are then plain lists of arrays of characters.

The text is English prose that every Python installation carries offline:
``pydoc_data.topics.topics``, the standard library's dictionary of Python
documentation topics behind ``help("for")``, ``help("if")`` and so on. The
example keeps its prose (drops code, grammar rules, tables and heading
underlines), lowercases it, drops the asterisks around emphasised words and
maps every character outside a small alphabet to ``#``.

Like every example, it saves its figure in the current working directory,
named after the script: ``plot_char_rnn.png``.
"""

# %%
# The text
# --------
import re
import time
from collections import Counter
from pathlib import Path
from pydoc_data.topics import topics  # the standard library's English prose

import matplotlib

matplotlib.use("Agg")  # headless: the figure is saved, not shown

import matplotlib.pyplot as plt
import numpy as np

from sklstm import LSTMClassifier

ALPHABET = set("abcdefghijklmnopqrstuvwxyz .,;:'\"()-")
QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def prose(topic):
    """A topic's paragraphs: unindented lines, neither tables nor underlines."""
    lines = [
        line.strip()
        for line in topic.splitlines()
        if line.strip()
        and not line.startswith((" ", "\t", "|", "+"))  # code, grammar, tables
        and not set(line.strip()) <= set("*=-~^")  # heading underlines
    ]
    text = " ".join(lines).lower().translate(QUOTES).replace("*", "")  # *emphasis*
    text = "".join(c if c in ALPHABET else "#" for c in text)
    return re.sub(r" +", " ", text)


text = " ".join(prose(topics[name]) for name in sorted(topics))
# The last tenth of the text (topics never seen in training) is the test
# text.
split = int(0.9 * len(text))
train_text, test_text = text[:split], text[split:]
print(
    f"{len(text)} characters of prose from {len(topics)} topics: "
    f"{len(train_text)} for training, {len(test_text)} held out"
)
print(repr(train_text[:200]))

# %%
# Training windows
# ----------------
# The text is cut into windows of 65 characters, overlapping by half. Each
# window gives a sequence of 64 input characters and, as its per-step
# labels, the same characters shifted by one: the next character at every
# step.
WINDOW = 64


def windows(text, stride):
    starts = range(0, len(text) - WINDOW - 1, stride)
    X = [np.array(list(text[s : s + WINDOW])) for s in starts]
    y = [np.array(list(text[s + 1 : s + WINDOW + 1])) for s in starts]
    return X, y


X_train, y_train = windows(train_text, stride=WINDOW // 2)
X_test, y_test = windows(test_text, stride=WINDOW)
print(f"{len(X_train)} training windows, {len(X_test)} test windows")

# %%
# The model
# ---------
# A few parameters must change from their defaults, and not for speed:
#
# - ``conv_filters=None``: the default convolutional branch is centred on
#   each step ("same" padding, the kernel reaching as far after the step as
#   before it), so in sequence mode the feature at step ``t`` would see the
#   character at ``t + 1``, the very answer. A next-step model must only
#   read the past.
# - ``bidirectional=False`` (the default) for the same reason: a backward
#   pass reads the future.
# - ``pooling`` plays no part in sequence mode, and with characters as the
#   only feature there is nothing numeric for ``sequence_norm`` (which
#   normalises with statistics of the whole sequence) to see.
#
# ``hidden_size=128`` gives the memory a language model needs. The rest,
# for time: the 2-minute budget of an example on 2 CPU cores covers 20
# epochs over these 200,000 characters, with a higher learning rate
# (``lr=3e-3``, annealed by the default cosine schedule) to make the most of
# them; more text and epochs give a better model.
clf = LSTMClassifier(
    output_mode="sequence",
    categorical_features=[0],
    conv_filters=None,
    hidden_size=128,
    max_epochs=20,
    lr=3e-3,
    random_state=0,
)
start = time.perf_counter()
clf.fit(X_train, y_train)
fit_seconds = time.perf_counter() - start
print(
    f"fit in {fit_seconds:.0f} s, {clf.n_iter_} epochs; "
    f"{len(clf.classes_)} classes: {''.join(clf.classes_)!r}"
)

# %%
# Next-character accuracy on held-out text
# ----------------------------------------
# ``predict`` returns one array of characters per window; the accuracy is
# over every step of every test window. Two baselines: always the most
# frequent next character (a space), and the bigram model, the most frequent
# next character after the current one in the training text.
predicted = clf.predict(X_test)
truth, guesses = np.concatenate(y_test), np.concatenate(predicted)
lstm_accuracy = (guesses == truth).mean()

most_frequent = Counter(train_text).most_common(1)[0][0]
bigrams = Counter(zip(train_text[:-1], train_text[1:], strict=True))
after = {}
for (current, following), count in bigrams.items():
    if count > after.get(current, ("", 0))[1]:
        after[current] = (following, count)
current = np.concatenate(X_test)
bigram_guesses = np.array([after.get(c, (most_frequent, 0))[0] for c in current])
accuracies = {
    f"most frequent ({most_frequent!r})": (truth == most_frequent).mean(),
    "bigram": (truth == bigram_guesses).mean(),
    "LSTM": lstm_accuracy,
}
for name, accuracy in accuracies.items():
    print(f"next-character accuracy, {name}: {accuracy:.3f}")

# %%
# Generating text
# ---------------
# ``predict_proba`` of a ragged list returns one ``(n_steps, n_classes)``
# array per sequence; the last row is the distribution of the character
# after the sequence. Sampling from it (sharpened or flattened by a
# temperature), appending the sample and repeating writes new text. The
# network starts afresh at each call, so it is given the last ``WINDOW``
# characters as context; all the seeds are continued in one call per step.
rng = np.random.default_rng(0)


def continue_text(seeds, n_chars, temperature):
    texts = list(seeds)
    for _ in range(n_chars):
        contexts = [np.array(list(t[-WINDOW:])) for t in texts]
        last = np.stack([p[-1] for p in clf.predict_proba(contexts)])
        logits = np.log(last + 1e-12) / temperature
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        texts = [
            t + clf.classes_[rng.choice(len(clf.classes_), p=w)]
            for t, w in zip(texts, weights, strict=True)
        ]
    return texts


seeds = ["the for statement is used to ", "an exception is raised when "]
for temperature in (0.5, 1.0):
    print(f"temperature {temperature}:")
    for sample in continue_text(seeds, 120, temperature):
        print(f"  {sample!r}")

# %%
# Training loss and accuracy
# --------------------------
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
left.plot(np.arange(1, len(clf.loss_curve_) + 1), clf.loss_curve_, marker="o")
left.set_xlabel("epoch")
left.set_ylabel("training loss (cross-entropy per character)")
left.set_title("Training")
bars = right.bar(list(accuracies), list(accuracies.values()), color="tab:blue")
right.bar_label(bars, fmt="%.3f")
right.set_ylabel("next-character accuracy, held-out text")
right.set_title(f"LSTM char-RNN, {len(clf.classes_)} characters")
figure.tight_layout()
output = Path("plot_char_rnn.png")  # in the current working directory
figure.savefig(output, dpi=100)
print(f"figure saved to {output.resolve()}")

"""LSTMClassifier: labels, probabilities, per-step mode, training options."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from sklstm import LSTMClassifier

from .conftest import make_classification_sequences, make_ragged_sequences

FAST = dict(hidden_size=16, max_epochs=3, random_state=0)


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["down", "up"]),
        np.array([3, 7]),
        np.array([-1.0, 2.0]),
        np.array([False, True]),
        np.array(["a", "b"], dtype=object),
    ],
)
def test_predict_returns_labels_of_the_training_type(labels):
    X, y = make_classification_sequences()
    y = labels[(y == "up").astype(int)]
    clf = LSTMClassifier(**FAST).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.unique(labels))
    predicted = clf.predict(X)
    assert predicted.dtype == clf.classes_.dtype
    assert set(predicted) <= set(labels)


def test_predict_proba_is_a_distribution_over_classes_():
    X, y = make_classification_sequences()
    y = np.array(["a", "b", "c"])[np.arange(len(y)) % 3]
    clf = LSTMClassifier(**FAST).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(1)])


@pytest.mark.parametrize("output_mode", ["last", "sequence"])
@pytest.mark.parametrize("n_classes", [2, 8, 9, 12])
def test_probabilities_are_the_softmax_of_the_logits(n_classes, output_mode):
    # Few classes take a class-first softmax on a CPU, more the usual one:
    # both must give the float64 softmax of the network's outputs.
    X, y = make_classification_sequences(n_samples=60)
    if output_mode == "sequence":
        y = np.arange(X.shape[0] * X.shape[1]).reshape(X.shape[:2]) % n_classes
    else:
        y = np.arange(len(X)) % n_classes
    clf = LSTMClassifier(**FAST, output_mode=output_mode).fit(X, y)
    # Per-step outputs come one row per step.
    _, logits = clf._outputs(X)
    logits = logits.reshape(X.shape[: 2 if output_mode == "sequence" else 1] + (-1,))
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    expected = shifted / shifted.sum(axis=-1, keepdims=True)
    proba = clf.predict_proba(X)
    assert proba.shape == X.shape[: 2 if output_mode == "sequence" else 1] + (
        n_classes,
    )
    np.testing.assert_allclose(proba, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=1e-12)


def test_learns_a_simple_rule():
    X, y = make_classification_sequences(n_samples=200)
    clf = LSTMClassifier(hidden_size=32, max_epochs=30, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.9


def test_same_seed_gives_identical_probabilities():
    X, y = make_classification_sequences()
    first = LSTMClassifier(**FAST).fit(X, y).predict_proba(X)
    second = LSTMClassifier(**FAST).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    other = LSTMClassifier(**{**FAST, "random_state": 1}).fit(X, y).predict_proba(X)
    assert not np.array_equal(first, other)


def test_fit_does_not_touch_the_global_torch_rng():
    X, y = make_classification_sequences()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    LSTMClassifier(**FAST).fit(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


def test_fit_does_not_depend_on_the_global_torch_rng():
    X, y = make_classification_sequences(n_samples=40)
    # Dropout between layers too: every kind of draw a fit makes.
    params = dict(FAST, num_layers=2, dropout=0.3)
    torch.manual_seed(1)
    before = torch.get_rng_state()
    first = LSTMClassifier(**params).fit(X, y)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(2)
    second = LSTMClassifier(**params).fit(X, y)
    np.testing.assert_array_equal(second.predict_proba(X), first.predict_proba(X))


def test_float64_precision_trains_in_float64():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST, precision="64").fit(X, y)
    assert next(clf.net_.module_.parameters()).dtype == torch.float64
    assert clf.predict_proba(X).dtype == np.float64


def test_default_precision_trains_in_float32_from_float64_input():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST).fit(X.astype(np.float64), y)
    assert next(clf.net_.module_.parameters()).dtype == torch.float32


def test_auto_device_is_cpu_without_cuda():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST).fit(X, y)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert clf.device_.type == expected


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_2d_dataframe_input_uses_columns_as_time_steps():
    X, y = make_classification_sequences(n_features=1)
    frame = pd.DataFrame(X[:, :, 0], columns=[f"t{i}" for i in range(X.shape[1])])
    clf = LSTMClassifier(**FAST).fit(frame, y)
    assert clf.n_features_in_ == X.shape[1]
    assert list(clf.feature_names_in_) == list(frame.columns)
    # The same rows as a 3-D array predict the same: one univariate sequence.
    np.testing.assert_allclose(clf.predict_proba(frame), clf.predict_proba(X))


def test_feature_names_are_checked_after_fit_on_a_dataframe():
    X, y = make_classification_sequences(n_features=1)
    columns = [f"t{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X[:, :, 0], columns=columns)
    clf = LSTMClassifier(**FAST).fit(frame, y)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        clf.predict(X[:, :, 0])
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(frame.rename(columns={"t0": "other"}))


def test_plain_arrays_predict_without_feature_name_warnings():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict_proba(X)
    assert not hasattr(clf, "feature_names_in_")


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_probabilities_sum_to_one_in_float64(precision):
    from sklstm._device import cpu_runs_bf16

    if precision == "bf16-mixed" and not cpu_runs_bf16():
        pytest.skip("this CPU has no bfloat16 LSTM kernels")
    X, y = make_classification_sequences()
    y = np.where(X[:, 0, 1] > 1, "third", y)
    clf = LSTMClassifier(**FAST, precision=precision).fit(X, y)
    assert len(clf.classes_) == 3
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_ragged_fit_predict_score():
    X, y = make_ragged_sequences()
    clf = LSTMClassifier(**FAST).fit(X, y)
    assert clf.n_features_in_ == 2
    assert clf.predict(X).shape == (len(X),)
    assert clf.predict_proba(X).shape == (len(X), 2)
    assert 0 <= clf.score(X, y) <= 1


def test_predicting_other_lengths_than_seen_in_fit():
    X, y = make_classification_sequences(n_timesteps=10)
    clf = LSTMClassifier(**FAST).fit(X, y)
    longer = np.random.RandomState(1).normal(size=(5, 25, 3))
    assert clf.predict(longer).shape == (5,)


# --- per-step classification ------------------------------------------------


def _per_step_data(n_samples=40, seed=0):
    X, _ = make_ragged_sequences(
        n_samples=n_samples, min_length=4, max_length=16, seed=seed
    )
    y = [np.where(x[:, 0] > 0, "pos", "neg") for x in X]
    return X, y


def test_sequence_mode_ragged_in_ragged_out():
    X, y = _per_step_data()
    clf = LSTMClassifier(
        **{**FAST, "max_epochs": 30, "lr": 0.01}, output_mode="sequence"
    )
    clf.fit(X, y)
    predicted = clf.predict(X)
    proba = clf.predict_proba(X)
    assert isinstance(predicted, list) and isinstance(proba, list)
    for x, labels, p in zip(X, predicted, proba, strict=True):
        assert labels.shape == (len(x),)
        assert p.shape == (len(x), 2)
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        assert set(labels) <= {"pos", "neg"}
    # The per-step rule is learnable from the current step alone.
    assert clf.score(X, y) > 0.8


def test_sequence_mode_equal_lengths_with_2d_targets():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 8, 2))
    y = (X[:, :, 0] > 0).astype(int)
    clf = LSTMClassifier(**FAST, output_mode="sequence").fit(X, y)
    assert clf.predict(X).shape == (30, 8)
    assert clf.predict_proba(X).shape == (30, 8, 2)


def test_sequence_mode_score_ignores_padding():
    X, y = _per_step_data()
    clf = LSTMClassifier(**FAST, output_mode="sequence").fit(X, y)
    predicted = clf.predict(X)
    flat_truth = np.concatenate(y)
    flat_guess = np.concatenate(predicted)
    assert clf.score(X, y) == pytest.approx(np.mean(flat_truth == flat_guess))


def test_sequence_mode_rejects_mismatched_lengths():
    X, y = _per_step_data(n_samples=10)
    y[3] = y[3][:-1]
    with pytest.raises(ValueError, match=r"y\[3\] has .* but X\[3\] has"):
        LSTMClassifier(**FAST, output_mode="sequence").fit(X, y)
    with pytest.raises(ValueError, match="10 sequences but y has 9"):
        LSTMClassifier(**FAST, output_mode="sequence").fit(X, y[:9])


# --- training options -------------------------------------------------------


def test_early_stopping_records_scores_and_restores_the_best():
    X, y = make_classification_sequences(n_samples=120)
    clf = LSTMClassifier(
        hidden_size=16,
        max_epochs=40,
        early_stopping=True,
        n_iter_no_change=3,
        random_state=0,
    ).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.n_iter_ < 40 or clf.validation_scores_[-1] == max(clf.validation_scores_)


def test_without_early_stopping_validation_scores_is_none():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST).fit(X, y)
    assert clf.validation_scores_ is None
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3


def test_class_weight_moves_predictions_towards_the_heavy_class():
    X, y = make_classification_sequences(n_samples=100)
    heavy = LSTMClassifier(**FAST, class_weight={"up": 50.0}).fit(X, y)
    balanced = LSTMClassifier(**FAST, class_weight="balanced").fit(X, y)
    plain = LSTMClassifier(**FAST).fit(X, y)
    up = list(plain.classes_).index("up")
    heavy_up = heavy.predict_proba(X)[:, up].mean()
    assert heavy_up > plain.predict_proba(X)[:, up].mean()
    assert balanced.predict(X).shape == (100,)


def test_zero_sample_weight_hides_a_label():
    X, y = make_classification_sequences(n_samples=100)
    weights = (y == "down").astype(float)
    weights[0] = 1e-3  # keep one "up" barely visible
    clf = LSTMClassifier(
        hidden_size=16, max_epochs=10, random_state=0, conv_filters=None, dropout=0.0
    )
    clf.fit(X, y, sample_weight=weights)
    assert (clf.predict(X) == "down").mean() > 0.9


def test_warm_start_continues_training():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST, warm_start=True).fit(X, y)
    first_losses = list(clf.loss_curve_)
    clf.set_params(max_epochs=1).fit(X, y)
    # The history goes on, and so does the loss, from where it was.
    assert clf.n_iter_ == 4 and clf.loss_curve_[:3] == first_losses
    assert clf.loss_curve_[-1] < first_losses[0]


def test_warm_start_takes_new_training_settings_and_rebuilds_for_new_shapes():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST, warm_start=True, lr_schedule=None).fit(X, y)
    clf.set_params(lr=0.05, optimizer="sgd", batch_size=7, dropout=0.5)
    clf.fit(X, y)
    assert clf.n_iter_ == 6
    assert clf.net_.optimizer_.param_groups[0]["lr"] == 0.05
    assert type(clf.net_.optimizer_).__name__ == "SGD"
    assert clf.net_.batch_size == 7
    assert clf.net_.module_.dropout.p == 0.5
    clf.set_params(hidden_size=5)
    with pytest.warns(UserWarning, match=r"hidden_size \(16 -> 5\).*from scratch"):
        clf.fit(X, y)
    assert clf.n_iter_ == 3
    assert clf.net_.module_.rnn.hidden_size == 5


def test_set_params_after_fit_leaves_predictions_alone():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST).fit(X, y)
    proba = clf.predict_proba(X)
    clf.set_params(output_mode="sequence", precision="64", hidden_size=3)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    assert clf.predict(X).shape == (len(X),)


def test_partial_fit_needs_classes_first_then_trains_one_epoch_per_call():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:40], y[:40], classes=["down", "up"])
    clf.partial_fit(X[40:], y[40:])
    assert clf.n_iter_ == 2
    np.testing.assert_array_equal(clf.classes_, ["down", "up"])
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X[:5], np.array(["left"] * 5))


def test_gradient_clip_and_schedules_train():
    X, y = make_classification_sequences()
    for options in (
        dict(gradient_clip=0.5),
        dict(lr_schedule="cosine"),
        dict(lr_schedule="plateau"),
        dict(optimizer="sgd", lr=0.05),
        dict(optimizer="adamw", weight_decay=0.01),
        dict(optimizer="rmsprop"),
    ):
        clf = LSTMClassifier(**FAST, **options).fit(X, y)
        assert np.isfinite(clf.loss_curve_).all(), options


def test_partial_fit_works_with_early_stopping_set():
    X, y = make_classification_sequences()
    clf = LSTMClassifier(**FAST, early_stopping=True)
    clf.partial_fit(X, y, classes=["down", "up"])
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 2
    clf.set_params(warm_start=True).fit(X, y)
    assert clf.validation_scores_ is not None


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("output_mode", ["last", "sequence"])
def test_predict_log_proba_is_the_log_of_predict_proba(output_mode, ragged):
    if ragged:
        X, labels = make_ragged_sequences(n_samples=30, max_length=12)
    else:
        X, labels = make_classification_sequences(n_samples=30)
    y = labels
    if output_mode == "sequence":
        y = [np.full(len(x), label) for x, label in zip(X, labels, strict=True)]
    clf = LSTMClassifier(**FAST, output_mode=output_mode).fit(X, y)
    proba, log_proba = clf.predict_proba(X), clf.predict_log_proba(X)
    if isinstance(proba, list):
        assert len(log_proba) == len(proba)
        proba, log_proba = np.concatenate(proba), np.concatenate(log_proba)
    assert log_proba.shape == proba.shape
    np.testing.assert_allclose(np.exp(log_proba), proba, rtol=1e-10, atol=1e-12)


def test_predict_log_proba_stays_finite_where_a_probability_underflows():
    X, y = make_classification_sequences(n_samples=30)
    clf = LSTMClassifier(**FAST).fit(X, y)
    with torch.no_grad():
        # Logits 1000 apart: the smaller class's probability is 0 in float64.
        clf.net_.module_.head.weight.zero_()
        clf.net_.module_.head.bias.copy_(torch.tensor([1000.0, 0.0]))
    assert (clf.predict_proba(X)[:, 1] == 0).all()
    log_proba = clf.predict_log_proba(X)
    assert np.isfinite(log_proba).all()
    np.testing.assert_allclose(log_proba[:, 1], -1000.0)

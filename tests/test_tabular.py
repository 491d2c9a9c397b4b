"""Tabular sequences: categorical steps, static attributes, gaps, times."""

import io

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

import sklstm
from sklstm import LSTMClassifier, LSTMRegressor, SequenceFrame, from_long_format

FAST = dict(hidden_size=8, conv_filters=None, max_epochs=3, random_state=0)


def transactions(n_accounts=60, seed=0, n_merchants=300):
    """A long table of transactions and a label per account.

    The label is 1 when the account's last transactions include a
    "gambling" merchant code and the customer is not a "premium" one, so it
    depends on categorical events, their order and a static attribute.
    """
    rng = np.random.RandomState(seed)
    merchants = np.array([f"m{i:03d}" for i in range(n_merchants)])
    rows, labels = [], []
    for account in range(n_accounts):
        n = rng.randint(4, 15)
        codes = rng.choice(merchants, size=n)
        if rng.rand() < 0.5:
            codes[-1] = "m007"  # the "gambling" code
        segment = rng.choice(["premium", "basic"])
        times = pd.Timestamp("2026-01-01") + pd.to_timedelta(
            np.cumsum(rng.exponential(36, n)), unit="h"
        )
        amount = rng.gamma(2.0, 30.0, n)
        amount[rng.rand(n) < 0.15] = np.nan
        for step in range(n):
            rows.append(
                dict(
                    account_id=account,
                    timestamp=times[step],
                    amount=amount[step],
                    merchant_category=codes[step],
                    channel=rng.choice(["web", "shop", "phone"]),
                    segment=segment,
                )
            )
        labels.append(int("m007" in codes[-2:] and segment == "basic"))
    table = pd.DataFrame(rows)
    table["channel"] = table["channel"].astype("category")
    # Rows as a database would return them: not grouped, not in time order.
    table = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return table, pd.Series(labels, name="label")


@pytest.fixture(scope="module")
def story():
    table, labels = transactions()
    X, ids = from_long_format(
        table, id_column="account_id", time_column="timestamp", as_frame=True
    )
    return X, labels.to_numpy()[ids]


def test_the_user_story(story, tmp_path):
    # A transactions table with gaps, strings and categories goes in as it
    # is: no manual encoding, imputation or broadcasting.
    X, y = story
    clf = LSTMClassifier(static_features=["segment"], **FAST)
    scores = cross_val_score(clf, X, y, cv=3)
    assert len(scores) == 3
    search = GridSearchCV(clf, {"hidden_size": [4, 8]}, cv=2).fit(X, y)
    assert search.best_params_["hidden_size"] in (4, 8)

    clf.fit(X[:40], y[:40])
    assert [len(c) for c in clf.categories_][1:] == [3, 2]  # channel, segment
    assert clf._layout["static_categorical"] == [3]
    assert clf._layout["time_deltas"]
    new_table, _ = transactions(n_accounts=5, seed=1)
    new_table["merchant_category"] = "never-seen"
    new_X, _ = from_long_format(
        new_table, id_column="account_id", time_column="timestamp", as_frame=True
    )
    assert clf.predict(new_X).shape == (5,)

    path = tmp_path / "model.sklstm"
    clf.save(path)
    loaded = sklstm.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    for mine, theirs in zip(loaded.categories_, clf.categories_, strict=True):
        assert mine.tolist() == theirs.tolist()


def test_splitters_cut_a_sequence_frame_by_sequence(story):
    X, y = story
    for train, _ in KFold(3).split(X, y):
        part = X[train]
        assert isinstance(part, SequenceFrame)
        assert len(part) == len(train)
        assert part.lengths.tolist() == X.lengths[train].tolist()
        first = X[int(train[0])]
        pd.testing.assert_frame_equal(
            part[0].reset_index(drop=True), first.reset_index(drop=True)
        )


def test_list_of_frames_matches_the_sequence_frame(story):
    X, y = story
    frames = X.to_frames()
    assert isinstance(frames[0].index, pd.DatetimeIndex)
    clf = LSTMClassifier(static_features=["segment"], **FAST)
    from_frames = clf.fit(frames, y).predict_proba(frames)
    from_compact = clf.fit(X, y).predict_proba(X)
    np.testing.assert_allclose(from_frames, from_compact, atol=1e-6)


def test_codes_are_integers_and_unknown_categories_share_a_code():
    X = [np.array(["a", "b", "a", "c"]), np.array(["b", "b"]), np.array(["a"])] * 4
    y = np.array([0, 1, 0] * 4)
    clf = LSTMClassifier(categorical_features=[0], min_frequency=5, **FAST).fit(X, y)
    # "c" is seen 4 times, under min_frequency: it trains the unknown code.
    assert clf.categories_[0].tolist() == ["a", "b"]
    sequences = clf._validated_sequences([np.array(["a", "zzz", "c", None])])
    assert sequences.codes.dtype == np.int64
    assert sequences.codes[:, 0].tolist() == [2, 0, 0, 1]
    assert sequences.steps.shape == (4, 0)  # no numeric feature at all
    clf.predict([np.array(["zzz", "yyy"])])


def test_integer_tokens_with_categorical_features():
    rng = np.random.RandomState(0)
    X = [rng.randint(0, 20, size=rng.randint(3, 9)) for _ in range(40)]
    y = np.array([int(5 in x) for x in X])
    clf = LSTMClassifier(categorical_features=[0], **FAST).fit(X, y)
    assert clf.categories_[0].tolist() == sorted({int(v) for x in X for v in x})
    assert clf.predict(X).shape == (40,)


def test_missing_numbers_are_imputed_and_flagged():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 6, 2)).astype(np.float32)
    X[::4, 2, 1] = np.nan
    y = (np.nan_to_num(X[:, :, 0]).sum(axis=1) > 0).astype(int)
    clf = LSTMClassifier(**FAST).fit(X, y)
    module = clf.net_.module_
    assert module.missing_indicators == (1,)
    # Statistics learned in fit skip the missing values.
    expected = np.nanmean(X[:, :, 1].astype(np.float64))
    np.testing.assert_allclose(module.feature_mean[1].item(), expected, rtol=1e-5)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()
    assert clf.__sklearn_tags__().input_tags.allow_nan
    with pytest.raises(ValueError, match="infinity"):
        clf.predict(np.where(np.isnan(X), np.inf, X))


def test_padding_never_changes_a_prediction_with_categories_and_statics(story):
    X, y = story
    for output_mode in ("last", "sequence"):
        clf = LSTMClassifier(
            static_features=["segment"],
            output_mode=output_mode,
            **{**FAST, "conv_filters": (4,), "bidirectional": True},
        )
        targets = (
            y
            if output_mode == "last"
            else [np.full(n, label) for n, label in zip(X.lengths, y, strict=True)]
        )
        clf.fit(X, targets)
        together = clf.predict_proba(X)
        for position in (0, 7, 21):
            alone = clf.predict_proba(X[[position]])
            np.testing.assert_allclose(
                np.asarray(alone[0]), np.asarray(together[position]), atol=1e-5
            )


def test_regressor_and_partial_fit_take_tabular_input(story):
    X, y = story
    target = y + X.lengths / 10
    reg = LSTMRegressor(static_features=["segment"], **FAST).fit(X, target)
    assert reg.predict(X).shape == (len(X),)
    clf = LSTMClassifier(static_features=["segment"], **FAST)
    clf.partial_fit(X[:30], y[:30], classes=[0, 1])
    clf.partial_fit(X[30:], y[30:])
    assert clf.n_iter_ == 2


def test_static_features_that_vary_are_refused_by_name(story):
    X, y = story
    with pytest.raises(ValueError, match="'channel'.*varies within sequence"):
        LSTMClassifier(static_features=["channel"], **FAST).fit(X, y)


def test_columns_changed_after_fit_are_named(story):
    X, y = story
    clf = LSTMClassifier(static_features=["segment"], **FAST).fit(X, y)
    frames = X.to_frames()
    renamed = [f.rename(columns={"amount": "value"}) for f in frames]
    with pytest.raises(ValueError, match=r"unknown: \['value'\]"):
        clf.predict(renamed)
    retyped = [f.assign(amount=f["amount"].astype(str)) for f in frames]
    with pytest.raises(ValueError, match="'amount'.*numeric during fit"):
        clf.predict(retyped)
    with pytest.raises(ValueError, match="time_deltas"):
        clf.predict([f.reset_index(drop=True) for f in frames])


def test_string_columns_are_never_read_as_numbers():
    X = [np.array([["1.5", 2.0], ["2.5", 1.0]], dtype=object)] * 6
    y = np.array([0, 1] * 3)
    with pytest.raises(ValueError, match="categorical_features does not name"):
        LSTMClassifier(categorical_features=[1], **FAST).fit(X, y)
    clf = LSTMClassifier(**FAST).fit(X, y)  # "from_dtype": column 0 is a category
    assert clf.categories_[0].tolist() == ["1.5", "2.5"]


def test_onnx_export_of_categorical_input_is_refused_clearly(story, tmp_path):
    X, y = story
    clf = LSTMClassifier(static_features=["segment"], **FAST).fit(X, y)
    with pytest.raises(ValueError, match="categorical or static"):
        clf.to_onnx(tmp_path / "model.onnx")


def test_save_load_keeps_a_token_model(tmp_path):
    X = [np.array(list("hello")), np.array(list("world")), np.array(list("help"))] * 4
    y = np.array([0, 1, 0] * 4)
    clf = LSTMClassifier(**FAST).fit(X, y)
    buffer = io.BytesIO()
    clf.save(buffer)
    loaded = sklstm.load(io.BytesIO(buffer.getvalue()))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_a_static_attribute_alone_is_learned_at_the_default_lr():
    # The label is the segment: a static feature must carry it through the
    # network as readily as a step feature would.
    rng = np.random.RandomState(0)
    frames, y = [], []
    for _ in range(300):
        segment = rng.choice(["a", "b", "c"])
        n = rng.randint(5, 20)
        frames.append(pd.DataFrame({"x": rng.normal(size=n), "segment": segment}))
        y.append(int(segment == "a"))
    clf = LSTMClassifier(
        static_features=["segment"], conv_filters=None, max_epochs=15, random_state=0
    ).fit(frames, np.array(y))
    assert clf.score(frames, np.array(y)) == 1.0


def test_booleans_are_numbers_in_arrays_and_categories_in_frames():
    rng = np.random.RandomState(0)
    arrays = [rng.rand(rng.randint(3, 8), 2) > 0.5 for _ in range(20)]
    y = np.array([0, 1] * 10)
    clf = LSTMClassifier(**FAST).fit(arrays, y)
    assert not hasattr(clf, "categories_")
    tokens = []
    for a in arrays:
        token = np.empty((len(a), 2), dtype=object)
        token[:, 0], token[:, 1] = a[:, 0], "x"
        tokens.append(token)
    clf = LSTMClassifier(categorical_features=[1], **FAST).fit(tokens, y)
    assert clf._layout["numeric"] == [0]
    frames = [
        pd.DataFrame({"flag": a[:, 0], "v": a[:, 1].astype(float)}) for a in arrays
    ]
    clf = LSTMClassifier(**FAST).fit(frames, y)
    assert clf.categories_[0].tolist() == [False, True]

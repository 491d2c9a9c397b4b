"""scikit-learn's estimator checks, on both estimators with default parameters."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklstm import LSTMClassifier, LSTMRegressor

# Repeating a sample and doubling its weight are equivalent in exact
# arithmetic, and these checks demand agreement to 1e-7. Mini-batch training
# in float32 cannot give that: measured on a small LSTM, weighted and repeated
# fits end 1e-2 apart in float32 (1e-11 in float64). Nothing else is expected
# to fail.
_WEIGHT_EQUIVALENCE = (
    "weighted and repeated fits agree only to ~1e-2 in float32 mini-batch "
    "training (1e-11 in float64); the check demands 1e-7"
)
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": _WEIGHT_EQUIVALENCE,
}


@parametrize_with_checks(
    [LSTMClassifier(), LSTMRegressor()],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

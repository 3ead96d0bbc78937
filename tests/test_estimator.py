"""fastnn.MLPClassifier: scikit-learn's estimator checks and the usual workflows."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastnn import MLPClassifier
from fastnn.estimator import EXPECTED_FAILED_CHECKS

# Every test here runs once per kernel set (numpy, numba).
pytestmark = pytest.mark.usefixtures("kernels")


def expected_failed(estimator):
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks([MLPClassifier(random_state=0, epochs=30, hidden_layer_sizes=(32,))],
                         expected_failed_checks=expected_failed)
def test_sklearn_estimator_checks(estimator, check, monkeypatch):
    # check_array_api_input skips itself unless this is set; with it, it runs (numpy namespace).
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def test_string_labels_and_score(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])[y]
    clf = MLPClassifier(epochs=20, random_state=0).fit(X[:1400], names[:1400])
    assert list(clf.classes_) == sorted(set(names))
    assert clf.predict(X[1400:]).dtype == names.dtype
    assert clf.score(X[1400:], names[1400:]) > 0.9
    assert clf.predict_proba(X[:3]).shape == (3, 10)


def test_dataframe_feature_names(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    clf = MLPClassifier(epochs=2, random_state=0).fit(frame, y)
    assert list(clf.feature_names_in_) == list(frame.columns) and clf.n_features_in_ == 64


def test_pipeline_gridsearch_and_cross_val(digits):
    X, y = digits
    pipe = make_pipeline(MinMaxScaler(), MLPClassifier(epochs=15, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.85
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(16,), (64,)]}, cv=2)
    grid.fit(X, y)
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] in [(16,), (64,)]
    assert grid.score(X, y) > 0.85


def test_partial_fit_learns_and_needs_classes(digits):
    X, y = digits
    clf = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be given"):
        clf.partial_fit(X[:100], y[:100])
    clf.partial_fit(X[:200], y[:200], classes=np.arange(10))
    first = clf.score(X[1400:], y[1400:])
    for _ in range(15):
        clf.partial_fit(X[:1400], y[:1400])
    assert clf.score(X[1400:], y[1400:]) > max(first, 0.85)
    assert len(clf.history_.epoch) == 16


def test_early_stopping_and_pickle_round_trip(digits):
    X, y = digits
    clf = MLPClassifier(epochs=200, early_stopping=True, random_state=0).fit(X, y)
    assert len(clf.history_.epoch) < 200  # it stopped
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    restored.partial_fit(X, y)  # the optimizer is still bound to the restored weights
    assert not np.array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_same_random_state_same_model(digits):
    X, y = digits
    a = MLPClassifier(epochs=3, random_state=5).fit(X, y)
    b = MLPClassifier(epochs=3, random_state=5).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))

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


# ---------------------------------------------------------- scikit-learn parity
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fitted_attributes_of_sklearns_mlpclassifier(digits):
    from sklearn.neural_network import MLPClassifier as SkMLP

    X, y = digits
    ours = MLPClassifier(hidden_layer_sizes=(16, 8), epochs=4, random_state=0).fit(X, y)
    theirs = SkMLP(hidden_layer_sizes=(16, 8), max_iter=4, random_state=0).fit(X, y)
    for name in ("n_iter_", "loss_curve_", "best_loss_", "validation_scores_",
                 "best_validation_score_", "coefs_", "intercepts_", "n_layers_", "n_outputs_",
                 "out_activation_", "t_", "loss_"):
        assert hasattr(ours, name), name
        assert hasattr(theirs, name), name
    assert ours.n_iter_ == 4 and len(ours.loss_curve_) == 4 and ours.t_ == 4 * len(X)
    assert ours.loss_ == ours.loss_curve_[-1] and ours.best_loss_ == min(ours.loss_curve_)
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in theirs.intercepts_]
    assert ours.n_layers_ == theirs.n_layers_ == 4 and ours.n_outputs_ == 10
    assert ours.validation_scores_ is None and ours.best_validation_score_ is None
    stopped = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, early_stopping=True,
                            random_state=0).fit(X, y)
    assert len(stopped.validation_scores_) == 3 and stopped.best_loss_ is None
    assert stopped.best_validation_score_ == max(stopped.validation_scores_)


def test_predict_log_proba_and_logistic(digits):
    X, y = digits
    est = MLPClassifier(hidden_layer_sizes=(16,), activation="logistic", epochs=2,
                        random_state=0).fit(X, y)
    assert est.network_.activation == "sigmoid"
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X[:20])), est.predict_proba(X[:20]))


def test_warm_start_continues_from_the_fitted_weights(digits):
    X, y = digits
    warm = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, warm_start=True, random_state=0)
    warm.fit(X, y)
    first = warm.network_.params.flat.copy()
    network = warm.network_
    warm.fit(X, y)
    assert warm.network_ is network  # the same network, trained further
    assert warm.loss_curve_[0] < 0.9 * MLPClassifier(hidden_layer_sizes=(16,), epochs=3,
                                                     random_state=0).fit(X, y).loss_curve_[0]
    assert not np.array_equal(first, warm.network_.params.flat) and warm.t_ == 6 * len(X)
    cold = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0).fit(X, y)
    net = cold.network_
    cold.fit(X, y)
    assert cold.network_ is not net


@pytest.mark.parametrize("params, fragment", [
    ({"learning_rate": "adaptive"}, "learning_rate must be a number"),
    ({"epsilon": -1.0}, "epsilon must be > 0"),
    ({"activation": "softplus"}, "activation must be one of"),
])
def test_errors_name_the_estimators_parameter(digits, params, fragment):
    X, y = digits
    with pytest.raises(ValueError, match=fragment) as info:
        MLPClassifier(hidden_layer_sizes=(4,), epochs=1, **params).fit(X, y)
    assert " lr " not in str(info.value) and " eps " not in str(info.value)


def test_fit_keeps_to_a_threadpool_limit(monkeypatch):
    """Inside threadpool_limits(1) (what a joblib worker of GridSearchCV(n_jobs=2) runs
    under) the threads seen during training (BLAS's, and a team's splitting the compiled
    step) stay at 1."""
    import threading

    from threadpoolctl import threadpool_info, threadpool_limits

    import fastnn.train

    seen = []
    epoch = fastnn.train._Loop.epoch

    def spy(self, *args):
        blas = min(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        team = sum(t.name.startswith("fastnn-team") for t in threading.enumerate())
        seen.append(blas + team)
        return epoch(self, *args)

    monkeypatch.setattr(fastnn.train._Loop, "epoch", spy)
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 784)), rng.integers(0, 3, 300)
    est = MLPClassifier(hidden_layer_sizes=(256,), batch_size=256, epochs=1, random_state=0)
    with threadpool_limits(1, user_api="blas"):
        est.fit(X, y)
    assert seen == [1]
    if fastnn._threads.available_cpus() >= 2:  # the control: unlimited, this net takes two
        seen.clear()
        with threadpool_limits(2, user_api="blas"):
            est.fit(X, y)
        assert seen == [2]


def test_from_model_wraps_a_cli_model(tmp_path, capsys):
    from test_cli import run
    from test_user_data import blobs, write_csv

    X, y = blobs()
    names = np.array(["a", "b", "c"])[y]
    path = write_csv(tmp_path / "d.csv", X, names)
    model = tmp_path / "m.npz"
    assert run(["train", "-d", str(path), "-e", "4", "-nhl", "1", "-sz", "16", "-lr", "0.01",
                "--no-progress", "--save", str(model)], capsys)[0] == 0
    est = MLPClassifier.from_model(model)
    assert list(est.classes_) == ["a", "b", "c"] and est.n_features_in_ == 6
    assert est.score(X, names) > 0.9  # raw features: the stored standardisation is applied
    printed = run(["predict", str(model), str(path), "--top", "1"], capsys)[1].splitlines()
    assert list(est.predict(X)) == [line.split(": ")[1].split()[0] for line in printed]
    assert len(est.loss_curve_) == 4 and est.n_layers_ == 3

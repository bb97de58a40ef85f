"""fastbp's estimators against scikit-learn's: the estimator checks, equal weights, accuracy, errors."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastbp
from fastbp import MLPClassifier, MLPRegressor

SETTINGS = [
    {"solver": "sgd", "max_iter": 50},
    {"solver": "adam"},
    {"solver": "lbfgs"},
    {"early_stopping": True},
]

# Checks scikit-learn's own MLP fails at the same setting (measured with check_estimator on scikit-learn 1.9).
EARLY_STOPPING_FAILURES = {
    "check_fit_score_takes_y": "partial_fit refuses early_stopping=True (as scikit-learn)",
    "check_n_features_in_after_fitting": "partial_fit refuses early_stopping=True (as scikit-learn)",
    "check_estimators_partial_fit_n_features": "partial_fit refuses early_stopping=True (as scikit-learn)",
    "check_estimators_nan_inf": "the tiny check data cannot hold a validation split (as scikit-learn)",
    "check_fit2d_1feature": "the tiny check data cannot hold a validation split (as scikit-learn)",
    "check_classifiers_one_label": "a stratified split needs two classes (as scikit-learn)",
    # fastbp-only (scikit-learn's MLP has no class_weight): 45 training rows are one Adam step per epoch, and
    # with weights 1000 : 0.0001 the weighted validation accuracy does not move in n_iter_no_change=20 steps,
    # so the first epoch is kept; without early stopping the same check passes (predicts class 0 everywhere).
    "check_class_weight_classifiers": "tiny data: early stopping ends before the class weights take effect",
    "check_regressors_no_decision_function": "the tiny check data cannot hold a validation split (as scikit-learn)",
    "check_sample_weight_equivalence_on_dense_data": (
        "repeating rows changes the validation split, so weights and repeats see different data (scikit-learn "
        "fails it too with random_state=0)"
    ),
    "check_sample_weight_equivalence_on_sparse_data": "the same, for sparse input (as scikit-learn)",
}
LBFGS_FAILURES = {
    "check_classifiers_multilabel_output_format_predict_proba": (
        "lbfgs fits the tiny data until probabilities saturate to exactly 0 or 1 in float64 (as scikit-learn)"
    ),
}


def expected_failures(estimator):
    if estimator.early_stopping:
        return EARLY_STOPPING_FAILURES
    if estimator.solver == "lbfgs" and isinstance(estimator, MLPClassifier):
        return LBFGS_FAILURES
    return {}


@parametrize_with_checks(
    [Est(random_state=0, **kw) for kw in SETTINGS for Est in (MLPClassifier, MLPRegressor)],
    expected_failed_checks=expected_failures,
)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


SGD_VARIANTS = [
    {"solver": "sgd", "momentum": 0.0},
    {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": False},
    {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True},
    {"solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.1},
    {"solver": "sgd", "learning_rate": "adaptive", "n_iter_no_change": 2, "tol": 10.0},
    {"solver": "adam"},
    {"solver": "adam", "shuffle": True, "batch_size": 37},
    {"solver": "sgd", "early_stopping": True, "shuffle": True, "n_iter_no_change": 100},
    {"solver": "adam", "early_stopping": True, "n_iter_no_change": 100},
]


@pytest.mark.parametrize("params", SGD_VARIANTS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_weights_match_scikit_learn(params, weighted):
    """Same seed: same initial weights, batches and steps; weights agree to 1e-6 after several epochs."""
    X, y = digits()
    X, y = X[:500], y[:500]
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y)) if weighted else None
    kw = {"hidden_layer_sizes": (20, 15), "alpha": 0.01, "max_iter": 6, "random_state": 3, "shuffle": False}
    kw.update(params)
    theirs_kw = dict(kw)
    if "n_iter_no_change" in kw:  # scikit-learn waits one epoch more than it says (fixed here, see module doc)
        theirs_kw["n_iter_no_change"] = kw["n_iter_no_change"] - 1
    ours, theirs = MLPClassifier(**kw), SkClassifier(**theirs_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y, sample_weight=w)
        theirs.fit(X, y, sample_weight=w)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.t_ == theirs.t_


@pytest.mark.parametrize(
    "Ours, Theirs, kw",
    [
        (MLPClassifier, SkClassifier, {}),
        (MLPRegressor, SkRegressor, {"loss": "poisson"}),
    ],
)
def test_lbfgs_reaches_scikit_learn_loss(Ours, Theirs, kw):
    X, y = digits()
    if Ours is MLPRegressor:
        y = (y % 4).astype(float)
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    args = {"solver": "lbfgs", "hidden_layer_sizes": (10,), "max_iter": 30, "random_state": 0, "alpha": 0.1, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = Ours(**args).fit(X, y, sample_weight=w)
        theirs = Theirs(**args).fit(X, y, sample_weight=w)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)


def test_regressor_weights_match_scikit_learn_single_output():
    X, y = make_regression(300, 8, noise=1.0, random_state=0)
    y = y / y.std()
    kw = {"solver": "sgd", "learning_rate_init": 0.01, "max_iter": 5, "random_state": 2, "hidden_layer_sizes": (9,)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPRegressor(**kw).fit(X, y), SkRegressor(**kw).fit(X, y)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("load", [load_digits, load_breast_cancer])
def test_accuracy_matches_scikit_learn(load):
    X, y = load(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    scores = []
    for Est in (MLPClassifier, SkClassifier):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores.append(Est((64,), max_iter=60, random_state=0).fit(X_train, y_train).score(X_test, y_test))
    assert abs(scores[0] - scores[1]) <= 0.005, scores


def test_pipeline_grid_search_cross_validation_pickle_clone():
    X, y = digits()
    X, y = X[:400], y[:400]
    pipe = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=100, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=2, n_jobs=2).fit(X, y)
        scores = cross_val_score(pipe, X, y, cv=3)
    assert search.best_score_ > 0.8 and scores.mean() > 0.8
    model = search.best_estimator_
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
    fresh = clone(model)
    assert not hasattr(fresh[-1], "coefs_") and fresh.get_params()["mlpclassifier__alpha"] == model[-1].alpha


def test_float32_stays_float32_and_float64_by_default():
    X, y = digits()
    clf = MLPClassifier((8,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X.astype(np.float32), y)
        assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)
        assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32
        clf.fit(X.astype(np.int64), y)
    assert all(c.dtype == np.float64 for c in clf.coefs_)


def test_assigned_coefs_are_used_by_predict_and_partial_fit():
    X, y = digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier((10,), max_iter=3, random_state=0).fit(X, y)
        b = MLPClassifier((10,), max_iter=3, random_state=1).fit(X, y)
    a.coefs_ = [c.copy() for c in b.coefs_]
    a.intercepts_ = [c.copy() for c in b.intercepts_]
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    before = [c.copy() for c in a.coefs_]
    a.partial_fit(X, y)
    assert a._network().params.base is None  # one flat buffer again, rebuilt from the assigned arrays
    assert not np.array_equal(a.coefs_[0], before[0])
    assert np.abs(a.coefs_[0] - before[0]).max() < 0.1  # one small epoch from b's weights, not from a's


def test_multilabel_binary_string_labels_multioutput():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    Y = (X[:, :3] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((20,), max_iter=200, random_state=0).fit(X, Y)
        assert clf.predict(X).shape == (120, 3) and (clf.predict(X) == Y).mean() > 0.85
        labels = np.where(X[:, 0] > 0, "yes", "no")
        clf = MLPClassifier((20,), max_iter=200, random_state=0).fit(X, labels)
        assert set(clf.predict(X)) <= {"yes", "no"} and clf.score(X, labels) > 0.9
        np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1)
        reg = MLPRegressor(hidden_layer_sizes=(20,), max_iter=300, random_state=0).fit(X, X[:, :2] * 2)
        assert reg.predict(X).shape == (120, 2) and reg.score(X, X[:, :2] * 2) > 0.9


def test_early_stopping_stops_after_exactly_n_iter_no_change():
    """scikit-learn waits n_iter_no_change + 1 epochs; fastbp stops after n_iter_no_change (documented fix)."""
    X, y = digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((10,), early_stopping=True, n_iter_no_change=3, tol=10.0, random_state=0).fit(X, y)
        sk = SkClassifier((10,), early_stopping=True, n_iter_no_change=3, tol=10.0, random_state=0).fit(X, y)
    # with tol=10 only the first epoch improves (on -inf): 1 + 3 epochs here, 1 + 4 in scikit-learn
    assert clf.n_iter_ == 4 and sk.n_iter_ == 5
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_multi_output_lbfgs_loss_and_gradient_agree():
    """scikit-learn #8349: its multi-output squared-error gradient is not its loss's. Here they agree."""
    X, Y = make_regression(50, 4, n_targets=3, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y / 100)
    net = reg._network()
    Yn = (Y / 100).astype(np.float64)
    loss, grad = net.loss_and_gradients(X, Yn, alpha=reg.alpha)
    i, h = 3, 1e-6
    net.params[i] += h
    up = net.loss_and_gradients(X, Yn, alpha=reg.alpha)[0]
    net.params[i] -= 2 * h
    down = net.loss_and_gradients(X, Yn, alpha=reg.alpha)[0]
    net.params[i] += h
    assert grad[i] == pytest.approx((up - down) / (2 * h), rel=1e-6)


BAD_INPUTS = [
    ("nan in X", lambda X, y: (np.where(X == X[0, 0], np.nan, X), y), {}),
    ("inf in X", lambda X, y: (np.where(X == X[0, 0], np.inf, X), y), {}),
    ("1-D X", lambda X, y: (X[:, 0], y), {}),
    ("empty X", lambda X, y: (X[:0], y[:0]), {}),
    ("complex X", lambda X, y: (X + 1j, y), {}),
    ("continuous y", lambda X, y: (X, y + 0.5), {"classifier_only": True}),
    ("wrong weight shape", lambda X, y: (X, y), {"sample_weight": np.ones(3)}),
]


@pytest.mark.parametrize("name, mutate, extra", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_scikit_learn_errors(name, mutate, extra):
    X, y = digits()
    X, y = mutate(X[:50].copy(), y[:50].astype(float))
    sw = extra.get("sample_weight")
    if np.isscalar(sw):
        sw = np.full(len(y), sw)
    pairs = [(MLPClassifier, SkClassifier)]
    if not extra.get("classifier_only"):
        pairs.append((MLPRegressor, SkRegressor))
    for Ours, Theirs in pairs:
        with pytest.raises(Exception) as theirs:
            Theirs(max_iter=1).fit(X, y, sample_weight=sw)
        with pytest.raises(type(theirs.value)) as ours:
            Ours(max_iter=1).fit(X, y, sample_weight=sw)
        assert str(ours.value) == str(theirs.value)


def test_other_bad_inputs():
    X, y = digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((5,), max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :10])
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson").fit(X, -np.ones(len(X)))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier((5, 0)).fit(X, y)
    with pytest.raises(ValueError, match="learning_rate_init"):
        MLPClassifier(learning_rate_init=0).fit(X, y)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y + 20)
    with pytest.raises(AttributeError, match="partial_fit"):
        MLPRegressor(solver="lbfgs").partial_fit(X, y)
    # scikit-learn accepts these silently; a negative or all-zero weight is a mistake, not a weighting
    with pytest.raises(ValueError, match="[Nn]egative"):
        MLPClassifier().fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="zero"):
        MLPClassifier().fit(X, y, sample_weight=np.zeros(len(y)))


def test_divergence_raises_and_keeps_finite_weights():
    X, y = digits()
    reg = MLPRegressor(
        hidden_layer_sizes=(20,),
        activation="identity",
        solver="sgd",
        learning_rate_init=1.0,
        max_iter=20,
        random_state=0,
    )
    with pytest.raises(fastbp.DivergenceError, match="non-finite"):
        reg.fit(X * 100, y * 1e3)
    assert all(np.isfinite(c).all() for c in reg.coefs_)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_sparse_input_gives_the_dense_model(fmt, solver):
    """Sparse X goes through a compiled sparse x dense first layer (never densified), same result as dense."""
    import scipy.sparse

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 30)) * (rng.random((120, 30)) < 0.2)
    y = (X[:, :3].sum(axis=1) > 0).astype(int)
    kw = {"hidden_layer_sizes": (7,), "solver": solver, "max_iter": 5, "random_state": 0, "batch_size": 16}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**kw).fit(X, y)
        sparse = MLPClassifier(**kw).fit(scipy.sparse.csr_matrix(X).asformat(fmt), y)
    for a, b in zip(dense.coefs_, sparse.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dense.predict_proba(X), sparse.predict_proba(scipy.sparse.csr_matrix(X)), rtol=1e-9)


def test_adaptive_schedule_reacts_to_stalling_not_to_an_old_best():
    """scikit-learn #15596: after a spike, a recovering loss must not cut the learning rate."""
    clf = MLPClassifier(solver="sgd", learning_rate="adaptive", n_iter_no_change=2, tol=0.01)
    clf._optimizer = fastbp.SGD(learning_rate=0.1)
    clf.loss_curve_, clf.best_loss_, clf._no_improvement_count, clf.n_iter_, clf.loss_ = [], np.inf, 0, 0, 0.0
    clf.history_ = []
    for loss in [1.0, 2.0, 1.9, 1.8, 1.7]:  # a spike, then steady recovery (scikit-learn would divide by 5)
        clf.loss_curve_.append(loss)
        assert clf._end_of_epoch(None, 1.0, 10, 0.1) is False
    assert clf._optimizer.learning_rate == 0.1
    for loss in [1.7, 1.7]:  # two stalled epochs: now the rate drops
        clf.loss_curve_.append(loss)
        clf._end_of_epoch(None, 1.0, 10, 0.1)
    assert clf._optimizer.learning_rate == pytest.approx(0.02)


@pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_accuracy_matches_scikit_learn():
    from fastbp.datasets import load_fashion_mnist

    X, y, X_test, y_test = load_fashion_mnist(download=False)
    X, y, X_test = X[:20000].astype(np.float64), y[:20000], X_test.astype(np.float64)
    scores = []
    for Est in (MLPClassifier, SkClassifier):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores.append(Est((64,), max_iter=5, random_state=0).fit(X, y).score(X_test, y_test))
    assert scores[0] > 0.8 and abs(scores[0] - scores[1]) <= 0.005, scores


@pytest.mark.parametrize(
    "labels",
    [
        np.array([3, 7]),
        np.array(["no", "yes"]),
        np.array([-1, 0, 5]),
        np.array(["a", "b", "c", "d"]),
        np.array(["x", "y", "z"], dtype=object),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_labels_from_outputs_equal_label_binarizer(labels, dtype):
    """predict's decoding (without LabelBinarizer's checks) gives inverse_transform's labels, also for ties,
    NaN rows, outputs exactly at the threshold, one row and no rows."""
    from sklearn.preprocessing import LabelBinarizer

    from fastbp.estimators import _labels_from_outputs

    binarizer = LabelBinarizer().fit(np.tile(labels, 3))
    rng = np.random.default_rng(len(labels))
    k = 1 if len(labels) == 2 else len(labels)
    outputs = rng.random((40, k)).astype(dtype)
    outputs[:8] = np.round(outputs[:8] * 2) / 2  # ties, and exactly 0.5 for binary outputs
    outputs[8] = np.nan
    outputs[9, -1] = np.nan
    if k == 1:
        outputs = outputs.ravel()  # as predict passes a binary model's outputs
    for rows in (slice(None), slice(0, 1), slice(0, 0)):
        expected = binarizer.inverse_transform(outputs[rows])
        got = _labels_from_outputs(binarizer, outputs[rows])
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)

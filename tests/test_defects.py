"""Regression tests for the defects of issue 10 that are not about model files or the CLI.

Each test failed on the code before its fix.
"""

from __future__ import annotations

import sys
import threading
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import fastbp

SOLVERS = ["lbfgs", "sgd", "adam"]


def _data(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] > 0).astype(int)


def test_predict_during_fit_sees_the_old_model_or_the_new_one():
    """A prediction racing fit once left the estimator with its initial weights but a trained loss_."""
    X, y = _data(40)
    kwargs = dict(hidden_layer_sizes=(5,), max_iter=15, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        trained = fastbp.MLPClassifier(**kwargs).fit(X, y).predict_proba(X)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(60):
            clf = fastbp.MLPClassifier(**kwargs)
            seen, stop = [], threading.Event()

            def predict(clf=clf, seen=seen, stop=stop):
                while not stop.is_set():
                    try:
                        seen.append(clf.predict_proba(X))
                    except NotFittedError:
                        pass

            reader = threading.Thread(target=predict)
            reader.start()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(X, y)
            stop.set()
            reader.join()
            np.testing.assert_array_equal(clf.predict_proba(X), trained)
            for proba in seen:  # never a half-trained or half-published model
                np.testing.assert_array_equal(proba, trained)
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.parametrize("estimator", [fastbp.MLPClassifier, fastbp.MLPRegressor])
@pytest.mark.parametrize("solver", SOLVERS)
def test_verbose_prints_one_line_per_iteration_for_every_solver(estimator, solver, capsys):
    """lbfgs with verbose crashed on scipy 1.17 (its intermediate result has no ``nit``)."""
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = estimator(hidden_layer_sizes=(4,), solver=solver, max_iter=5, verbose=True, random_state=0).fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Iteration ")]
    assert len(lines) == model.n_iter_ >= 1
    assert lines[-1].startswith(f"Iteration {model.n_iter_}, loss = {model.loss_:.8f}")


@pytest.mark.parametrize("solver", SOLVERS)
def test_warnings_point_at_the_users_line(solver):
    X, y = _data()
    with pytest.warns(ConvergenceWarning) as caught:
        fastbp.MLPClassifier((4,), solver=solver, max_iter=2, random_state=0).fit(X, y)
    assert [w.filename for w in caught] == [__file__]
    with pytest.warns(UserWarning, match="clipped") as caught:
        fastbp.MLPRegressor(hidden_layer_sizes=(4,), batch_size=500, max_iter=50, random_state=0).partial_fit(X, y)
    assert caught[0].filename == __file__


@pytest.mark.parametrize("sizes", [(4.5,), (4.0,), (np.float64(3),)])
def test_float_hidden_layer_sizes_raise_type_error_like_scikit_learn(sizes):
    from sklearn.neural_network import MLPClassifier

    X, y = _data()
    with pytest.raises(TypeError):
        MLPClassifier(sizes, max_iter=1).fit(X, y)
    with pytest.raises(TypeError, match="hidden_layer_sizes must hold integers"):
        fastbp.MLPClassifier(sizes, max_iter=1).fit(X, y)


def test_hidden_layer_sizes_accept_numpy_integers():
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = fastbp.MLPClassifier(np.array([3, 2]), max_iter=2, random_state=0).fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(3, 3), (3, 2), (2, 1)]


def _same_error(make_sklearn, make_fastbp, X, y, **fit):
    """Both raise the same exception type with the same message."""
    with pytest.raises(Exception) as expected:
        make_sklearn().fit(X, y, **fit)
    with pytest.raises(expected.type) as got:
        make_fastbp().fit(X, y, **fit)
    assert str(got.value) == str(expected.value)


def test_a_mini_batch_of_zero_weights_raises_scikit_learns_error():
    from sklearn.neural_network import MLPClassifier

    X, y = _data(40)
    weights = np.r_[np.zeros(10), np.ones(30)]
    options = dict(batch_size=10, shuffle=False, max_iter=3)
    _same_error(lambda: MLPClassifier(**options), lambda: fastbp.MLPClassifier(**options), X, y, sample_weight=weights)
    net = fastbp.Network((3, 2))
    with pytest.raises(ZeroDivisionError, match="Weights sum to zero"):
        net.loss_and_gradients(X, np.c_[y, 1 - y], np.zeros(40))


def test_empty_validation_fraction_raises_scikit_learns_error():
    from sklearn.neural_network import MLPRegressor

    X, y = _data(40)
    options = dict(early_stopping=True, validation_fraction=0.0, max_iter=3)
    _same_error(lambda: MLPRegressor(**options), lambda: fastbp.MLPRegressor(**options), X, y.astype(float))


@pytest.mark.parametrize("sparse", [False, True])
def test_float32_model_with_float64_input_computes_in_float64(sparse):
    """scikit-learn multiplies float64 X by float32 weights in float64; fastbp rounded X to float32."""
    import scipy.sparse

    from fastbp.reference import ReferenceNetwork

    X, y = _data(50, 4)
    y = np.arange(50) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = fastbp.MLPClassifier((6,), max_iter=5, random_state=0).fit(X.astype(np.float32), y)
    X_in = scipy.sparse.csr_matrix(X) if sparse else X
    proba = clf.predict_proba(X_in)
    reference = ReferenceNetwork(
        [c.astype(np.float64) for c in clf.coefs_], [b.astype(np.float64) for b in clf.intercepts_], ["relu"], "softmax"
    )
    assert proba.dtype == np.float64 and clf.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(proba, reference.forward(X)[-1], rtol=1e-12)
    assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32


def test_float32_targets_that_overflow_the_loss_say_so():
    """Documented difference: scikit-learn keeps y in float64, fastbp computes float32 losses in float32."""
    X, _ = _data(40)
    y = np.random.default_rng(1).normal(size=40) * 1e30
    with pytest.raises(fastbp.DivergenceError, match="float64"):
        fastbp.MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(X.astype(np.float32), y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastbp.MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
    assert np.isfinite(model.loss_) and np.isfinite(model.predict(X)).all()


def test_import_works_where_no_compile_cache_can_be_written(tmp_path):
    """With the package and the user cache folder read-only, ``import fastbp`` raised numba's "no locator"."""
    import os
    import shutil
    import subprocess
    import textwrap
    from pathlib import Path

    package = tmp_path / "site" / "fastbp"
    shutil.copytree(Path(fastbp.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in (package, package / "kernels"):
        (folder / "__pycache__").write_text("not a folder")  # numba cannot create its cache here (even as root)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, so no cache folder can be made below it")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE", "FASTBP_CACHE"))}
    env.update(PYTHONPATH=str(tmp_path / "site"), HOME=str(blocked), XDG_CACHE_HOME=str(blocked / "cache"))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    script = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import numpy as np, fastbp
            net = fastbp.Network((3, 2), "relu", "identity").initialize(0)
            out = net.forward(np.ones((2, 3)))
        print(fastbp.__file__)
        print(sum(type(w.message).__name__ == "CompileCacheWarning" for w in caught))
        print(np.allclose(out, np.ones((2, 3)) @ net.coefs[0] + net.intercepts[0]))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    location, warned, correct = run.stdout.split()
    assert location.startswith(str(package)) and warned == "1" and correct == "True"


def test_warm_start_may_switch_early_stopping_on_and_off():
    """scikit-learn crashes ('NoneType' has no 'append') when a warm start turns early stopping on."""
    X, y = _data(80)
    clf = fastbp.MLPClassifier((4,), max_iter=3, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        clf.set_params(early_stopping=True).fit(X, y)
        assert len(clf.validation_scores_) == clf.n_iter_ == 3 and np.isfinite(clf.best_validation_score_)
        clf.set_params(early_stopping=False).fit(X, y)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 9

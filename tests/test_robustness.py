"""Determinism, concurrency, memory, and the bad-input table of docs/bad-input.md (one test per row)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import fastbp

SCRIPT = textwrap.dedent(
    """
    import hashlib, warnings
    import numpy as np
    from fastbp import MLPClassifier
    from fastbp.datasets import make_mnist_like
    warnings.simplefilter("ignore")
    X, y = make_mnist_like(3000, n_features=64, random_state=0)
    for solver in ("adam", "sgd"):
        clf = MLPClassifier((32, 16), solver=solver, max_iter=3, random_state=7).fit(X, y)
        print(hashlib.sha256(b"".join(c.tobytes() for c in clf.coefs_ + clf.intercepts_)).hexdigest())
    """
)


def test_same_seed_gives_bitwise_identical_weights_across_processes():
    runs = [
        subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300) for _ in range(2)
    ]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout.split()) == 2


def test_predictions_from_eight_threads_match_serial_while_another_model_trains(monkeypatch):
    """The training thread runs the parallel step where the machine has the threads (BLAS held at one thread
    process-wide meanwhile), the serial one under the workqueue layer (the test below)."""
    monkeypatch.setenv("FASTBP_STEP", "auto")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(3000, 20)), rng.integers(0, 4, 3000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastbp.MLPClassifier((32,), max_iter=5, random_state=0).fit(X, y)
    expected = model.predict_proba(X)
    other = fastbp.MLPClassifier((16,), max_iter=20, batch_size=64, random_state=1)  # a parallel-step batch
    results, errors = [], []

    def predict():
        try:
            for _ in range(20):
                results.append(model.predict_proba(X))
        except Exception as error:  # surfaced below
            errors.append(error)

    def train():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            other.fit(X, y)

    threads = [threading.Thread(target=predict) for _ in range(8)] + [threading.Thread(target=train)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(results) == 160
    for result in results:  # equal to rounding: OpenBLAS may split a product differently under contention
        np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-12, atol=1e-15)


def test_concurrent_prediction_and_training_under_the_workqueue_threading_layer():
    """numba's workqueue layer aborts the process when two Python threads launch parallel regions at once;
    under it fastbp trains with the serial step (fastbp.threads.step_parts), so the eight-thread test above must
    pass there too (with the default layer the training thread runs the parallel step)."""
    test = f"{__file__}::test_predictions_from_eight_threads_match_serial_while_another_model_trains"
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout


def _worker_threads(seed):
    """Fit in a joblib worker; report the threads BLAS has there and the parts a small-batch step would use."""
    from threadpoolctl import threadpool_info

    from fastbp.threads import step_parts

    os.environ["FASTBP_STEP"] = "auto"  # the suite's default is serial (conftest); a user's is auto
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(200, 10)), rng.integers(0, 3, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastbp.MLPClassifier((8,), max_iter=2, batch_size=32, random_state=0).fit(X, y)
    blas = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    return blas, step_parts(32, dense=True, dropout=False)


def test_joblib_workers_do_not_oversubscribe_the_cores():
    """GridSearchCV(n_jobs=2) runs fits in loky workers, which limit BLAS to cores // n_jobs threads; a fit
    there uses that many: BLAS's, or as many parts of a parallel step (never more than BLAS was given), so two
    workers use the machine's cores, not twice as many."""
    joblib = pytest.importorskip("joblib")
    cores = os.cpu_count() or 1
    reports = joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(_worker_threads)(s) for s in range(2))
    assert all(2 * max(blas, parts) <= max(cores, 2) and parts <= blas for blas, parts in reports), reports


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_repeated_fits_do_not_grow_memory():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(500, 30)), rng.integers(0, 3, 500)

    def fit_and_predict():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fastbp.MLPClassifier((20,), max_iter=3, random_state=0).fit(X, y).predict_proba(X)

    for _ in range(20):  # warm-up: compilation, caches, allocator pools
        fit_and_predict()
    before = _rss_mb()
    for _ in range(100):
        fit_and_predict()
    assert _rss_mb() - before < 20


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:100] / 16, y[:100]


# One row per line of docs/bad-input.md: (what, call, expected exception, words the message must contain)
BAD_INPUT = [
    ("NaN in X", lambda X, y: fastbp.MLPClassifier().fit(np.where(X == 0, np.nan, X), y), ValueError, "NaN"),
    ("inf in X", lambda X, y: fastbp.MLPClassifier().fit(np.where(X == 0, np.inf, X), y), ValueError, "infinity"),
    ("NaN in y", lambda X, y: fastbp.MLPRegressor().fit(X, np.where(y == 0, np.nan, y)), ValueError, "NaN"),
    ("1-D X", lambda X, y: fastbp.MLPClassifier().fit(X[:, 0], y), ValueError, "2D array"),
    ("X and y lengths differ", lambda X, y: fastbp.MLPClassifier().fit(X, y[:-1]), ValueError, "inconsistent"),
    ("empty X", lambda X, y: fastbp.MLPClassifier().fit(X[:0], y[:0]), ValueError, "0 sample"),
    (
        "strings in X",
        lambda X, y: fastbp.MLPClassifier().fit(np.full(X.shape, "a", dtype=object), y),
        ValueError,
        "convert",
    ),
    ("complex X", lambda X, y: fastbp.MLPClassifier().fit(X + 1j, y), ValueError, "Complex"),
    ("continuous y, classifier", lambda X, y: fastbp.MLPClassifier().fit(X, y + 0.5), ValueError, "Unknown label"),
    ("negative y, poisson", lambda X, y: fastbp.MLPRegressor(loss="poisson").fit(X, -y - 1.0), ValueError, "negative"),
    ("wrong feature count", lambda X, y: _fitted().predict(X[:, :10]), ValueError, "features"),
    ("labels unseen at partial_fit", lambda X, y: _fitted().partial_fit(X, y + 100), ValueError, "classes"),
    ("negative sample weight", lambda X, y: fastbp.MLPClassifier().fit(X, y, -np.ones(len(y))), ValueError, "egative"),
    ("NaN sample weight", lambda X, y: fastbp.MLPClassifier().fit(X, y, np.full(len(y), np.nan)), ValueError, "NaN"),
    ("all-zero sample weights", lambda X, y: fastbp.MLPClassifier().fit(X, y, np.zeros(len(y))), ValueError, "zero"),
    ("batch_size 0", lambda X, y: fastbp.MLPClassifier(batch_size=0).fit(X, y), ValueError, "batch_size"),
    ("hidden_layer_sizes with a 0", lambda X, y: fastbp.MLPClassifier((5, 0)).fit(X, y), ValueError, "hidden_layer"),
    ("learning rate 0", lambda X, y: fastbp.MLPClassifier(learning_rate_init=0).fit(X, y), ValueError, "learning_rate"),
    (
        "negative learning rate",
        lambda X, y: fastbp.MLPClassifier(learning_rate_init=-1).fit(X, y),
        ValueError,
        "learning",
    ),
    ("max_iter 0", lambda X, y: fastbp.MLPClassifier(max_iter=0).fit(X, y), ValueError, "max_iter"),
    ("unknown activation", lambda X, y: fastbp.MLPClassifier(activation="swish").fit(X, y), ValueError, "activation"),
    ("predict before fit", lambda X, y: fastbp.MLPClassifier().predict(X), Exception, "not fitted"),
    ("float hidden_layer_sizes", lambda X, y: fastbp.MLPClassifier((4.0,)).fit(X, y), TypeError, "integers"),
    (
        "a mini-batch of zero weights",
        lambda X, y: fastbp.MLPClassifier(batch_size=10, shuffle=False).fit(X, y, np.r_[np.zeros(10), np.ones(90)]),
        ZeroDivisionError,
        "Weights sum to zero",
    ),
    (
        "early stopping, validation_fraction 0",
        lambda X, y: fastbp.MLPClassifier(early_stopping=True, validation_fraction=0.0).fit(X, y),
        ValueError,
        "test_size=0.0",
    ),
    (
        "activation list of the wrong length",
        lambda X, y: fastbp.MLPClassifier((5, 4), activation=["relu"]).fit(X, y),
        ValueError,
        "activation lists 1 values but the network has 2 hidden layers",
    ),
    (
        "dropout with lbfgs",
        lambda X, y: fastbp.MLPClassifier(solver="lbfgs", dropout=0.2).fit(X, y),
        ValueError,
        "needs solver='sgd' or 'adam'",
    ),
    (
        "dropout rate 1",
        lambda X, y: fastbp.MLPClassifier(dropout=1.0).fit(X, y),
        ValueError,
        "dropout",
    ),
    (
        "quantile loss without a quantile",
        lambda X, y: fastbp.MLPRegressor(loss="quantile").fit(X, y.astype(float)),
        ValueError,
        "needs the quantile",
    ),
    (
        "float32 targets beyond float32's range of squares",
        lambda X, y: fastbp.MLPRegressor().fit(X.astype(np.float32), y * 1e30),
        fastbp.DivergenceError,
        "fit in float64",
    ),
]


def _fitted():
    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fastbp.MLPClassifier((5,), max_iter=1).fit(X, y)


@pytest.mark.parametrize("what, call, error, words", BAD_INPUT, ids=[row[0] for row in BAD_INPUT])
def test_bad_input_table(what, call, error, words):
    X, y = _digits()
    X_before, y_before = X.copy(), y.copy()
    with pytest.raises(error, match=words):
        call(X, y)
    np.testing.assert_array_equal(X, X_before)  # nothing the user passed is written to
    np.testing.assert_array_equal(y, y_before)


def test_inputs_are_never_written_to():
    X, y = _digits()
    X.setflags(write=False)
    y.setflags(write=False)
    w = np.ones(len(y))
    w.setflags(write=False)
    digest = hashlib.sha256(X.tobytes() + y.tobytes() + w.tobytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for solver in ("sgd", "adam", "lbfgs"):
            model = fastbp.MLPClassifier((5,), solver=solver, max_iter=2).fit(X, y, sample_weight=w)
            model.predict_proba(X)
        fastbp.MLPClassifier((5,), max_iter=2, early_stopping=True).fit(X, y, sample_weight=w)
    assert hashlib.sha256(X.tobytes() + y.tobytes() + w.tobytes()).hexdigest() == digest


def test_one_class_trains_and_predicts_that_class():
    """As scikit-learn: not an error (a pipeline may see one class in a fold); the class is predicted."""
    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastbp.MLPClassifier((5,), max_iter=5).fit(X, np.full(len(y), 7))
    assert (model.predict(X) == 7).all()


def test_early_stopping_does_not_copy_X():
    """The validation split holds out indices: only the validation rows (10%) are copied, not the training 90%."""
    import tracemalloc

    rng = np.random.default_rng(0)
    X, y = rng.random((20000, 200), dtype=np.float32), rng.integers(0, 3, 20000)
    fastbp.MLPClassifier((8,), max_iter=1, early_stopping=True).fit(X[:500], y[:500])  # compile outside the trace
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastbp.MLPClassifier((8,), max_iter=2, early_stopping=True, random_state=0).fit(X, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.3 * X.nbytes, (peak, X.nbytes)

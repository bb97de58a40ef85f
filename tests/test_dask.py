"""Training and prediction on a real Dask cluster: 2 worker processes on 127.0.0.1, pickling over TCP."""

from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp.datasets import make_mnist_like

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


@pytest.fixture(scope="module")
def data():
    X, y = make_mnist_like(4000, n_features=64, random_state=0, dtype=np.float64)
    return X, y, da.from_array(X, chunks=(1000, 64)), da.from_array(y, chunks=1000)


def quiet_fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(*args, **kwargs)


def test_distributed_lbfgs_equals_local_lbfgs(client, data):
    X, y, Xd, yd = data
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    kw = {"hidden_layer_sizes": (16,), "solver": "lbfgs", "max_iter": 30, "alpha": 1e-3, "random_state": 0}
    local = quiet_fit(fastbp.MLPClassifier(**kw), X, y, sample_weight=w)
    remote = quiet_fit(fastbp.MLPClassifier(**kw), Xd, yd, sample_weight=w)
    assert remote.loss_ == pytest.approx(local.loss_, rel=1e-8)
    assert remote.n_iter_ == local.n_iter_
    np.testing.assert_allclose(remote.predict_proba(X), local.predict_proba(X), rtol=1e-6, atol=1e-9)
    regressor = quiet_fit(fastbp.MLPRegressor(**kw), Xd, X[:, :2] @ np.ones(2))
    assert regressor.score(X, X[:, :2] @ np.ones(2)) > 0.9


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_model_averaging_trains_close_to_single_machine(client, data, solver):
    X, y, Xd, yd = data
    kw = {"hidden_layer_sizes": (32,), "solver": solver, "max_iter": 8, "random_state": 0, "batch_size": 50}
    if solver == "sgd":
        kw["learning_rate_init"] = 0.05
    single = quiet_fit(fastbp.MLPClassifier(**kw), X[:3000], y[:3000])
    averaged = quiet_fit(fastbp.MLPClassifier(**kw), Xd[:3000], yd[:3000])
    assert averaged.n_iter_ == 8 and len(averaged.loss_curve_) == 8
    assert averaged.loss_curve_[-1] < averaged.loss_curve_[0]
    single_acc, averaged_acc = single.score(X[3000:], y[3000:]), averaged.score(X[3000:], y[3000:])
    assert averaged_acc > 0.5 and abs(single_acc - averaged_acc) < 0.1, (single_acc, averaged_acc)


def test_one_block_model_averaging_is_single_machine_training(client, data):
    X, y, _, _ = data
    kw = {"hidden_layer_sizes": (8,), "solver": "adam", "max_iter": 2, "shuffle": False, "random_state": 0}
    single = quiet_fit(fastbp.MLPClassifier(**kw), X[:500], y[:500])
    one_block = quiet_fit(fastbp.MLPClassifier(**kw), da.from_array(X[:500], chunks=(500, 64)), y[:500])
    for a, b in zip(single.coefs_, one_block.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_the_new_options_reach_the_workers(client, data):
    """Per-layer activations, dropout and a robust loss travel to the workers with the network."""
    X, y, Xd, _ = data
    target = X[:, 0] - 2 * X[:, 1]
    kw = {"hidden_layer_sizes": (16, 8), "activation": ["gelu", "leaky_relu"], "negative_slope": 0.1,
          "dropout": [0.2, 0.0], "loss": "huber", "delta": 0.5, "max_iter": 6, "random_state": 0}  # fmt: skip
    first = quiet_fit(fastbp.MLPRegressor(**kw), Xd, target)
    again = quiet_fit(fastbp.MLPRegressor(**kw), Xd, target)
    net = first._network()
    assert (net.hidden_activations, net.dropout, net.loss) == (("gelu", "leaky_relu"), (0.2, 0.0), "huber")
    np.testing.assert_array_equal(first.coefs_[0], again.coefs_[0])  # masks from random_state: reproducible
    assert first.loss_curve_[-1] < first.loss_curve_[0]
    with pytest.raises(ValueError, match="needs solver='sgd' or 'adam'"):
        quiet_fit(fastbp.MLPRegressor(solver="lbfgs", dropout=0.2), Xd, target)


def test_dask_ml_incremental_parallel_post_fit_and_grid_search(client, data):
    dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")
    import joblib
    from sklearn.model_selection import GridSearchCV

    X, y, Xd, yd = data
    model = dask_ml_wrappers.Incremental(
        fastbp.MLPClassifier((16,), random_state=0), scoring="accuracy", shuffle_blocks=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(Xd, yd, classes=np.arange(10))
        by_hand = fastbp.MLPClassifier((16,), random_state=0)
        for start in range(0, 4000, 1000):  # what Incremental does: partial_fit block after block
            by_hand.partial_fit(X[start : start + 1000], y[start : start + 1000], classes=np.arange(10))
    for a, b in zip(model.estimator_.coefs_, by_hand.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert model.score(Xd, yd) == pytest.approx(by_hand.score(X, y))
    post = dask_ml_wrappers.ParallelPostFit(quiet_fit(fastbp.MLPClassifier((16,), max_iter=20, random_state=0), X, y))
    proba = post.predict_proba(Xd)
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(proba.compute(), post.estimator.predict_proba(X))
    with joblib.parallel_backend("dask"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid = {"alpha": [1e-4, 1e-1]}
        search = GridSearchCV(fastbp.MLPClassifier((8,), max_iter=10, random_state=0), grid, cv=2).fit(X, y)
    local = GridSearchCV(fastbp.MLPClassifier((8,), max_iter=10, random_state=0), grid, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local.fit(X, y)
    assert search.best_score_ == pytest.approx(local.best_score_) and search.best_params_ == local.best_params_


def test_dask_workers_do_not_oversubscribe_the_cores(client):
    """distributed's nanny starts worker processes with one BLAS thread; fastbp's step then runs serially (one
    part), adding no threads."""

    def report():
        from threadpoolctl import threadpool_info

        from fastbp.threads import step_parts

        os.environ["FASTBP_STEP"] = "auto"  # the suite's default is serial (conftest); a user's is auto
        blas = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return blas, step_parts(32, dense=True, dropout=False)

    assert set(client.run(report).values()) == {(1, 1)}


def test_bad_input_on_dask_arrays(client, data):
    X, y, Xd, yd = data
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastbp.MLPClassifier(solver="lbfgs").fit(da.from_array(np.where(X > 0.9, np.nan, X), chunks=1000), yd)
    with pytest.raises(ValueError, match="early_stopping"):
        fastbp.MLPClassifier(early_stopping=True).fit(Xd, yd)
    with pytest.raises(ValueError, match="inconsistent"):
        fastbp.MLPClassifier(solver="lbfgs").fit(Xd, y[:10])


def test_worker_dying_mid_fit_never_leaves_a_half_updated_estimator(data):
    X, y, _, _ = data
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    with distributed.Client(cluster) as client:
        Xd = da.from_array(X, chunks=(500, 64))
        model = fastbp.MLPClassifier((16,), solver="lbfgs", max_iter=100, tol=0, random_state=0)
        before = dict(model.__dict__)
        outcome = {}

        def fit():
            try:
                quiet_fit(model, Xd, y)
                outcome["ok"] = True
            except Exception as error:  # whichever error the lost worker causes
                outcome["error"] = error

        thread = threading.Thread(target=fit)
        thread.start()
        time.sleep(3)
        pids = client.run(os.getpid)
        os.kill(next(iter(pids.values())), 9)
        # Dask usually recovers or fails in 5-30 s; in about one run in four here the fit waits for minutes
        # (where was not found: a timeout on the parameter broadcast did not bound it). Closing the cluster
        # then ends it with an error, which must leave the model untouched too.
        thread.join(timeout=60)
    cluster.close()
    thread.join(timeout=30)  # a fit still waiting fails as the client and cluster close
    assert not thread.is_alive()
    if "ok" in outcome:  # dask recomputed the lost blocks on the other worker and finished
        assert model.n_iter_ >= 1 and model.predict(X).shape == y.shape
    else:
        assert model.__dict__ == before  # untouched: no coefs_, no partial attributes

"""Training under faults: Ctrl-C mid-fit, exceptions in user code, divergence."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastbp

CHILD = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    from fastbp import MLPClassifier
    from fastbp.datasets import make_mnist_like

    X, y = make_mnist_like(20000, n_features=100, random_state=0)
    clf = MLPClassifier((64,), max_iter=500, tol=0, n_iter_no_change=10**6, verbose=True, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    print(json.dumps({
        "n_iter": clf.n_iter_, "curve": len(clf.loss_curve_), "t": clf.t_,
        "warned": any("interrupted" in str(w.message) for w in caught),
        "accuracy": float(clf.score(X, y)), "finite": bool(np.isfinite(clf.coefs_[0]).all()),
    }))
    """
)


def test_ctrl_c_stops_after_the_running_epoch_and_leaves_a_consistent_model():
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        epochs_seen = 0
        deadline = time.monotonic() + 300
        while epochs_seen < 2 and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            epochs_seen += line.startswith("Iteration")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["warned"] and result["finite"]
    assert 2 <= result["n_iter"] < 500
    assert result["curve"] == result["n_iter"] and result["t"] == result["n_iter"] * 20000
    assert result["accuracy"] > 0.5


def test_exception_inside_an_epoch_rolls_back_parameters_and_optimizer(monkeypatch):
    """Anything raised as the compiled epoch returns (KeyboardInterrupt, MemoryError) restores the old state."""
    rng = np.random.default_rng(0)
    net = fastbp.Network((5, 7, 3), "relu", "softmax").initialize(0)
    X, Y = rng.normal(size=(40, 5)), np.eye(3)[rng.integers(0, 3, 40)]
    opt = fastbp.Adam()
    net.train_epoch(X, Y, 8, opt, rng=0)
    params, m, t = net.params.copy(), opt.m.copy(), opt.t
    from fastbp.kernels import epoch

    real = epoch.train_epoch

    def interrupted(*args):
        real(*args)  # the parameters really change ...
        raise KeyboardInterrupt  # ... and then the signal arrives

    monkeypatch.setattr(epoch, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        net.train_epoch(X, Y, 8, opt, rng=1)
    np.testing.assert_array_equal(net.params, params)
    np.testing.assert_array_equal(opt.m, m)
    assert opt.t == t


def test_exception_in_a_custom_scorer_leaves_the_estimator_usable(monkeypatch):
    X = np.random.default_rng(0).normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int)
    clf = fastbp.MLPClassifier((8,), early_stopping=True, max_iter=20, random_state=0)
    calls = []

    def broken_score(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("scorer failed")
        return 0.5 + 0.01 * len(calls)

    monkeypatch.setattr(fastbp.MLPClassifier, "_score", broken_score)
    with pytest.raises(RuntimeError, match="scorer failed"):
        clf.fit(X, y)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3 and len(clf.validation_scores_) == 2
    assert clf.predict(X).shape == (200,) and np.isfinite(clf.coefs_[0]).all()


INTERRUPTED_CHILD = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    from fastbp import MLPClassifier
    from fastbp.datasets import make_mnist_like

    solver, rows = sys.argv[1], int(sys.argv[2])
    X, y = make_mnist_like(rows, n_features=200, random_state=0)
    clf = MLPClassifier((1024,), solver=solver, batch_size=16, max_iter=500, tol=0, n_iter_no_change=10**6,
                        verbose=True, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    net = clf._network()
    Y = clf._label_binarizer.transform(y).astype(X.dtype)
    print(json.dumps({
        "n_iter": clf.n_iter_, "loss": clf.loss_, "curve": len(getattr(clf, "loss_curve_", [])),
        "warned": any("interrupted" in str(w.message) for w in caught),
        "loss_at_weights": net.loss_and_gradients(X, Y, alpha=clf.alpha)[0],
    }))
    """
)


def _interrupt_child(solver: str, rows: int, after_lines: int, presses: int) -> dict:
    """Run a fit in a child, press Ctrl-C ``presses`` times right after ``after_lines`` verbose lines."""
    child = subprocess.Popen(
        [sys.executable, "-u", "-c", INTERRUPTED_CHILD, solver, str(rows)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        seen, deadline = 0, time.monotonic() + 300
        while seen < after_lines and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            seen += line.startswith("Iteration")
        time.sleep(0.2)  # into the next epoch's compiled call
        for _ in range(presses):
            child.send_signal(signal.SIGINT)
            time.sleep(0.01)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_ctrl_c_during_lbfgs_keeps_the_last_iteration_with_its_loss():
    """lbfgs interrupted by Ctrl-C used to leave coefs_ set, n_iter_ = 0 and no loss_."""
    result = _interrupt_child("lbfgs", 3000, 3, 1)
    assert result["warned"] and 3 <= result["n_iter"] < 500
    assert result["loss"] == pytest.approx(result["loss_at_weights"], rel=1e-6)


def test_two_ctrl_c_in_one_epoch_stop_at_once():
    """Two presses during one compiled epoch were merged into one: the epoch finished and counted."""
    result = _interrupt_child("adam", 40000, 2, 2)  # each epoch takes about a second
    assert result["warned"]
    assert result["n_iter"] == result["curve"] == 2  # the third epoch, in flight, was rolled back

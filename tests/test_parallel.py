"""The parallel training step (fastbp.kernels.parallel) against the serial one, and the rules that choose it.

The serial step is itself checked against the NumPy reference and scikit-learn elsewhere; here the parallel
step over 2 and 3 parts must give the serial step's parameters up to summation order (its gemms add the
same products in another order), on awkward shapes, every optimizer and both dtypes. ``threads=k`` forces k
parts whatever the machine has (on one core the parts run one after the other), so these tests run anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastbp
from fastbp import threads as fastbp_threads
from fastbp.kernels.epoch import train_epoch
from tests.conftest import make_problem

TOLERANCE = {np.float32: 2e-4, np.float64: 1e-10}

CASES = {
    # name: (layer sizes, hidden activation, loss, rows, batch size, network options, train_epoch options)
    "adam, last batch short": ((13, 37, 20, 3), "relu", "softmax", 101, 33, {}, {"alpha": 1e-3}),
    "batch of one": ((5, 17, 2), "tanh", "logistic", 7, 1, {}, {}),
    "one feature, one unit": ((1, 1, 1), "relu", "squared_error", 40, 8, {}, {}),
    "wide layers, gelu keeps z": ((40, 300, 70, 4), "gelu", "softmax", 90, 32, {}, {}),
    "mixed activations, weighted": ((9, 33, 18, 3), ("silu", "elu"), "huber", 64, 16, {}, {"weighted": True}),
    "no hidden layer": ((6, 3), "relu", "softmax", 50, 10, {}, {}),
    "plain sgd with l2": ((13, 37, 20, 3), "relu", "softmax", 100, 25, {}, {"sgd": (0.05, 0.0), "alpha": 1e-2}),
    "nesterov, schedule, shuffled": (
        (13, 37, 3),
        "leaky_relu",
        "log_loss",
        100,
        30,
        {},
        {"sgd": (0.05, 0.9), "schedule": True, "shuffle": True},
    ),  # fmt: skip
}


def _train(case, dtype, threads, epochs=3):
    sizes, hidden, loss, n, batch, net_options, options = CASES[case]
    net, X, Y, w = make_problem(sizes, hidden, loss, n, dtype, weighted=options.get("weighted", False), **net_options)
    if "sgd" in options:
        rate, momentum = options["sgd"]
        optimizer = fastbp.SGD(rate, momentum, nesterov=momentum > 0)
    else:
        optimizer = fastbp.Adam(1e-2)
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(epochs):
        n_batches = -(-n // batch)
        rates = np.linspace(0.05, 0.01, n_batches) if options.get("schedule") else None
        losses.append(
            net.train_epoch(
                X, Y, batch, optimizer, shuffle=options.get("shuffle", False), rng=rng, sample_weight=w,
                alpha=options.get("alpha", 0.0), learning_rates=rates, threads=threads,
            )
        )  # fmt: skip
    return net.params.copy(), np.array(losses), optimizer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_parallel_step_equals_the_serial_step(case, dtype):
    serial, serial_losses, serial_opt = _train(case, dtype, threads=1)
    for parts in (2, 3):
        params, losses, opt = _train(case, dtype, threads=parts)
        assert params.dtype == dtype
        np.testing.assert_allclose(params, serial, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
        np.testing.assert_allclose(losses, serial_losses, rtol=TOLERANCE[dtype])
        if isinstance(opt, fastbp.Adam):
            assert opt.t == serial_opt.t


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "adam", "shuffle": True},
        {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True},
        {"solver": "adam", "early_stopping": True, "n_iter_no_change": 100},
    ],
    ids=["adam-shuffled", "nesterov", "adam-early-stopping"],
)
def test_estimator_on_the_parallel_step_matches_scikit_learn(params):
    """The float64 promise (weights equal to scikit-learn's to 1e-6 after several epochs) on the parallel step."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:500] / 16.0, y[:500]
    kw = {"hidden_layer_sizes": (20, 15), "alpha": 0.01, "max_iter": 6, "random_state": 3, "batch_size": 48}
    kw.update(params)
    theirs_kw = {**kw, "n_iter_no_change": kw["n_iter_no_change"] - 1} if "n_iter_no_change" in kw else kw
    with warnings.catch_warnings(), fastbp_threads.forced_parts(2):
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = fastbp.MLPClassifier(**kw).fit(X, y)
        theirs = SkClassifier(**theirs_kw).fit(X, y)
    assert any(s[0].parallel for s in train_epoch.signatures)  # it did run the parallel step
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def test_the_parallel_step_trains_every_parameter():
    """A part that skipped its rows or its bias columns would leave them at their initial values (tanh: no
    unit has a zero gradient, as a dead ReLU would)."""
    net, X, Y, _ = make_problem((40, 300, 70, 4), "tanh", "softmax", 64, np.float64)
    before = net.params.copy()
    net.train_epoch(X, Y, 16, fastbp.Adam(1e-2), shuffle=False, threads=3)
    assert (net.params != before).all()


DETERMINISM = textwrap.dedent(
    """
    import hashlib, numpy as np, fastbp
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 50)).astype(np.float32)
    Y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 500)]
    net = fastbp.Network([50, 64, 32, 4], "relu", "softmax", np.float32).initialize(0)
    opt = fastbp.Adam()
    for epoch in range(3):
        net.train_epoch(X, Y, 32, opt, rng=epoch, threads=2)
    print(hashlib.sha256(net.params.tobytes()).hexdigest())
    """
)


def test_parallel_step_is_bitwise_repeatable_across_processes_and_numba_thread_counts():
    """Fixed parts, fixed reduction order: the weights depend on ``threads`` only, not on which OS thread ran a
    part, nor on how many threads numba has (one thread runs both parts in turn)."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", DETERMINISM], capture_output=True, text=True, timeout=300,
            env={**os.environ, "NUMBA_NUM_THREADS": str(numba_threads)},
        )
        for numba_threads in (2, 2, 1)
    ]  # fmt: skip
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout == runs[2].stdout and len(runs[0].stdout.split()) == 1


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_blas_runs_one_thread_during_a_parallel_epoch_and_is_restored_after(monkeypatch):
    net, X, Y, _ = make_problem((13, 37, 3), "relu", "softmax", 64, np.float64)
    seen = []
    real = fastbp.network._epoch.train_epoch

    def spy(*args):
        seen.append(_blas_threads())
        return real(*args)

    monkeypatch.setattr(fastbp.network._epoch, "train_epoch", spy)
    with threadpool_limits(2, user_api="blas"):
        net.train_epoch(X, Y, 16, fastbp.Adam(), threads=2)
        assert _blas_threads() == [2] * len(seen[0])
        net.train_epoch(X, Y, 16, fastbp.Adam(), threads=1)
    assert seen[0] == [1] * len(seen[0]) and seen[1] == [2] * len(seen[1])


@pytest.mark.parametrize("error", [KeyboardInterrupt, MemoryError])
def test_blas_threads_are_restored_when_the_epoch_is_interrupted(monkeypatch, error):
    net, X, Y, _ = make_problem((13, 37, 3), "relu", "softmax", 64, np.float64)
    before = net.params.copy()

    def interrupted(*args):
        raise error

    monkeypatch.setattr(fastbp.network._epoch, "train_epoch", interrupted)
    with threadpool_limits(2, user_api="blas"):
        with pytest.raises(error):
            net.train_epoch(X, Y, 16, fastbp.Adam(), threads=2)
        assert _blas_threads() == [2] * len(_blas_threads())
    np.testing.assert_array_equal(net.params, before)


def test_concurrent_holds_restore_blas_when_the_last_one_ends():
    with threadpool_limits(2, user_api="blas"):
        first_in, release = threading.Event(), threading.Event()
        inside = []

        def first():
            with fastbp_threads.blas_single_threaded():
                first_in.set()
                release.wait(30)
                inside.append(_blas_threads())

        thread = threading.Thread(target=first)
        thread.start()
        first_in.wait(30)
        with fastbp_threads.blas_single_threaded():
            assert fastbp_threads.blas_threads() == 2  # what the process was given, not the hold's 1
            inside.append(_blas_threads())
        assert set(_blas_threads()) == {1}  # the first hold still runs
        release.set()
        thread.join(30)
        assert set(inside[0]) == set(inside[1]) == {1}
        assert set(_blas_threads()) == {2}


def test_step_parts_rules(monkeypatch):
    monkeypatch.setenv("FASTBP_STEP", "auto")
    monkeypatch.setattr(fastbp_threads.numba, "get_num_threads", lambda: 4)
    monkeypatch.setattr(fastbp_threads, "blas_threads", lambda: 3)
    monkeypatch.setattr(fastbp_threads, "threading_layer", lambda: "omp")
    assert fastbp_threads.step_parts(32, dense=True, dropout=False) == 3
    assert fastbp_threads.step_parts(fastbp_threads.PARALLEL_MAX_BATCH + 1, dense=True, dropout=False) == 1
    assert fastbp_threads.step_parts(32, dense=False, dropout=False) == 1
    assert fastbp_threads.step_parts(32, dense=True, dropout=True) == 1
    assert fastbp_threads.step_parts(32, dense=True, dropout=False, update_pass=False) == 1  # plain SGD
    monkeypatch.setattr(fastbp_threads, "blas_threads", lambda: 1)  # a worker given one core
    assert fastbp_threads.step_parts(32, dense=True, dropout=False) == 1
    monkeypatch.setattr(fastbp_threads, "blas_threads", lambda: 3)
    monkeypatch.setattr(fastbp_threads, "threading_layer", lambda: "workqueue")
    assert fastbp_threads.step_parts(32, dense=True, dropout=False) == 1
    monkeypatch.setattr(fastbp_threads, "threading_layer", lambda: "omp")
    monkeypatch.setenv("FASTBP_STEP", "serial")
    assert fastbp_threads.step_parts(32, dense=True, dropout=False) == 1
    with fastbp_threads.forced_parts(2):  # what fastbp.precompile uses; dense input without dropout only
        assert fastbp_threads.step_parts(512, dense=True, dropout=False, update_pass=False) == 2
        assert fastbp_threads.step_parts(32, dense=False, dropout=False) == 1
    monkeypatch.setenv("FASTBP_STEP", "parallel")
    with pytest.raises(ValueError, match="FASTBP_STEP must be"):
        fastbp_threads.step_parts(32, dense=True, dropout=False)


LAYER = textwrap.dedent(
    """
    import numba, fastbp.threads as t
    print(numba.get_num_threads(), t.blas_threads(), t.threading_layer(), t.step_parts(32, True, False))
    """
)


@pytest.mark.parametrize(
    "env", [{}, {"NUMBA_NUM_THREADS": "1"}, {"NUMBA_THREADING_LAYER": "workqueue"}], ids=["default", "one", "wq"]
)
def test_serial_step_with_one_numba_thread_or_the_workqueue_layer(env):
    run = subprocess.run(
        [sys.executable, "-c", LAYER], capture_output=True, text=True, timeout=120,
        env={**os.environ, "FASTBP_STEP": "auto", **env},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    numba_threads, blas, layer, parts = run.stdout.split()
    if env:
        assert parts == "1"
    else:  # the control: the parallel step wherever the process has two threads or more
        assert int(parts) == (min(int(numba_threads), int(blas)) if layer != "workqueue" else 1)
    if "NUMBA_THREADING_LAYER" in env:
        assert layer == "workqueue"


def test_threads_argument_is_checked():
    net, X, Y, _ = make_problem((3, 4, 2), "relu", "softmax", 10, np.float64)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            net.train_epoch(X, Y, 4, fastbp.Adam(), threads=bad)


def test_numba_set_num_threads_sets_the_parts(monkeypatch):
    """``numba.set_num_threads(k)``, the user's knob: k parts at most, and 1 keeps every epoch serial."""
    import numba

    monkeypatch.setenv("FASTBP_STEP", "auto")
    monkeypatch.setattr(fastbp_threads, "blas_threads", lambda: 8)
    monkeypatch.setattr(fastbp_threads, "threading_layer", lambda: "omp")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert fastbp_threads.step_parts(32, dense=True, dropout=False) == 1
        if before >= 2:
            numba.set_num_threads(2)
            assert fastbp_threads.step_parts(32, dense=True, dropout=False) == 2
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointer_gemm_matches_numpy_on_blocks(dtype):
    """kernels.blas.gemm (the parts' products and plain SGD's step): every transpose pair, row-major blocks of
    larger matrices given by pointer and row stride, alpha and beta, against NumPy in float64."""
    from fastbp.kernels.blas import SCRATCH_BYTES, N, T, gemm

    rng = np.random.default_rng(7)
    scratch = np.zeros(SCRATCH_BYTES, np.uint8)
    item = np.dtype(dtype).itemsize
    for trans_a, trans_b in ((N, N), (N, T), (T, N), (T, T)):
        for m, n, k in ((1, 1, 1), (5, 17, 3), (32, 48, 1)):
            a_shape = (m, k) if trans_a == N else (k, m)
            b_shape = (k, n) if trans_b == N else (n, k)
            A = rng.normal(size=(a_shape[0] + 2, a_shape[1] + 3)).astype(dtype)  # blocks at offset (1, 2)
            B = rng.normal(size=(b_shape[0] + 1, b_shape[1] + 4)).astype(dtype)
            C = rng.normal(size=(m + 3, n + 5)).astype(dtype)
            a, b = A[1 : 1 + a_shape[0], 2 : 2 + a_shape[1]], B[1 : 1 + b_shape[0], 2 : 2 + b_shape[1]]
            op_a, op_b = (a if trans_a == N else a.T), (b if trans_b == N else b.T)
            expected = C.astype(np.float64)
            expected[2 : 2 + m, 1 : 1 + n] = -0.5 * op_a.astype(np.float64) @ op_b + 0.75 * C[2 : 2 + m, 1 : 1 + n]
            at = lambda X, r, c: X.ctypes.data + item * (r * X.shape[1] + c)  # noqa: E731
            gemm(trans_a, trans_b, m, n, k, -0.5, at(A, 1, 2), A.shape[1], at(B, 1, 2), B.shape[1], 0.75,
                 at(C, 2, 1), C.shape[1], scratch, C)  # fmt: skip
            np.testing.assert_allclose(C, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])

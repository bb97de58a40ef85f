"""Specialized training kernels (only a network's own activations, loss and dropout compiled in) against the
shared kernels (every branch) that the rest of the suite runs (conftest sets ``FASTBP_KERNELS=shared``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import make_problem

import fastbp
from fastbp.kernels import epoch
from fastbp.kernels.activations import ACTIVATIONS
from fastbp.kernels.branches import Branches
from fastbp.kernels.dense import ALL
from fastbp.kernels.losses import LOSSES

CASES = {  # id: (layer sizes, hidden activations, loss, dtype, dropout, optimizer)
    "relu-log_loss-adam-f32": ([7, 9, 3], "relu", "log_loss", np.float32, 0.0, lambda: fastbp.Adam(1e-2)),
    "mixed-huber-nesterov-dropout-f64": (
        [5, 8, 6, 2],
        ["tanh", "gelu"],
        "huber",
        np.float64,
        [0.2, 0.0],
        lambda: fastbp.SGD(0.05, momentum=0.9, nesterov=True),
    ),
    "logistic-binary-sgd-f64": ([1, 4, 1], "logistic", "binary_log_loss", np.float64, 0.0, lambda: fastbp.SGD(0.1)),
}


def _train(kernels, monkeypatch, sizes, hidden, loss, dtype, dropout, make_optimizer):
    monkeypatch.setenv("FASTBP_KERNELS", kernels)
    net, X, Y, _ = make_problem(sizes, hidden, loss, n=23, dtype=dtype, seed=3, dropout=dropout, delta=0.7)
    optimizer = make_optimizer()
    losses = [net.train_epoch(X, Y, batch_size=5, optimizer=optimizer, rng=epoch_seed) for epoch_seed in (1, 2)]
    return net, losses


@pytest.mark.parametrize("case", list(CASES))
def test_specialized_training_equals_shared(case, monkeypatch):
    sizes, hidden, loss, dtype, dropout, make_optimizer = CASES[case]
    special, special_losses = _train("specialized", monkeypatch, *CASES[case])
    shared, shared_losses = _train("shared", monkeypatch, *CASES[case])
    # the same arithmetic in the same order: only the branches that never run are left out
    np.testing.assert_array_equal(special.params, shared.params)
    assert special_losses == shared_losses
    names = [hidden] if isinstance(hidden, str) else hidden
    expected = (tuple(sorted({ACTIVATIONS[a].code for a in names})), (LOSSES[loss].code,), bool(np.any(dropout)))
    # the serial or the parallel step, as fastbp.threads chose on this machine
    assert any(signature[0].key[:3] == expected for signature in epoch.train_epoch.signatures)


def test_specialized_gradient_equals_shared(monkeypatch):
    """lbfgs's full-batch gradient (a specialization without any optimizer step)."""
    results = []
    for kernels in ("specialized", "shared"):
        monkeypatch.setenv("FASTBP_KERNELS", kernels)
        net, X, Y, w = make_problem([3, 6, 2], "silu", "quantile", n=11, seed=4, weighted=True, quantile=0.3)
        results.append(net.loss_and_gradients(X, Y, w, alpha=0.1))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][0] == results[1][0]


def test_a_code_outside_the_compiled_branches_changes_nothing_or_stops(monkeypatch):
    """The guard of a multi-branch dispatcher: an unknown activation code leaves z as it is (no bias, no f), an
    unknown loss code gives a NaN loss, which stops an epoch. Python never passes such codes."""
    monkeypatch.setenv("FASTBP_KERNELS", "shared")  # ALL: a chain of several branches
    net, X, Y, _ = make_problem([4, 5, 3], "relu", "squared_error", n=6, seed=5)
    identity = fastbp.Network([4, 5, 3], "identity", "identity")
    identity.params[:] = net.params
    net.intercepts[0][:] = 0.0  # the unknown forward pass adds no bias: compare with a zero bias
    identity.intercepts[0][:] = 0.0
    unknown = net._model._replace(activations=np.array([99], dtype=np.int64))
    net._model_args = tuple(unknown)
    loss, gradient = net.loss_and_gradients(X, Y)
    expected_loss, expected_gradient = identity.loss_and_gradients(X, Y)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    weights = slice(0, net.n_weights)  # the unknown backward pass writes no hidden bias gradient either
    np.testing.assert_allclose(gradient[weights], expected_gradient[weights], rtol=1e-12, atol=1e-15)
    net._model_args = tuple(unknown._replace(loss=99))
    assert np.isnan(net.loss_and_gradients(X, Y)[0])


def test_kernel_choice_is_checked(monkeypatch):
    monkeypatch.setenv("FASTBP_KERNELS", "fast")
    with pytest.raises(ValueError, match="FASTBP_KERNELS must be 'shared' or 'specialized'"):
        fastbp.Network([3, 4, 2])
    with pytest.raises(ValueError, match="FASTBP_KERNELS must be 'shared' or 'specialized'"):
        fastbp.MLPClassifier((4,)).fit(np.ones((4, 3)), [0, 1, 0, 1])


def test_branches_value():
    b = Branches([3, 3, 1], [2], 0)
    assert (b.activations, b.losses, b.dropout) == ((1, 3), (2,), False)
    assert b == Branches([1, 3], [2], False) and hash(b) == hash(Branches([3, 1], [2], False))
    assert b != ALL and len(ALL.activations) == len(ACTIVATIONS) and len(ALL.losses) == len(LOSSES)
    with pytest.raises(AttributeError):
        b.dropout = True


def test_a_specialization_is_cached_across_processes(tmp_path):
    """The second process loads the specialized epoch kernel from the cache: its type pickles in the index."""
    script = textwrap.dedent(
        """
        import warnings
        import numpy as np
        import fastbp
        from fastbp.kernels import epoch
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(0)
        X = rng.normal(size=(40, 5)).astype(np.float32)
        fastbp.MLPClassifier((6,), max_iter=1, random_state=0).fit(X, np.arange(40) % 3)
        print(len(epoch.train_epoch.stats.cache_hits), len(epoch.train_epoch.stats.cache_misses))
        """
    )
    env = {**os.environ, "FASTBP_CACHE_DIR": str(tmp_path), "FASTBP_KERNELS": "specialized"}
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout.split() == ["0", "1"]  # compiled (a miss) in the first process ...
    assert runs[1].stdout.split() == ["1", "0"]  # ... loaded in the second

"""``fastbp compile``: kernels compiled ahead of time are the ones a later fit and prediction load."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fastbp.precompile import Configuration, configurations

# A fit and a prediction in a fresh process; prints the fastbp functions numba had to compile (cache misses).
FIT_AND_PREDICT = """
import warnings
import numpy as np
from numba.core import event

compiled = []


class Compiles(event.Listener):
    def on_start(self, ev):
        function = ev.data["dispatcher"].py_func
        if function.__module__.startswith("fastbp"):
            compiled.append(function.__qualname__)

    def on_end(self, ev):
        pass


event.register("numba:compile", Compiles())
import fastbp

warnings.simplefilter("ignore")
rng = np.random.default_rng(3)
X = rng.normal(size=(300, 20)).astype(np.float32)
y = rng.integers(0, 4, 300)
model = fastbp.MLPClassifier((16, 8), max_iter=2, batch_size=50, early_stopping=True, random_state=0).fit(X, y)
assert model.predict_proba(X[:1]).shape == (1, 4)
print("compiled:", ",".join(compiled))
"""


def test_a_fit_after_fastbp_compile_compiles_nothing(tmp_path):
    env = {**os.environ, "FASTBP_CACHE_DIR": str(tmp_path), "FASTBP_KERNELS": "specialized"}
    env.pop("NUMBA_CACHE_DIR", None)

    def fit_and_predict():
        out = subprocess.run([sys.executable, "-c", FIT_AND_PREDICT], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().removeprefix("compiled:").strip()

    args = ["--dtype", "float32", "--task", "multiclass", "regression", "--loss", "huber"]
    out = subprocess.run([sys.executable, "-m", "fastbp", "compile", *args], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert str(tmp_path) in lines[0]
    assert [line.split(":")[0].strip() for line in lines[1:-1]] == [
        "float32, relu, multiclass, adam",
        "float32, relu, regression (huber), adam",
    ]
    assert fit_and_predict() == ""
    # the same fit with a cache that was never warmed compiles the training and prediction kernels
    env["FASTBP_CACHE_DIR"] = str(tmp_path / "empty")
    assert {"train_epoch", "network_forward"} <= set(fit_and_predict().split(","))


def test_configurations_are_checked_and_share_what_compiles_once():
    got = configurations(["float64"], ["relu", "tanh"], ["binary", "regression"], ["huber", "poisson"], ["sgd", "adam"])
    assert len(got) == 6  # 2 activations x (binary + 2 regression losses); sgd and adam share an epoch
    assert {c.solver for c in got} == {"sgd"} and {c.loss for c in got} == {"binary_log_loss", "huber", "poisson"}
    assert configurations(["float32"], ["relu"], ["multiclass"], solvers=["lbfgs", "adam"], dropout=True) == [
        Configuration("float32", "relu", "multiclass", "log_loss", solver, solver == "adam", False)
        for solver in ("adam", "lbfgs")
    ]  # lbfgs takes no dropout
    for bad, message in (
        (dict(dtypes=["float16"]), "unknown dtype 'float16'"),
        (dict(activations="relu"), "activations must be a non-empty list"),
        (dict(tasks=[]), "tasks must be a non-empty list"),
        (dict(losses=["log_loss"]), "unknown loss 'log_loss'"),
        (dict(solvers=["newton"]), "unknown solver 'newton'"),
    ):
        with pytest.raises(ValueError, match=message):
            configurations(**bad)


def test_compile_for_fits_a_clone_on_a_few_rows_with_every_class(monkeypatch):
    import numpy as np

    import fastbp
    from fastbp.precompile import compile_for

    seen = []
    fit = fastbp.MLPClassifier.fit

    def spy(self, X, y, **kwargs):
        seen.append((X.shape[0], sorted(set(np.asarray(y).tolist())), self.hidden_layer_sizes, self.max_iter))
        return fit(self, X, y, **kwargs)

    monkeypatch.setattr(fastbp.MLPClassifier, "fit", spy)
    X = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    y = np.repeat(["a", "b", "c", "d"], 50)  # the first 40 rows hold one class only
    model = fastbp.MLPClassifier((30, 20), activation=("relu", "tanh"), max_iter=50)
    assert compile_for(model, X, y) >= 0
    assert seen == [(43, ["a", "b", "c", "d"], (4, 4), 1)]
    assert not hasattr(model, "coefs_") and model.max_iter == 50  # the user's model is untouched


def test_compile_configuration_compiles_both_steps_where_the_parallel_one_may_run(monkeypatch):
    """A fit may run either step (batch size, optimizer): where this machine would run the parallel one,
    ``fastbp compile`` compiles both (each tiny fit forced onto one)."""
    from fastbp import precompile, threads

    seen = []
    monkeypatch.setattr(precompile, "compile_for", lambda model, X, y: seen.append(threads._forced.get()) or 0.0)
    monkeypatch.setattr(precompile, "step_parts", lambda *args, **kwargs: 2)
    precompile.compile_configuration(Configuration(np.float32, "relu", "multiclass", "log_loss", "adam", False, False))
    assert seen == [1, 2]
    monkeypatch.setattr(precompile, "step_parts", lambda *args, **kwargs: 1)  # one thread: the serial step only
    seen.clear()
    precompile.compile_configuration(Configuration(np.float32, "relu", "multiclass", "log_loss", "adam", False, False))
    assert seen == [1]


def test_fit_parts_follows_the_real_fits_batch_and_optimizer(monkeypatch):
    from fastbp import MLPClassifier, threads
    from fastbp.precompile import fit_parts

    monkeypatch.setenv("FASTBP_STEP", "auto")
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(threads, "blas_threads", lambda: 2)
    monkeypatch.setattr(threads, "threading_layer", lambda: "omp")
    X = np.zeros((1000, 3))
    assert fit_parts(MLPClassifier(batch_size=64), X, 1000) == 2
    assert fit_parts(MLPClassifier(), X, 1000) == 1  # "auto": 200 rows, above PARALLEL_MAX_BATCH
    assert fit_parts(MLPClassifier(), X, 100) == 2  # "auto" on 100 rows: one batch of 100
    assert fit_parts(MLPClassifier(solver="sgd", momentum=0.0, batch_size=32), X, 1000) == 1  # plain SGD
    assert fit_parts(MLPClassifier(dropout=0.2, batch_size=32), X, 1000) == 1

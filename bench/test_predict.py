"""Prediction speed, start-up time and fit memory (issue targets in docs/design.md).

python -m pytest bench/test_predict.py --benchmark-columns=min,mean,rounds
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from fastbp.benchmarks import SIZES


@pytest.fixture(scope="module")
def models(datasets):
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    import fastbp

    data = datasets(np.float32)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, Model in (("fastbp", fastbp.MLPClassifier), ("sklearn", SklearnMLP)):
            out[name] = Model(SIZES[1:-1], max_iter=1, random_state=0).fit(data.X[:2000], data.y[:2000])
    return data, out


@pytest.mark.parametrize("competitor", ["fastbp", "sklearn", "forward_floor"])
def test_predict_proba_10000_rows(benchmark, models, competitor):
    data, fitted = models
    X = np.ascontiguousarray(data.X[:10000])
    if competitor == "forward_floor":  # the three products alone, into preallocated outputs
        Ws = fitted["fastbp"].coefs_
        outs = [np.empty((10000, W.shape[1]), np.float32) for W in Ws]

        def run():
            np.matmul(X, Ws[0], outs[0])
            np.matmul(outs[0], Ws[1], outs[1])
            np.matmul(outs[1], Ws[2], outs[2])

    else:

        def run():
            fitted[competitor].predict_proba(X)

    benchmark.group = "predict_proba 10000 rows"
    benchmark.extra_info.update(prediction=competitor)
    benchmark.pedantic(run, rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("competitor", ["fastbp", "sklearn"])
def test_predict_proba_one_row(benchmark, models, competitor):
    data, fitted = models
    x = np.ascontiguousarray(data.X[:1])
    benchmark.group = "predict_proba 1 row"
    benchmark.extra_info.update(prediction=competitor)
    benchmark.pedantic(fitted[competitor].predict_proba, args=(x,), rounds=2000, warmup_rounds=10)


STARTUP = """
import time; start = time.perf_counter()
import numpy as np, fastbp
net = fastbp.Network((784, 256, 128, 10), "relu", "softmax", np.float32).initialize(0)
X = np.zeros((128, 784), np.float32); Y = np.eye(10, dtype=np.float32)[np.zeros(128, int)]
net.train_epoch(X, Y, 128, fastbp.Adam(), shuffle=False)
print(time.perf_counter() - start)
"""


def test_startup_to_first_step_with_warm_cache(benchmark):
    """A fresh process: import fastbp, build a network, finish one training step (compile cache warm)."""
    subprocess.run([sys.executable, "-c", STARTUP], check=True, capture_output=True)  # warms the cache
    seconds = []

    def run():
        out = subprocess.run([sys.executable, "-c", STARTUP], check=True, capture_output=True, text=True)
        seconds.append(float(out.stdout))

    benchmark.group = "start-up"
    benchmark.pedantic(run, rounds=3)
    benchmark.extra_info["import_to_first_step_s"] = min(seconds)


COLD = """
import json, time, warnings
start = time.perf_counter()
import numpy as np, fastbp
imported = time.perf_counter()
from fastbp.datasets import make_mnist_like
X, y = make_mnist_like(2000, random_state=0)
warnings.simplefilter("ignore")
made = time.perf_counter()
model = fastbp.MLPClassifier(max_iter=1).fit(X, y)  # the default network, float32, Adam
fitted = time.perf_counter()
model.predict_proba(X)
predicted = time.perf_counter()
print(json.dumps({"import": imported - start, "first_fit": fitted - made, "first_predict": predicted - fitted}))
"""


def test_cold_start_with_an_empty_compile_cache(benchmark, tmp_path_factory):
    """A fresh process with an empty kernel cache: import, the first default fit, the first predict_proba."""
    import json
    import os

    figures = []

    def run():
        env = {**os.environ, "FASTBP_CACHE_DIR": str(tmp_path_factory.mktemp("empty-cache"))}
        out = subprocess.run([sys.executable, "-c", COLD], check=True, capture_output=True, text=True, env=env)
        figures.append(json.loads(out.stdout))

    benchmark.group = "cold start"
    benchmark.pedantic(run, rounds=1)
    benchmark.extra_info["cold_start"] = figures[0]


PEAK = """
import tracemalloc, warnings, numpy as np
from fastbp.datasets import make_mnist_like
import fastbp
X, y = make_mnist_like(60000, random_state=0)
warnings.simplefilter("ignore")
fastbp.MLPClassifier((256, 128), max_iter=1, batch_size=128, random_state=0).fit(X[:1000], y[:1000])  # compile
tracemalloc.start()  # numpy reports its allocations to tracemalloc
fastbp.MLPClassifier((256, 128), max_iter=1, batch_size=128, random_state=0).fit(X, y)
peak = tracemalloc.get_traced_memory()[1]
print(X.nbytes / 2**20, peak / 2**20)
"""


def test_fit_peak_memory(benchmark):
    """Peak memory allocated during a fit on 60,000 x 784 float32 X (target: < 100 MB beyond X itself)."""
    result = {}

    def run():
        out = subprocess.run([sys.executable, "-c", PEAK], check=True, capture_output=True, text=True)
        result["x_mb"], result["growth_mb"] = map(float, out.stdout.split())

    benchmark.group = "memory"
    benchmark.pedantic(run, rounds=1)
    benchmark.extra_info.update(result)
    assert result["growth_mb"] < 100, result

"""One training epoch of 784-256-128-10 on MNIST-size data: fastbp against the floor and the rivals.

Run through ``python bench/run.py`` (which prints the ratio table); alone:
``python -m pytest bench/test_epoch.py --benchmark-json=out.json [--quick]``.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastbp.benchmarks import COMPETITORS, has, threads_used

ROWS = [(opt, bs) for opt in ("sgd", "adam") for bs in (32, 128, 512)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer, batch_size", ROWS, ids=[f"{o}-{b}" for o, b in ROWS])
@pytest.mark.parametrize("competitor", list(COMPETITORS))
def test_epoch(benchmark, datasets, quick, competitor, optimizer, batch_size, dtype):
    make, module = COMPETITORS[competitor]
    if module and not has(module):
        pytest.skip(f"{module} is not installed")
    if quick and dtype == "float64" and competitor not in ("gemm_floor", "fastbp"):
        pytest.skip("quick mode: float64 only for fastbp and its floor")
    data = datasets(np.dtype(dtype).type)
    epoch = make(data, batch_size, optimizer)
    benchmark.group = f"epoch {optimizer} b{batch_size} {dtype}"
    benchmark.extra_info.update(competitor=competitor, optimizer=optimizer, batch_size=batch_size, dtype=dtype)
    benchmark.extra_info["rows"] = data.X.shape[0]
    benchmark.extra_info["threads"] = threads_used(competitor)
    benchmark.pedantic(epoch, rounds=1 if quick else 3, warmup_rounds=1)


def test_epoch_shuffled(benchmark, datasets, quick):
    """fastbp with shuffle=True at Adam batch 128 (compare with the unshuffled row: target <= 5% more)."""
    from fastbp.benchmarks import fastbp_network

    data = datasets(np.float32)
    epoch = fastbp_network(data, 128, "adam", shuffle=True)
    benchmark.group = "epoch adam b128 float32"
    benchmark.extra_info.update(competitor="fastbp_shuffled", optimizer="adam", batch_size=128, dtype="float32")
    benchmark.pedantic(epoch, rounds=1 if quick else 3, warmup_rounds=1)


OPTIONS = {
    "dropout 0.2": {"dropout": 0.2},
    "logistic": {"activation": "logistic"},
    "tanh": {"activation": "tanh"},
    "leaky_relu": {"activation": "leaky_relu"},
    "elu": {"activation": "elu"},
    "softplus": {"activation": "softplus"},
    "gelu": {"activation": "gelu"},
    "silu": {"activation": "silu"},
}


@pytest.mark.parametrize("option", list(OPTIONS))
def test_epoch_with_options(benchmark, datasets, quick, option):
    """What each option beyond scikit-learn costs at Adam batch 128 (target: dropout <= 10% over plain)."""
    from fastbp.benchmarks import fastbp_network

    data = datasets(np.float32)
    epoch = fastbp_network(data, 128, "adam", **OPTIONS[option])
    benchmark.group = "epoch adam b128 float32"
    benchmark.extra_info.update(competitor=f"option {option}", optimizer="adam", batch_size=128, dtype="float32")
    benchmark.pedantic(epoch, rounds=1 if quick else 3, warmup_rounds=1)

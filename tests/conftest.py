"""Shared helpers: random problems for every output/loss pair and the reference twin of a Network.

The parametrisation comes from the kernels' registries: a new activation or loss is tested everywhere these
lists are used, without editing the tests.
"""

from __future__ import annotations

import os

# One kernel specialization with every branch serves the whole suite (its many activation x loss x dropout
# combinations would each compile ~8 s on their own); tests/test_branches.py checks the specialized kernels
# against it. Subprocesses inherit it.
os.environ.setdefault("FASTBP_KERNELS", "shared")
# The serial step for the suite's fits: the parallel step's all-branch epoch compiles in ~26 s per dtype.
# tests/test_parallel.py checks the parallel step against it (threads=k, or FASTBP_STEP=auto where chosen).
os.environ.setdefault("FASTBP_STEP", "serial")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastbp import Network  # noqa: E402
from fastbp.kernels.activations import ACTIVATIONS as _ACTIVATIONS  # noqa: E402
from fastbp.kernels.losses import DEFAULT_LOSS, LOSSES  # noqa: E402
from fastbp.reference import ReferenceNetwork  # noqa: E402

OUTPUTS = list(LOSSES)  # every output/loss pair, by loss name
ACTIVATIONS = list(_ACTIVATIONS)
# Loss parameters the tests use: a huber delta that leaves residuals on both sides, an asymmetric quantile.
LOSS_OPTIONS = {"delta": 0.7, "quantile": 0.3}


def make_targets(rng: np.random.Generator, output: str, n: int, k: int, dtype) -> np.ndarray:
    """Targets valid for the output activation's losses: one-hot (softmax), 0/1 (logistic), counts (exp), reals."""
    if output == "softmax":
        Y = np.eye(k)[rng.integers(0, k, n)]
    elif output == "logistic":
        Y = rng.integers(0, 2, (n, k))
    elif output == "exp":
        Y = rng.poisson(1.5, (n, k))
    else:
        Y = rng.normal(size=(n, k))
    return Y.astype(dtype)


def make_problem(sizes, hidden, loss, n, dtype=np.float64, seed=0, weighted=False, **options):
    """A network, X, Y and sample weights; ``loss`` names a loss or an output activation (its matched loss)."""
    rng = np.random.default_rng(seed)
    loss = loss if loss in LOSSES else DEFAULT_LOSS[loss]
    output = LOSSES[loss].output
    net = Network(sizes, hidden, output, dtype=dtype, loss=loss, **{**LOSS_OPTIONS, **options}).initialize(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = make_targets(rng, output, n, sizes[-1], dtype)
    w = rng.uniform(0.2, 2.0, n).astype(dtype) if weighted else None
    return net, X, Y, w


def reference_twin(net: Network) -> ReferenceNetwork:
    """A ReferenceNetwork holding copies of ``net``'s parameters."""
    return ReferenceNetwork(
        [c.copy() for c in net.coefs],
        [b.copy() for b in net.intercepts],
        list(net.hidden_activations),
        net.output,
        net.loss,
        net.negative_slope,
        net.loss_parameter,
        list(net.dropout),
    )


def rel_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


@pytest.fixture(params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


def tolerance(dtype) -> float:
    return 1e-10 if dtype == np.float64 else 1e-4

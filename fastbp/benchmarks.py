"""The benchmark workload and every competitor, as plain functions that run one epoch.

Shared by the pytest-benchmark suite (``bench/``) and ``fastbp bench`` (:func:`quick_table`). Each ``make_*`` returns a
zero-argument callable that trains one epoch of 784-256-128-10 (ReLU, softmax cross-entropy) on the
prepared data, with no shuffling and no L2, so every competitor does the same arithmetic on the same rows.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass

import numpy as np

import fastbp
from fastbp import reference
from fastbp._jit import jit
from fastbp.datasets import make_mnist_like
from fastbp.kernels.blas import gemm_accumulate

SIZES = (784, 256, 128, 10)
LEARNING_RATE = {"sgd": 0.01, "adam": 0.001}


@dataclass
class Data:
    X: np.ndarray
    y: np.ndarray
    Y: np.ndarray  # one-hot, X's dtype

    @property
    def dtype(self):
        return self.X.dtype


def load_data(n_samples: int, dtype) -> Data:
    X, y = make_mnist_like(n_samples, random_state=0, dtype=dtype)
    return Data(X, y, np.eye(10, dtype=dtype)[y])


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def gemm_floor(data: Data, batch_size: int, optimizer: str):
    """The products of one epoch, same shapes, back to back from Python into preallocated outputs."""
    dt = data.dtype
    rng = np.random.default_rng(0)
    Ws = [rng.uniform(-0.05, 0.05, (a, b)).astype(dt) for a, b in zip(SIZES[:-1], SIZES[1:])]
    n = data.X.shape[0]

    def buffers(m):
        acts = [np.empty((m, k), dt) for k in SIZES[1:]]
        deltas = [np.empty((m, k), dt) for k in SIZES[1:-1]]
        grads = [np.empty_like(W) for W in Ws]
        return acts, deltas, grads

    full, last = buffers(batch_size), buffers(n % batch_size or batch_size)

    def epoch():
        X = data.X
        for start in range(0, n, batch_size):
            Xb = X[start : start + batch_size]
            acts, deltas, grads = full if Xb.shape[0] == batch_size else last
            np.matmul(Xb, Ws[0], acts[0])
            np.matmul(acts[0], Ws[1], acts[1])
            np.matmul(acts[1], Ws[2], acts[2])
            np.matmul(acts[1].T, acts[2], grads[2])
            np.matmul(acts[2], Ws[2].T, deltas[1])
            np.matmul(acts[0].T, deltas[1], grads[1])
            np.matmul(deltas[1], Ws[1].T, deltas[0])
            np.matmul(Xb.T, deltas[0], grads[0])

    return epoch


def fastbp_network(data: Data, batch_size: int, optimizer: str, shuffle: bool = False, activation="relu", **options):
    """One epoch of ``fastbp.Network.train_epoch``; ``options`` are Network's (dropout, ...)."""
    net = fastbp.Network(SIZES, activation, "softmax", dtype=data.dtype, **options).initialize(0)
    opt = fastbp.Adam(LEARNING_RATE["adam"]) if optimizer == "adam" else fastbp.SGD(LEARNING_RATE["sgd"], 0.0)
    workspace = net.workspace(batch_size)
    rng = np.random.default_rng(0)

    def epoch():
        net.train_epoch(data.X, data.Y, batch_size, opt, shuffle=shuffle, rng=rng, workspace=workspace)

    return epoch


def _mlp_kwargs(batch_size: int, optimizer: str) -> dict:
    return {
        "hidden_layer_sizes": SIZES[1:-1],
        "solver": optimizer,
        "batch_size": batch_size,
        "learning_rate_init": LEARNING_RATE[optimizer],
        "momentum": 0.0,
        "alpha": 0.0,
        "shuffle": False,
        "random_state": 0,
        "max_iter": 1,
    }


def _partial_fit_epoch(estimator, data: Data, batch_size: int):
    """One epoch per call through partial_fit; a first call on one batch initializes outside the timing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.partial_fit(data.X[:batch_size], data.y[:batch_size], classes=np.arange(10))

    def epoch():
        estimator.partial_fit(data.X, data.y)

    return epoch


def fastbp_estimator(data: Data, batch_size: int, optimizer: str):
    return _partial_fit_epoch(fastbp.MLPClassifier(**_mlp_kwargs(batch_size, optimizer)), data, batch_size)


def sklearn_estimator(data: Data, batch_size: int, optimizer: str):
    from sklearn.neural_network import MLPClassifier

    return _partial_fit_epoch(MLPClassifier(**_mlp_kwargs(batch_size, optimizer)), data, batch_size)


def numpy_reference(data: Data, batch_size: int, optimizer: str):
    net = fastbp.Network(SIZES, "relu", "softmax", dtype=data.dtype).initialize(0)
    ref = reference.ReferenceNetwork(
        [c.copy() for c in net.coefs], [b.copy() for b in net.intercepts], ["relu", "relu"], "softmax"
    )
    opt = (
        reference.ReferenceAdam(LEARNING_RATE["adam"])
        if optimizer == "adam"
        else reference.ReferenceSGD(LEARNING_RATE["sgd"], 0.0)
    )

    def epoch():
        reference.train_epoch(ref, data.X, data.Y, batch_size, opt)

    return epoch


def pytorch(data: Data, batch_size: int, optimizer: str):
    import torch

    torch.manual_seed(0)
    dtype = torch.float32 if data.dtype == np.float32 else torch.float64
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    ).to(dtype)
    lr = LEARNING_RATE[optimizer]
    opt = torch.optim.Adam(model.parameters(), lr) if optimizer == "adam" else torch.optim.SGD(model.parameters(), lr)
    X, y = torch.from_numpy(data.X), torch.from_numpy(data.y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        for start in range(0, X.shape[0], batch_size):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[start : start + batch_size]), y[start : start + batch_size])
            loss.backward()
            opt.step()

    return epoch


def jax_scan(data: Data, batch_size: int, optimizer: str):
    """The whole epoch as one jitted ``lax.scan`` over full mini-batches (the remainder as a second call)."""
    import jax
    import jax.numpy as jnp

    if data.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    net = fastbp.Network(SIZES, "relu", "softmax", dtype=data.dtype).initialize(0)
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(net.coefs, net.intercepts)]
    lr = LEARNING_RATE[optimizer]

    def loss_fn(params, X, Y):
        A = X
        for W, b in params[:-1]:
            A = jax.nn.relu(A @ W + b)
        logits = A @ params[-1][0] + params[-1][1]
        return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(logits), axis=1))

    grad_fn = jax.grad(loss_fn)

    def sgd_step(state, batch):
        params = state
        grads = grad_fn(params, *batch)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), None

    def adam_step(state, batch):
        params, m, v, t = state
        grads = grad_fn(params, *batch)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        step = lr * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - step * m / (jnp.sqrt(v) + 1e-8), params, m, v)
        return (params, m, v, t), None

    step = adam_step if optimizer == "adam" else sgd_step

    @jax.jit
    def run(state, Xs, Ys):
        return jax.lax.scan(step, state, (Xs, Ys))[0]

    n_full = data.X.shape[0] // batch_size * batch_size
    Xs = jnp.asarray(data.X[:n_full]).reshape(-1, batch_size, 784)
    Ys = jnp.asarray(data.Y[:n_full]).reshape(-1, batch_size, 10)
    rest = (
        (jnp.asarray(data.X[n_full:])[None], jnp.asarray(data.Y[n_full:])[None]) if n_full < data.X.shape[0] else None
    )
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = [(params, zeros, zeros, 0) if optimizer == "adam" else params]

    def epoch():
        s = run(state[0], Xs, Ys)
        if rest is not None:
            s = run(s, *rest)
        jax.block_until_ready(s)
        state[0] = s

    return epoch


def threads_used(competitor: str) -> int:
    """How many threads a competitor's epoch computes with in this process (the benchmark table's column).

    fastbp, its floors, the NumPy reference and scikit-learn: OpenBLAS's pool (fastbp's parallel step uses as
    many of numba's threads, never more: ``fastbp.threads.step_parts``); PyTorch: ``torch.get_num_threads()``;
    JAX: XLA's CPU client uses every core the process may run on.
    """
    if competitor == "pytorch":
        import torch

        return torch.get_num_threads()
    if competitor == "jax":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    from threadpoolctl import threadpool_info

    return max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1)


def gemm_floor_with_update(data: Data, batch_size: int, optimizer: str):
    """The floor's products, but the weight gradients accumulate into W (``W += a A.T @ D``) as any step must.

    The bare floor never writes W; real training rewrites every weight each step, and the next step's
    products then read the new W. This is the least any optimizer can cost: plain SGD in one gemm per layer.
    Compiled, so that every product goes to the same BLAS library as fastbp's (numba calls scipy's OpenBLAS;
    interleaving it with numpy's, which has its own thread pool, made each call ~30x slower).
    """
    dt = data.dtype
    rng = np.random.default_rng(0)
    W0, W1, W2 = [rng.uniform(-0.05, 0.05, (a, b)).astype(dt) for a, b in zip(SIZES[:-1], SIZES[1:])]
    buffers = [np.empty((batch_size, k), dt) for k in (256, 128, 10, 128, 256)]
    scratch = np.zeros(64, np.uint8)

    def epoch():
        _update_floor_epoch(data.X, W0, W1, W2, batch_size, *buffers, scratch)

    return epoch


@jit
def _update_floor_epoch(X, W0, W1, W2, batch_size, A1, A2, A3, D2, D1, scratch):
    alpha, one = W0.dtype.type(-1e-9), W0.dtype.type(1)
    for start in range(0, X.shape[0] - batch_size + 1, batch_size):  # full batches; the floor's shapes
        Xb = X[start : start + batch_size]
        np.dot(Xb, W0, A1)
        np.dot(A1, W1, A2)
        np.dot(A2, W2, A3)
        np.dot(A3, W2.T, D2)
        gemm_accumulate(A2, A3, W2, alpha, one, scratch)
        np.dot(D2, W1.T, D1)
        gemm_accumulate(A1, D2, W1, alpha, one, scratch)
        gemm_accumulate(Xb, D1, W0, alpha, one, scratch)


def quick_table(n_samples: int = 12000, rounds: int = 2, competitors=None, out=print) -> list[dict]:
    """Time one epoch of every competitor at every row (float32) and print fastbp's ratios.

    The in-process version of ``bench/run.py --quick`` behind ``fastbp bench`` (no pytest-benchmark needed).
    Returns one dict per row with each competitor's best time in seconds.
    """
    import time

    data = load_data(n_samples, np.float32)
    names = competitors or [c for c, (_, module) in COMPETITORS.items() if module is None or has(module)]
    rows = []
    out(f"one epoch, {SIZES}, {n_samples} rows, float32, best of {rounds}; ratios are fastbp / other")
    out(f"{'optimizer':>9} {'batch':>5} {'fastbp s':>9} " + " ".join(f"{n:>16}" for n in names if n != "fastbp"))
    for optimizer, batch_size in [(o, b) for o in ("sgd", "adam") for b in (32, 128, 512)]:
        times = {}
        for name in names:
            epoch = COMPETITORS[name][0](data, batch_size, optimizer)
            epoch()  # warm-up: compilation, caches
            best = np.inf
            for _ in range(rounds):
                start = time.perf_counter()
                epoch()
                best = min(best, time.perf_counter() - start)
            times[name] = best
        rows.append({"optimizer": optimizer, "batch_size": batch_size, **times})
        ratios = " ".join(f"{times['fastbp'] / times[n]:>16.2f}" for n in names if n != "fastbp")
        out(f"{optimizer:>9} {batch_size:>5} {times['fastbp']:>9.3f} {ratios}")
    return rows


COMPETITORS = {
    "gemm_floor": (gemm_floor, None),
    "gemm_floor_with_update": (gemm_floor_with_update, None),
    "fastbp": (fastbp_network, None),
    "fastbp_estimator": (fastbp_estimator, None),
    "numpy_reference": (numpy_reference, None),
    "sklearn": (sklearn_estimator, None),
    "pytorch": (pytorch, "torch"),
    "jax": (jax_scan, "jax"),
}

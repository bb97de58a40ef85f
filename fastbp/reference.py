"""The same network, losses and optimizers in plain NumPy: readable as a textbook, no Numba.

This is the oracle the tests compare every kernel with, and the rival the benchmarks race. It uses
per-layer arrays (not fastbp's flat buffer) and multi-pass NumPy expressions on purpose: it should look like
the math, not like the fast code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastbp.kernels.activations import ACTIVATIONS as _ACTIVATIONS
from fastbp.kernels.losses import DEFAULT_LOSS
from fastbp.kernels.losses import LOSSES as _LOSSES

# The activations' and losses' math lives next to their kernels, in plain NumPy: one registry each.
ACTIVATIONS = {name: (entry.reference, entry.reference_derivative) for name, entry in _ACTIVATIONS.items()}
LOSSES = {
    name: (entry.reference_output, entry.reference_loss, entry.reference_error) for name, entry in _LOSSES.items()
}


def _mix32(x):
    """The dropout kernels' 32-bit hash (fastbp.kernels.dropout.mix32), on uint64 arrays."""
    x = np.asarray(x, dtype=np.uint64) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x21F0AAAD)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0xD35A2D97)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(15)
    return x


_GOLDEN = np.uint64(0x9E3779B9)


def dropout_mask(batch_key: int, layer: int, shape: tuple[int, int], rate: float) -> np.ndarray:
    """Which units of hidden layer ``layer`` a batch with key ``batch_key`` keeps (bool array of ``shape``)."""
    key = _mix32(np.uint64(batch_key) + _mix32(layer + 1) * _GOLDEN)
    counters = np.arange(shape[0] * shape[1], dtype=np.uint64).reshape(shape)
    return _mix32(key + counters * _GOLDEN) >= np.uint64(round(rate * 2.0**32))


def batch_key(dropout_seed: int, batch: int) -> int:
    """The mask key of the epoch's batch number ``batch`` (counted from 0): ``kernels.dropout.batch_key``."""
    return int(_mix32(np.uint64(dropout_seed) + _mix32(batch) * _GOLDEN))


@dataclass
class ReferenceNetwork:
    """Per-layer weights ``coefs[l]`` (fan_in, fan_out) and ``intercepts[l]``; one activation per hidden layer.

    ``output`` is the output activation; ``loss`` a name in ``LOSSES`` for it (default: its matched loss),
    ``loss_parameter`` huber's delta or the quantile. ``dropout``: one rate per hidden layer.
    """

    coefs: list[np.ndarray]
    intercepts: list[np.ndarray]
    hidden_activations: list[str]
    output: str
    loss: str | None = None
    negative_slope: float = 0.01
    loss_parameter: float = 0.0
    dropout: list[float] | None = None

    def __post_init__(self):
        self.loss = DEFAULT_LOSS[self.output] if self.loss is None else self.loss
        self.dropout = [0.0] * len(self.hidden_activations) if self.dropout is None else list(self.dropout)

    def forward(self, X: np.ndarray, dropout_key: int | None = None) -> list[np.ndarray]:
        """All layer outputs, input first: ``[X, A_1, ..., y_hat]`` (with dropout if a mask key is given)."""
        activations, self._z, self._kept = [X], [], []
        for l, (W, b) in enumerate(zip(self.coefs, self.intercepts)):
            z = activations[-1] @ W + b
            if l == len(self.coefs) - 1:
                activations.append(LOSSES[self.loss][0](z))
                break
            a = ACTIVATIONS[self.hidden_activations[l]][0](z, self.negative_slope)
            rate = self.dropout[l]
            kept = None
            if dropout_key is not None and rate > 0:
                kept = dropout_mask(dropout_key, l, a.shape, rate)
                a = np.where(kept, a / (1 - rate), 0)
            self._z.append(z)
            self._kept.append(kept)
            activations.append(a)
        return activations

    def loss_and_gradients(self, X, Y, sample_weight=None, alpha=0.0, dropout_key=None):
        """Loss ``sum_i w_i loss_i / sum(w) + alpha ||W||^2 / (2 sum(w))`` and per-layer gradients."""
        w = np.ones(X.shape[0], dtype=X.dtype) if sample_weight is None else sample_weight
        n = w.sum()
        activations = self.forward(X, dropout_key)
        y_hat = activations[-1]
        _, per_element_loss, output_error = LOSSES[self.loss]
        p = self.loss_parameter
        loss = (w * per_element_loss(Y, y_hat, p).sum(axis=1)).sum() / n
        loss += 0.5 * alpha * sum((W**2).sum() for W in self.coefs) / n
        delta = output_error(Y, y_hat, p) * w[:, None]
        grad_W = [None] * len(self.coefs)
        grad_b = [None] * len(self.coefs)
        for l in range(len(self.coefs) - 1, -1, -1):
            grad_W[l] = (activations[l].T @ delta + alpha * self.coefs[l]) / n
            grad_b[l] = delta.sum(axis=0) / n
            if l > 0:
                f, derivative = ACTIVATIONS[self.hidden_activations[l - 1]]
                z = self._z[l - 1]
                delta = (delta @ self.coefs[l].T) * derivative(z, f(z, self.negative_slope), self.negative_slope)
                if self._kept[l - 1] is not None:
                    delta = np.where(self._kept[l - 1], delta / (1 - self.dropout[l - 1]), 0)
        return loss, grad_W, grad_b

    @property
    def params(self) -> list[np.ndarray]:
        return self.coefs + self.intercepts


@dataclass
class ReferenceSGD:
    """scikit-learn's SGD update: ``v = mu v - lr g``; ``p += v`` or, Nesterov, ``p += mu v - lr g``."""

    learning_rate: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    velocities: list | None = field(default=None, repr=False)

    def step(self, params, grads):
        if self.velocities is None:
            self.velocities = [np.zeros_like(p) for p in params]
        self.velocities = [self.momentum * v - self.learning_rate * g for v, g in zip(self.velocities, grads)]
        for p, v, g in zip(params, self.velocities, grads):
            p += self.momentum * v - self.learning_rate * g if self.nesterov else v


@dataclass
class ReferenceAdam:
    """scikit-learn's Adam: moments, then ``p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``."""

    learning_rate: float = 0.001
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    t: int = 0
    ms: list | None = field(default=None, repr=False)
    vs: list | None = field(default=None, repr=False)

    def step(self, params, grads):
        if self.ms is None:
            self.ms = [np.zeros_like(p) for p in params]
            self.vs = [np.zeros_like(p) for p in params]
        self.t += 1
        self.ms = [self.beta_1 * m + (1 - self.beta_1) * g for m, g in zip(self.ms, grads)]
        self.vs = [self.beta_2 * v + (1 - self.beta_2) * g**2 for v, g in zip(self.vs, grads)]
        step_size = self.learning_rate * np.sqrt(1 - self.beta_2**self.t) / (1 - self.beta_1**self.t)
        for p, m, v in zip(params, self.ms, self.vs):
            p -= step_size * m / (np.sqrt(v) + self.epsilon)


def train_epoch(
    net, X, Y, batch_size, optimizer, order=None, sample_weight=None, alpha=0.0, dropout_seed=None
) -> float:
    """One epoch, batch by batch, in the given row order; returns the rows-weighted mean batch loss."""
    n = X.shape[0]
    order = np.arange(n) if order is None else order
    total = 0.0
    for batch, start in enumerate(range(0, n, batch_size)):
        idx = order[start : start + batch_size]
        w = None if sample_weight is None else sample_weight[idx]
        key = None if dropout_seed is None else batch_key(dropout_seed, batch)
        loss, grad_W, grad_b = net.loss_and_gradients(X[idx], Y[idx], w, alpha, key)
        optimizer.step(net.params, grad_W + grad_b)
        total += loss * len(idx)
    return total / n

"""The same network, losses and optimizers in plain NumPy: readable as a textbook, no Numba.

This is the oracle the tests compare every kernel with, and the rival the benchmarks race. It uses
per-layer arrays (not fastbp's flat buffer) and multi-pass NumPy expressions on purpose: it should look like
the math, not like the fast code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Each hidden activation: f(z), and f' written in terms of a = f(z).
ACTIVATIONS = {
    "identity": (lambda z: z, lambda a: np.ones_like(a)),
    "logistic": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a**2),
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _xlogy(x, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0, x * np.log(y))


def _clip(p):
    eps = np.finfo(p.dtype).eps
    return np.clip(p, eps, 1 - eps)


# Each output activation with its loss per sample (summed over outputs); the output error is y_hat - y.
OUTPUTS = {
    "identity": (lambda z: z, lambda y, p: 0.5 * ((p - y) ** 2).sum(axis=1)),
    "logistic": (
        ACTIVATIONS["logistic"][0],
        lambda y, p: -(_xlogy(y, _clip(p)) + _xlogy(1 - y, 1 - _clip(p))).sum(axis=1),
    ),
    "softmax": (softmax, lambda y, p: -_xlogy(y, _clip(p)).sum(axis=1)),
    "exp": (np.exp, lambda y, p: (_xlogy(y, y / p) - y + p).sum(axis=1)),
}


@dataclass
class ReferenceNetwork:
    """Per-layer weights ``coefs[l]`` (fan_in, fan_out) and ``intercepts[l]``; one activation per hidden layer."""

    coefs: list[np.ndarray]
    intercepts: list[np.ndarray]
    hidden_activations: list[str]
    output: str

    def forward(self, X: np.ndarray) -> list[np.ndarray]:
        """All layer outputs, input first: ``[X, A_1, ..., y_hat]``."""
        activations = [X]
        for l, (W, b) in enumerate(zip(self.coefs, self.intercepts)):
            z = activations[-1] @ W + b
            last = l == len(self.coefs) - 1
            f = OUTPUTS[self.output][0] if last else ACTIVATIONS[self.hidden_activations[l]][0]
            activations.append(f(z))
        return activations

    def loss_and_gradients(self, X, Y, sample_weight=None, alpha=0.0):
        """Loss ``sum_i w_i loss_i / sum(w) + alpha ||W||^2 / (2 sum(w))`` and per-layer gradients."""
        w = np.ones(X.shape[0], dtype=X.dtype) if sample_weight is None else sample_weight
        n = w.sum()
        activations = self.forward(X)
        y_hat = activations[-1]
        loss = (w * OUTPUTS[self.output][1](Y, y_hat)).sum() / n
        loss += 0.5 * alpha * sum((W**2).sum() for W in self.coefs) / n
        delta = (y_hat - Y) * w[:, None]  # the output error, the same for every output/loss pair
        grad_W = [None] * len(self.coefs)
        grad_b = [None] * len(self.coefs)
        for l in range(len(self.coefs) - 1, -1, -1):
            grad_W[l] = (activations[l].T @ delta + alpha * self.coefs[l]) / n
            grad_b[l] = delta.sum(axis=0) / n
            if l > 0:
                derivative = ACTIVATIONS[self.hidden_activations[l - 1]][1]
                delta = (delta @ self.coefs[l].T) * derivative(activations[l])
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


def train_epoch(net, X, Y, batch_size, optimizer, order=None, sample_weight=None, alpha=0.0) -> float:
    """One epoch, batch by batch, in the given row order; returns the rows-weighted mean batch loss."""
    n = X.shape[0]
    order = np.arange(n) if order is None else order
    total = 0.0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        w = None if sample_weight is None else sample_weight[idx]
        loss, grad_W, grad_b = net.loss_and_gradients(X[idx], Y[idx], w, alpha)
        optimizer.step(net.params, grad_W + grad_b)
        total += loss * len(idx)
    return total / n

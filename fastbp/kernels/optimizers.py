"""Fused optimizer steps over the flat parameter buffer, scikit-learn's formulas.

One pass per step: each gradient element is read once, each parameter and state element is read and written
once. The gradient buffer holds raw sums; the step forms the true gradient on the fly,

    g = grad * scale + l2 * p        (l2 only for weights: indices below ``n_weights``)

with ``scale = 1 / sum(w)`` and ``l2 = alpha / sum(w)``. Each step returns the squared norm of the new
weights and of the new biases: the next batch's L2 penalty needs the first, and both together tell whether
any parameter became inf or NaN, at no extra pass.
"""

from __future__ import annotations

import numpy as np

from fastbp._jit import jit

SGD, ADAM = 0, 1


@jit(inline="always")
def sgd_range(params, grads, velocity, start, stop, learning_rate, momentum, nesterov, scale, l2):
    """SGD on params[start:stop]: ``v = mu v - lr g``; ``p += v`` (or ``p += mu v - lr g``, Nesterov)."""
    sq = params.dtype.type(0)
    if momentum == 0:  # plain SGD needs no velocity
        for i in range(start, stop):
            p = params[i] - learning_rate * (grads[i] * scale + l2 * params[i])
            params[i] = p
            sq += p * p
    elif nesterov:
        for i in range(start, stop):
            step = learning_rate * (grads[i] * scale + l2 * params[i])
            v = momentum * velocity[i] - step
            velocity[i] = v
            p = params[i] + momentum * v - step
            params[i] = p
            sq += p * p
    else:
        for i in range(start, stop):
            v = momentum * velocity[i] - learning_rate * (grads[i] * scale + l2 * params[i])
            velocity[i] = v
            p = params[i] + v
            params[i] = p
            sq += p * p
    return sq


@jit
def sgd_step(params, grads, velocity, n_weights, learning_rate, momentum, nesterov, scale, l2):
    """One SGD step over every parameter; returns (squared norm of weights, of biases)."""
    zero = params.dtype.type(0)
    w_sq = sgd_range(params, grads, velocity, 0, n_weights, learning_rate, momentum, nesterov, scale, l2)
    b_sq = sgd_range(params, grads, velocity, n_weights, params.size, learning_rate, momentum, nesterov, scale, zero)
    return w_sq, b_sq


@jit(inline="always")
def adam_range(params, grads, m, v, start, stop, step_size, beta_1, beta_2, epsilon, scale, l2):
    """Adam on params[start:stop]; ``step_size`` already holds the bias correction."""
    one = params.dtype.type(1)
    sq = params.dtype.type(0)
    for i in range(start, stop):
        g = grads[i] * scale + l2 * params[i]
        mi = beta_1 * m[i] + (one - beta_1) * g
        vi = beta_2 * v[i] + (one - beta_2) * g * g
        m[i] = mi
        v[i] = vi
        p = params[i] - step_size * mi / (np.sqrt(vi) + epsilon)
        params[i] = p
        sq += p * p
    return sq


@jit
def adam_step(params, grads, m, v, n_weights, step_size, beta_1, beta_2, epsilon, scale, l2):
    """One Adam step over every parameter; returns (squared norm of weights, of biases).

    ``step_size = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`` (scikit-learn's bias correction).
    """
    zero = params.dtype.type(0)
    w_sq = adam_range(params, grads, m, v, 0, n_weights, step_size, beta_1, beta_2, epsilon, scale, l2)
    b_sq = adam_range(params, grads, m, v, n_weights, params.size, step_size, beta_1, beta_2, epsilon, scale, zero)
    return w_sq, b_sq


@jit
def squared_norm(x, start, stop):
    s = x.dtype.type(0)
    for i in range(start, stop):
        s += x[i] * x[i]
    return s

"""Fused optimizer steps over the flat parameter buffer, scikit-learn's formulas.

One pass per step: each gradient element is read once, each parameter and state element is read and written
once. The gradient buffer holds raw sums; the step forms the true gradient on the fly,

    g = grad * scale + l2 * p        (l2 only for weights: indices below ``n_weights``)

with ``scale = 1 / sum(w)`` and ``l2 = alpha / sum(w)``. Each step returns the squared norm of the new
weights and of the new biases: the next batch's L2 penalty needs the first, and both together tell whether
any parameter became inf or NaN, at no extra pass.

Optimizer state is flushed to zero once it falls below the smallest normal float (``flush_subnormal``). A unit
whose gradient is exactly zero (a dead ReLU) decays its momentum by ``beta_1`` every step; after ~800 steps it
reaches the subnormal range, where every multiply takes a microcode assist on x86. Measured: Adam at batch 32
went from 620 us per step in the first 200 steps to 3,000 us averaged over the epoch, and back to a steady
~620 us with the flush (``python bench/subnormals.py``). Setting the CPU's flush-to-zero mode would change the
whole process's arithmetic; flushing the state alone changes an update by less than ``lr * tiny / epsilon``.
"""

from __future__ import annotations

import numpy as np

from fastbp._jit import jit

SGD, ADAM = 0, 1


@jit(inline="always")
def flush_subnormal(x, tiny, zero):
    """0 for |x| < tiny (the smallest normal number); x otherwise, NaN and inf included."""
    return zero if abs(x) < tiny else x


@jit(inline="always")
def sgd_range(params, grads, velocity, start, stop, learning_rate, momentum, nesterov, scale, l2):
    """SGD on params[start:stop]: ``v = mu v - lr g``; ``p += v`` (or ``p += mu v - lr g``, Nesterov)."""
    zero = params.dtype.type(0)
    tiny = params.dtype.type(np.finfo(params.dtype).tiny)
    sq = zero
    if momentum == 0:  # plain SGD needs no velocity
        for i in range(start, stop):
            p = params[i] - learning_rate * (grads[i] * scale + l2 * params[i])
            params[i] = p
            sq += p * p
    elif nesterov:
        for i in range(start, stop):
            step = learning_rate * (grads[i] * scale + l2 * params[i])
            v = flush_subnormal(momentum * velocity[i] - step, tiny, zero)
            velocity[i] = v
            p = params[i] + momentum * v - step
            params[i] = p
            sq += p * p
    else:
        for i in range(start, stop):
            v = flush_subnormal(
                momentum * velocity[i] - learning_rate * (grads[i] * scale + l2 * params[i]), tiny, zero
            )
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
    zero = params.dtype.type(0)
    tiny = params.dtype.type(np.finfo(params.dtype).tiny)
    sq = zero
    # below this |g|, (1 - beta_2) g^2 would be subnormal (slow) and is anyway far below what epsilon hides
    g_floor = params.dtype.type(np.sqrt(np.finfo(params.dtype).tiny / (1 - beta_2)))
    for i in range(start, stop):
        g = grads[i] * scale + l2 * params[i]
        mi = flush_subnormal(beta_1 * m[i] + (one - beta_1) * g, tiny, zero)
        g_sq = flush_subnormal(g, g_floor, zero)
        vi = flush_subnormal(beta_2 * v[i] + (one - beta_2) * g_sq * g_sq, tiny, zero)
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

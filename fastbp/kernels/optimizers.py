"""Fused optimizer steps, scikit-learn's formulas, applied layer by layer inside the backward pass.

One pass per step: each gradient element is read once, each parameter and state element is read and written
once. ``dense.network_forward_backward`` calls :func:`update_range` for layer l's W and b as soon as their
gradients exist and W is no longer needed for ``delta_prev``, while the gradient is still in cache: measured
at batch 32, updating the whole buffer after the backward pass cost ~170 us more per step than the update
itself (gemm output written by two BLAS threads, then read back by one core; docs/design.md).

The gradient buffer holds raw sums; the step forms the true gradient on the fly,

    g = grad * scale + l2 * p        (l2 only for weights: indices below ``n_weights``)

with ``scale = 1 / sum(w)`` and ``l2 = alpha / sum(w)``. Each step returns the squared norm of the new
weights and of the new biases: the next batch's L2 penalty needs the first, and both together tell whether
any parameter became inf or NaN, at no extra pass.

Optimizer state is flushed to zero once it falls below the smallest normal float (``flush_subnormal``). A unit
whose gradient is exactly zero (a dead ReLU) decays its momentum by ``beta_1`` every step; after ~800 steps it
reaches the subnormal range, where every multiply takes a microcode assist on x86. Measured: Adam at batch 32
went from 620 us per step in the first 200 steps to 3,000 us averaged over the epoch, and back to a steady
~620 us with the flush (docs/design.md). Setting the CPU's flush-to-zero mode would change the
whole process's arithmetic; flushing the state alone changes an update by less than ``lr * tiny / epsilon``.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from fastbp._jit import jit
from fastbp.kernels.constants import tiny_of

NO_UPDATE, SGD, ADAM = -1, 0, 1
# One step's settings. For Adam ``learning_rate`` is the bias-corrected step size of this step; ``scale`` is
# ``1 / sum(w)`` of the batch's sample weights.
Step = namedtuple("Step", "code learning_rate momentum nesterov beta_1 beta_2 epsilon scale")


@jit(inline="always")
def flush_subnormal(x, tiny, zero):
    """0 for |x| < tiny (the smallest normal number); x otherwise, NaN and inf included."""
    return zero if abs(x) < tiny else x


@jit(inline="always")
def sgd_loop(params, grads, velocity, learning_rate, momentum, nesterov, scale, l2):
    """SGD on every element: ``v = mu v - lr g``; ``p += v`` (or ``p += mu v - lr g``, Nesterov)."""
    zero = params.dtype.type(0)
    tiny = tiny_of(params)
    sq = zero
    if momentum == 0:  # plain SGD needs no velocity
        for i in range(params.size):
            p = params[i] - learning_rate * (grads[i] * scale + l2 * params[i])
            params[i] = p
            sq += p * p
    elif nesterov:
        for i in range(params.size):
            step = learning_rate * (grads[i] * scale + l2 * params[i])
            v = flush_subnormal(momentum * velocity[i] - step, tiny, zero)
            velocity[i] = v
            p = params[i] + momentum * v - step
            params[i] = p
            sq += p * p
    else:
        for i in range(params.size):
            v = flush_subnormal(
                momentum * velocity[i] - learning_rate * (grads[i] * scale + l2 * params[i]), tiny, zero
            )
            velocity[i] = v
            p = params[i] + v
            params[i] = p
            sq += p * p
    return sq


@jit(inline="always")
def adam_loop(params, grads, m, v, step_size, beta_1, beta_2, epsilon, scale, l2):
    """Adam on every element; ``step_size`` already holds the bias correction."""
    one = params.dtype.type(1)
    zero = params.dtype.type(0)
    tiny = tiny_of(params)
    sq = zero
    # below this |g|, (1 - beta_2) g^2 would be subnormal (slow) and is anyway far below what epsilon hides
    g_floor = np.sqrt(tiny / (one - beta_2))
    for i in range(params.size):
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
def update_range(params, grads, state_a, state_b, start, stop, l2, step):
    """One optimizer step (a :data:`Step`) on ``params[start:stop]``; returns the squared norm of the new values.

    ``state_a`` is the velocity (SGD) or first moment (Adam), ``state_b`` the second moment.
    """
    # The loops run over views, not over range(start, stop) of the whole buffers: with a start that LLVM
    # cannot prove non-negative, numba's negative-index wraparound kept them from vectorizing (3-5x slower).
    p, g = params[start:stop], grads[start:stop]
    if step.code == ADAM:
        m, v = state_a[start:stop], state_b[start:stop]
        return adam_loop(p, g, m, v, step.learning_rate, step.beta_1, step.beta_2, step.epsilon, step.scale, l2)
    return sgd_loop(p, g, state_a[start:stop], step.learning_rate, step.momentum, step.nesterov, step.scale, l2)


@jit
def squared_norm(x):
    s = x.dtype.type(0)
    for i in range(x.size):
        s += x[i] * x[i]
    return s

"""Whole-epoch training and full-batch loss/gradient, each one compiled call.

``train_epoch`` runs every mini-batch of an epoch (gather, forward, loss, backward, fused update) with no
Python in between; the Python caller draws the permutation, keeps the epoch loop, and checks the result.
"""

from __future__ import annotations

import numpy as np

from fastbp._jit import jit
from fastbp.kernels.dense import network_forward_backward
from fastbp.kernels.optimizers import ADAM, adam_step, sgd_step, squared_norm


@jit
def gather_rows(source, order, start, m, target):
    """``target[:m] = source[order[start:start + m]]``, returned as an (m, k) view of target."""
    for r in range(m):
        target[r, :] = source[order[start + r], :]
    return target[:m]


@jit
def train_epoch(
    X,
    Y,
    sample_weight,
    order,
    batch_size,
    params,
    grads,
    layers,
    hidden_codes,
    output_code,
    n_weights,
    alpha,
    optimizer_code,
    learning_rate,
    momentum,
    nesterov,
    beta_1,
    beta_2,
    epsilon,
    adam_t,
    state_a,
    state_b,
    X_batch,
    Y_batch,
    weight_batch,
    acts,
    delta_a,
    delta_b,
):
    """Train one epoch; returns ``(sum over batches of batch_loss * batch_rows, rows done, adam_t)``.

    ``order`` is the permutation of the rows (size 0: the rows in order, read in place without a copy).
    ``sample_weight`` of size 0 means unit weights. ``state_a``/``state_b`` are the velocity (SGD) or the
    first and second moments (Adam). The epoch stops early, with ``rows done < n``, as soon as a batch's loss
    or the parameters stop being finite; the caller then discards the parameters.
    """
    n = X.shape[0]
    dtype = params.dtype.type
    zero = dtype(0)
    half_alpha = dtype(0.5) * alpha
    weighted = sample_weight.shape[0] > 0
    shuffled = order.shape[0] > 0
    w_sq = squared_norm(params, 0, n_weights)
    total = 0.0
    start = 0
    while start < n:
        m = min(batch_size, n - start)
        sw_sum = dtype(m)
        wb = weight_batch[:0]
        if weighted:
            wb = weight_batch[:m]
            sw_sum = zero
            for r in range(m):
                wb[r] = sample_weight[order[start + r]] if shuffled else sample_weight[start + r]
                sw_sum += wb[r]
        capacity = X_batch.shape[0]
        if shuffled:
            Xb = gather_rows(X, order, start, m, X_batch)
            Yb = gather_rows(Y, order, start, m, Y_batch)
            data_loss = network_forward_backward(
                Xb, Yb, wb, params, grads, layers, hidden_codes, output_code, acts, capacity, delta_a, delta_b
            )
        else:  # two calls, not one with a shared variable: X may be read-only, the batch buffer is not
            Xb = X[start : start + m]
            Yb = Y[start : start + m]
            data_loss = network_forward_backward(
                Xb, Yb, wb, params, grads, layers, hidden_codes, output_code, acts, capacity, delta_a, delta_b
            )
        batch_loss = (data_loss + half_alpha * w_sq) / sw_sum
        scale = dtype(1) / sw_sum
        l2 = alpha * scale
        if optimizer_code == ADAM:
            adam_t += 1
            correction = np.sqrt(1.0 - np.float64(beta_2) ** adam_t) / (1.0 - np.float64(beta_1) ** adam_t)
            step_size = dtype(learning_rate * correction)
            w_sq, b_sq = adam_step(
                params, grads, state_a, state_b, n_weights, step_size, beta_1, beta_2, epsilon, scale, l2
            )
        else:
            w_sq, b_sq = sgd_step(params, grads, state_a, n_weights, learning_rate, momentum, nesterov, scale, l2)
        if not (np.isfinite(batch_loss) and np.isfinite(w_sq + b_sq)):
            break
        total += float(batch_loss) * m
        start += m
    return total, start, adam_t


@jit
def loss_and_gradient(
    X, Y, sample_weight, params, grads, layers, hidden_codes, output_code, n_weights, alpha, acts, delta_a, delta_b
):
    """Full-batch loss (with the L2 penalty) and its exact gradient, written into ``grads``."""
    dtype = params.dtype.type
    m = X.shape[0]
    sw_sum = dtype(m)
    if sample_weight.shape[0] > 0:
        sw_sum = dtype(0)
        for r in range(m):
            sw_sum += sample_weight[r]
    data_loss = network_forward_backward(
        X, Y, sample_weight, params, grads, layers, hidden_codes, output_code, acts, m, delta_a, delta_b
    )
    scale = dtype(1) / sw_sum
    l2 = alpha * scale
    for i in range(n_weights):
        grads[i] = grads[i] * scale + l2 * params[i]
    for i in range(n_weights, params.size):
        grads[i] = grads[i] * scale
    return (data_loss + dtype(0.5) * alpha * squared_norm(params, 0, n_weights)) / sw_sum

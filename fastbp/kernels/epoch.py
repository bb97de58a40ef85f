"""Whole-epoch training and full-batch loss/gradient, each one compiled call.

``train_epoch`` runs every mini-batch of an epoch (gather, forward, loss, backward with the fused update)
with no Python in between; the Python caller draws the permutation, keeps the epoch loop, and checks the
result.
"""

from __future__ import annotations

import numpy as np

from fastbp._jit import jit
from fastbp.kernels.dense import Model, Scratch, network_forward_backward
from fastbp.kernels.dropout import batch_key
from fastbp.kernels.inputs import input_gather, input_rows, n_rows
from fastbp.kernels.optimizers import ADAM, NO_UPDATE, Step, squared_norm
from fastbp.kernels.parallel import forward_backward_step


@jit
def batch_weights(sample_weight, order, start, m, target):
    """The batch's sample weights in ``target[:m]`` and their sum (``m`` and an empty view if unweighted)."""
    dtype = target.dtype.type
    if sample_weight.shape[0] == 0:
        return target[:0], dtype(m)
    total = dtype(0)
    for r in range(m):
        w = sample_weight[order[start + r]] if order.shape[0] > 0 else sample_weight[start + r]
        target[r] = w
        total += w
    return target[:m], total


@jit
def train_epoch(
    branches, X, Y, sample_weight, order, batch_size, params, grads, model, n_weights, alpha, settings, step_rates,
    adam_t, state_a, state_b, X_batch, Y_batch, weight_batch, scratch, dropout_seed, parts,
):  # fmt: skip
    """Train one epoch; returns ``(sum over batches of batch_loss * batch_rows, rows done, adam_t)``.

    ``model``, ``scratch`` and ``settings``: plain tuples in ``dense.Model``, ``dense.Scratch`` and
    ``optimizers.Step`` order (see :mod:`fastbp.kernels.dense`); ``settings`` holds the optimizer's code and
    hyperparameters (its ``scale`` is unused). ``X`` is a dense array or a CSR tuple
    (:mod:`fastbp.kernels.inputs`); ``X_batch`` the matching gather buffer (a 2-D array, or CSR buffers),
    for ``scratch.capacity`` rows. ``order`` lists the rows to visit, each at most once (a permutation of all
    rows, or of the training rows when a validation set is held out); size 0: every row in order, read in
    place without a copy. ``sample_weight`` of size 0 means unit weights. ``step_rates`` holds one learning
    rate per batch (a schedule stepped inside the epoch) or nothing (``settings.learning_rate`` throughout).
    ``state_a``/``state_b`` are the velocity (SGD) or the first and second moments (Adam). ``dropout_seed``
    (0 to 2^32 - 1) keys this epoch's dropout masks, one key per batch; -1 for none. The epoch stops early,
    with ``rows done < n``, as soon as a batch's loss or the parameters stop being finite; the caller then
    discards the parameters. ``branches`` (:class:`fastbp.kernels.branches.Branches`): the activations,
    losses and dropout this specialization compiles in, and whether each step is the parallel one over
    ``parts`` threads (:mod:`fastbp.kernels.parallel`; ``X`` dense, no dropout) or the serial one.
    """
    model, scratch, settings = Model(*model), Scratch(*scratch), Step(*settings)  # plain tuples from Python
    n = order.shape[0] if order.shape[0] > 0 else n_rows(X)
    dtype = params.dtype.type
    half_alpha = dtype(0.5) * alpha
    w_sq = squared_norm(params[:n_weights])  # the first batch's L2 penalty; later ones come from the update
    total = 0.0
    start = 0
    batch = 0
    while start < n:
        m = min(batch_size, n - start)
        wb, sw_sum = batch_weights(sample_weight, order, start, m, weight_batch)
        scale = dtype(1) / sw_sum
        step_size = step_rates[batch] if step_rates.shape[0] > 0 else settings.learning_rate
        dropout_key = batch_key(dropout_seed, batch) if dropout_seed >= 0 else -1
        batch += 1
        if settings.code == ADAM:
            adam_t += 1
            correction = np.sqrt(1.0 - np.float64(settings.beta_2) ** adam_t) / (
                1.0 - np.float64(settings.beta_1) ** adam_t
            )
            step_size = dtype(step_size * correction)
        step = Step(
            settings.code, step_size, settings.momentum, settings.nesterov, settings.beta_1, settings.beta_2,
            settings.epsilon, scale,
        )  # fmt: skip
        penalty = half_alpha * w_sq
        if order.shape[0] > 0:
            Xb = input_gather(X, order, start, m, X_batch)
            Yb = input_gather(Y, order, start, m, Y_batch)
            data_loss, w_sq, b_sq = forward_backward_step(
                branches, Xb, Yb, wb, params, grads, model, scratch, state_a, state_b, alpha * scale, step, dropout_key,
                parts,
            )  # fmt: skip
        else:  # two calls, not one with a shared variable: X may be read-only, the batch buffer is not
            data_loss, w_sq, b_sq = forward_backward_step(
                branches, input_rows(X, start, m), Y[start : start + m], wb, params, grads, model, scratch, state_a,
                state_b, alpha * scale, step, dropout_key, parts,
            )  # fmt: skip
        batch_loss = (data_loss + penalty) * scale
        if not (np.isfinite(batch_loss) and np.isfinite(w_sq + b_sq)):
            break
        total += float(batch_loss) * m
        start += m
    return total, start, adam_t


@jit
def loss_and_gradient(branches, X, Y, sample_weight, params, grads, model, n_weights, alpha, scratch, dropout_key):
    """Full-batch loss (with the L2 penalty) and its exact gradient, written into ``grads``.

    ``dropout_key`` >= 0 applies dropout with that mask key (:mod:`fastbp.kernels.dropout`); -1 none.
    ``branches``: as in :func:`train_epoch`.
    """
    model, scratch = Model(*model), Scratch(*scratch)  # plain tuples from Python (see kernels.dense)
    dtype = params.dtype.type
    m = n_rows(X)
    no_order = np.empty(0, dtype=np.int64)
    weights, sw_sum = batch_weights(sample_weight, no_order, 0, m, np.empty(m, dtype=params.dtype))
    zero = dtype(0)
    no_step = Step(NO_UPDATE, zero, zero, False, zero, zero, zero, zero)
    data_loss, _, _ = network_forward_backward(
        branches, X, Y, weights, params, grads, model, scratch, params[:0], params[:0], zero, no_step, dropout_key, 1
    )
    scale = dtype(1) / sw_sum
    l2 = alpha * scale
    for i in range(n_weights):
        grads[i] = grads[i] * scale + l2 * params[i]
    for i in range(n_weights, params.size):
        grads[i] = grads[i] * scale
    return (data_loss + dtype(0.5) * alpha * squared_norm(params[:n_weights])) * scale

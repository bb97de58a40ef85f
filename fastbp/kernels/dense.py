"""Dense layers: forward, backward and the network-wide passes built from them.

The matrix products go to BLAS: ``np.dot(a, b, out)`` (numba passes transposed views as transpose flags,
without copies), and for the weight gradient ``inputs.input_transpose_times``, which accumulates into its
output (plain SGD's step is that product). Everything around them is one fused pass each:

forward, layer l      Z = A_prev @ W                      (BLAS)
                      A = f(Z + b)                        (activations.bias_activation_forward)
                      A = A * mask / (1 - p)              (dropout.dropout_forward; training with dropout only)
output layer          y_hat, loss, delta = w error(y, y_hat), db = sum(delta)   (losses.output_loss_backward)
backward, layer l     delta_prev = delta @ W.T            (BLAS, skipped for the first layer)
                      dW = A_prev.T @ delta and the step  (BLAS; or W += -lr/n A_prev.T @ delta, plain SGD)
                      delta_prev *= mask / (1 - p)        (dropout.dropout_backward)
                      delta_prev *= f'(A_prev), db_prev = sum(delta_prev)   (activations.activation_backward)

``kernels/parallel.py`` runs the same step with each product and pass split over numba's threads.

Parameters live in one flat buffer: every layer's W (row-major, shape (fan_in, fan_out)) in order, then every
layer's b, the order of scikit-learn's ``_pack``. Gradients use the same layout. The network reaches the
kernels as one :data:`Model` tuple: ``layers`` is an int64 table with one row per layer ``(W offset, fan_in,
fan_out, b offset)``; per hidden layer an activation code and parameter and the dropout threshold
(``p * 2^32``, 0 for none), scale ``1 / (1 - p)`` and keep fraction ``1 - p``; the output/loss code and the
loss's parameter. Scratch buffers travel as one :data:`Scratch` tuple. The kernels Python calls
(``network_forward``, ``hidden_forward``, ``epoch.train_epoch``, ``epoch.loss_and_gradient``) take both as plain
tuples in these fields' order and name them inside: numba dispatches a plain tuple in C and a namedtuple in
Python (measured, one 8-field argument: 0.61 us a call as a tuple, 1.22 us as a namedtuple).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from fastbp._jit import jit
from fastbp.kernels.activations import activation_backward, bias_activation_forward
from fastbp.kernels.branches import all_branches
from fastbp.kernels.dropout import dropout_backward_for, dropout_forward_for, layer_key
from fastbp.kernels.inputs import input_times, input_transpose_times, n_rows
from fastbp.kernels.losses import output_forward, output_loss_backward
from fastbp.kernels.optimizers import NO_UPDATE, SGD, squared_norm, update_range

W_OFFSET, FAN_IN, FAN_OUT, B_OFFSET = 0, 1, 2, 3
Model = namedtuple(
    "Model", "layers activations activation_params dropout_thresholds dropout_scales dropout_keep loss loss_param"
)
# acts: every layer's outputs, capacity rows each; pre: the same layout for z (gelu, silu; size 0 otherwise);
# delta_a/delta_b: a layer's delta, taking turns; blas: gemm scratch (blas.SCRATCH_BYTES)
Scratch = namedtuple("Scratch", "acts pre delta_a delta_b capacity blas")
# Every activation, loss and dropout: what every kernel compiles under FASTBP_KERNELS=shared (kernels.branches)
ALL = all_branches()


@jit(inline="always")
def weights(params, layers, l):
    """View of layer l's W, shape (fan_in, fan_out)."""
    start = layers[l, W_OFFSET]
    return params[start : start + layers[l, FAN_IN] * layers[l, FAN_OUT]].reshape(
        (layers[l, FAN_IN], layers[l, FAN_OUT])
    )


@jit(inline="always")
def bias(params, layers, l):
    start = layers[l, B_OFFSET]
    return params[start : start + layers[l, FAN_OUT]]


@jit(inline="always")
def rows(buffer, offset, m, k):
    """An (m, k) C-contiguous view of a flat scratch buffer, starting at ``offset``."""
    return buffer[offset : offset + m * k].reshape((m, k))


@jit(inline="always")
def activation_offset(layers, l, capacity):
    """Where layer l's outputs start in the activations scratch (``capacity`` rows per layer)."""
    offset = 0
    for i in range(l):
        offset += capacity * layers[i, FAN_OUT]
    return offset


@jit(inline="always")
def NO_DROPOUT():  # noqa: N802 - a constant: int64 -1, not Literal[-1], which would be another specialization
    return np.int64(-1)


@jit
def forward_to_output(branches, X, params, model, scratch, dropout_key):
    """Every layer's product, with bias, activation (and dropout, when training with it) fused in for the
    hidden layers.

    Layer l's outputs go to ``scratch.acts``; returns the last layer's ``A_prev @ W`` (before its bias and
    output activation, which prediction and training finish differently). ``dropout_key`` < 0: no dropout
    (prediction, validation); otherwise the batch's mask key (:mod:`fastbp.kernels.dropout`). ``branches``
    (:class:`fastbp.kernels.branches.Branches`): the activations and dropout compiled in.
    """
    layers = model.layers
    m = n_rows(X)
    last = layers.shape[0] - 1
    for l in range(last + 1):
        offset = activation_offset(layers, l, scratch.capacity)
        k = layers[l, FAN_OUT]
        Z = rows(scratch.acts, offset, m, k)
        if l == 0:  # X is kept apart from the scratch views: it may be read-only (a memmap) or CSR
            input_times(X, weights(params, layers, 0), Z)
        else:
            A_prev = rows(scratch.acts, activation_offset(layers, l - 1, scratch.capacity), m, layers[l, FAN_IN])
            np.dot(A_prev, weights(params, layers, l), Z)
        if l < last:
            pre = rows(scratch.pre, offset, m if scratch.pre.size > 0 else 0, k)
            b, code, p = bias(params, layers, l), model.activations[l], model.activation_params[l]
            bias_activation_forward(branches, code, Z, b, p, pre, 0, k)
            if dropout_key >= 0 and model.dropout_thresholds[l] > 0:
                key = layer_key(dropout_key, l)
                dropout_forward_for(branches, Z, model.dropout_thresholds[l], model.dropout_scales[l], key)
    return rows(scratch.acts, activation_offset(layers, last, scratch.capacity), m, layers[last, FAN_OUT])


@jit
def network_forward(branches, X, params, model, acts, capacity):
    """Forward pass over the rows of X, no dropout; returns the outputs (a view of ``acts``).

    ``model``: a plain tuple in :data:`Model` order; ``acts`` holds ``capacity`` rows of every layer's outputs;
    ``branches``: the activations compiled in.
    """
    model, scratch = Model(*model), _prediction_scratch(acts, capacity)
    out = forward_to_output(branches, X, params, model, scratch, NO_DROPOUT())
    output_forward(branches, model.loss, out, bias(params, model.layers, model.layers.shape[0] - 1))
    return out


@jit(inline="always")
def _prediction_scratch(acts, capacity):
    """Scratch for a forward pass without dropout: no z to keep, no delta, no gemm arguments."""
    return Scratch(acts, acts[:0], acts[:0], acts[:0], capacity, acts[:0].view(np.uint8))


@jit
def hidden_forward(branches, X, params, model, acts, capacity, layer):
    """Hidden layer ``layer``'s activations over the rows of X, no dropout (a view of ``acts``).

    ``model`` (plain tuple, :data:`Model` order) holds the layers up to ``layer`` only.
    """
    model, scratch = Model(*model), _prediction_scratch(acts, capacity)
    Z = forward_to_output(branches, X, params, model, scratch, NO_DROPOUT())  # the layer's product, before its bias
    pre = scratch.pre.reshape((0, Z.shape[1]))  # keeps no z
    b, code, p = bias(params, model.layers, layer), model.activations[layer], model.activation_params[layer]
    bias_activation_forward(branches, code, Z, b, p, pre, 0, Z.shape[1])
    return Z


@jit
def layer_gradient_step(A_prev, delta, params, grads, state_a, state_b, layers, l, l2, step, blas_scratch):
    """Layer l's weight gradient ``A_prev.T @ delta`` and, unless ``NO_UPDATE``, its optimizer step.

    Plain SGD (momentum 0) needs no gradient buffer: one gemm computes ``W <- (1 - lr l2) W - lr scale
    A_prev.T @ delta`` in place. Every other optimizer gets the gradient in ``grads`` and one fused pass over
    W and b. Returns the squared norms of the new W (0 for plain SGD without L2, where nothing needs it) and b.
    """
    zero, one = params.dtype.type(0), params.dtype.type(1)
    W = weights(params, layers, l)
    if step.code == SGD and step.momentum == 0:
        rate = step.learning_rate
        input_transpose_times(A_prev, delta, W, -rate * step.scale, one - rate * l2, blas_scratch)
        w_sq = squared_norm(W.ravel()) if l2 > 0 else zero
    else:
        input_transpose_times(A_prev, delta, weights(grads, layers, l), one, zero, blas_scratch)
        if step.code == NO_UPDATE:
            return zero, zero
        w_start = layers[l, W_OFFSET]
        w_sq = update_range(params, grads, state_a, state_b, w_start, w_start + W.size, l2, step)
    b_start = layers[l, B_OFFSET]
    b_sq = update_range(params, grads, state_a, state_b, b_start, b_start + layers[l, FAN_OUT], zero, step)
    return w_sq, b_sq


@jit
def network_forward_backward(
    branches, X, Y, sample_weight, params, grads, model, scratch, state_a, state_b, l2, step, dropout_key, parts
):
    """Forward, loss, backward over the m rows of X (one mini-batch), and the optimizer step fused in.

    Writes into ``grads`` the raw gradient sums (``A_prev.T @ delta`` and ``sum(delta)``, delta already
    weighted by the sample weights); the optimizer scales them by ``step.scale = 1 / sum(w)`` and adds
    ``l2 * W``. Layer l is updated as soon as ``delta_prev`` no longer needs its W. With ``step.code ==
    NO_UPDATE`` only the gradients are computed (for lbfgs). ``branches``, ``dropout_key``: see
    :func:`forward_to_output`; ``branches`` also names the losses compiled in. ``parts`` is unused: the
    parallel step (``kernels/parallel.py``) takes the same arguments, so that either is the epoch's step.

    Returns
    -------
    (weighted sum of per-sample losses, squared norm of the new weights, of the new biases)
    """
    layers = model.layers
    m = n_rows(X)
    last = layers.shape[0] - 1
    out = forward_to_output(branches, X, params, model, scratch, dropout_key)
    delta = rows(scratch.delta_a, 0, m, layers[last, FAN_OUT])
    grad_b = bias(grads, layers, last)
    loss = output_loss_backward(
        branches, model.loss, out, bias(params, layers, last), Y, sample_weight, model.loss_param, delta, grad_b
    )
    w_sq = params.dtype.type(0)
    b_sq = params.dtype.type(0)
    for l in range(last, 0, -1):
        h = l - 1  # the hidden layer below
        offset = activation_offset(layers, h, scratch.capacity)
        k = layers[l, FAN_IN]
        A_prev = rows(scratch.acts, offset, m, k)
        delta_prev = rows(scratch.delta_b if (last - l) % 2 == 0 else scratch.delta_a, 0, m, k)
        np.dot(delta, weights(params, layers, l).T, delta_prev)  # before layer l's step changes W
        pre = rows(scratch.pre, offset, m, k) if scratch.pre.size > 0 else A_prev  # z, where it is kept
        dropped = dropout_key >= 0 and model.dropout_thresholds[h] > 0
        if not dropped:  # the derivative pass first, as before dropout existed (the measured order)
            code, p, grad_b = model.activations[h], model.activation_params[h], bias(grads, layers, h)
            activation_backward(branches, code, delta_prev, A_prev, pre, p, grad_b, 0, k)
        # layer l's gradient reads A_prev as the forward pass left it (after dropout) ...
        w, b = layer_gradient_step(A_prev, delta, params, grads, state_a, state_b, layers, l, l2, step, scratch.blas)
        w_sq += w
        b_sq += b
        if dropped:  # ... then A_prev may return to f(z) for the derivative
            key = layer_key(dropout_key, h)
            thresholds, scales, keep = model.dropout_thresholds, model.dropout_scales, model.dropout_keep
            dropout_backward_for(branches, delta_prev, A_prev, thresholds[h], scales[h], keep[h], key)
            code, p, grad_b = model.activations[h], model.activation_params[h], bias(grads, layers, h)
            activation_backward(branches, code, delta_prev, A_prev, pre, p, grad_b, 0, k)
        delta = delta_prev
    first = np.int64(0)  # not the literal 0: numba would compile layer_gradient_step once more for it (1.2 s)
    w, b = layer_gradient_step(X, delta, params, grads, state_a, state_b, layers, first, l2, step, scratch.blas)
    return loss, w_sq + w, b_sq + b

"""Dense layers: forward, backward and the network-wide passes built from them.

The matrix products go to BLAS: ``np.dot(a, b, out)`` (numba passes transposed views as transpose flags,
without copies), and for the weight gradient ``inputs.input_transpose_times``, which accumulates into its
output (plain SGD's step is that product). Everything around them is one fused pass each:

forward, layer l      Z = A_prev @ W                      (BLAS)
                      A = f(Z + b)                        (activations.bias_activation_forward)
output layer          y_hat, loss, delta = w (y_hat - y), db = sum(delta)   (losses.output_loss_backward)
backward, layer l     dW = A_prev.T @ delta               (BLAS; or W += -lr/n A_prev.T @ delta, plain SGD)
                      delta_prev = delta @ W.T            (BLAS, skipped for the first layer)
                      delta_prev *= f'(A_prev), db_prev = sum(delta_prev)   (activations.activation_backward)

Parameters live in one flat buffer: every layer's W (row-major, shape (fan_in, fan_out)) in order, then every
layer's b, the order of scikit-learn's ``_pack``. ``layers`` is an int64 table with one row per layer:
``(W offset, fan_in, fan_out, b offset)``. Gradients use the same layout.
"""

from __future__ import annotations

import numpy as np

from fastbp._jit import jit
from fastbp.kernels.activations import activation_backward, bias_activation_forward
from fastbp.kernels.inputs import input_times, input_transpose_times, n_rows
from fastbp.kernels.losses import output_forward, output_loss_backward
from fastbp.kernels.optimizers import NO_UPDATE, SGD, squared_norm, update_range

W_OFFSET, FAN_IN, FAN_OUT, B_OFFSET = 0, 1, 2, 3


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


@jit
def forward_to_output(X, params, layers, hidden_codes, acts, capacity):
    """Every layer's product, with bias and activation fused in for the hidden layers.

    Layer l's outputs go to ``acts``; returns the last layer's ``A_prev @ W`` (before its bias and output
    activation, which prediction and training finish differently).
    """
    m = n_rows(X)
    last = layers.shape[0] - 1
    for l in range(last + 1):
        Z = rows(acts, activation_offset(layers, l, capacity), m, layers[l, FAN_OUT])
        if l == 0:  # X is kept apart from the scratch views: it may be read-only (a memmap) or CSR
            input_times(X, weights(params, layers, 0), Z)
        else:
            A_prev = rows(acts, activation_offset(layers, l - 1, capacity), m, layers[l, FAN_IN])
            np.dot(A_prev, weights(params, layers, l), Z)
        if l < last:
            bias_activation_forward(Z, bias(params, layers, l), hidden_codes[l])
    return rows(acts, activation_offset(layers, last, capacity), m, layers[last, FAN_OUT])


@jit
def network_forward(X, params, layers, hidden_codes, output_code, acts, capacity):
    """Forward pass over the rows of X; returns the outputs (a view of ``acts``)."""
    out = forward_to_output(X, params, layers, hidden_codes, acts, capacity)
    output_forward(out, bias(params, layers, layers.shape[0] - 1), output_code)
    return out


@jit
def layer_gradient_step(A_prev, delta, params, grads, state_a, state_b, layers, l, l2, step, blas_scratch):
    """Layer l's weight gradient ``A_prev.T @ delta`` and, unless ``NO_UPDATE``, its optimizer step.

    Plain SGD (momentum 0) needs no gradient buffer: one gemm computes ``W <- (1 - lr l2) W - lr scale
    A_prev.T @ delta`` in place. Every other optimizer gets the gradient in ``grads`` and one fused pass over
    W and b. Returns the squared norms of the new W (0 for plain SGD without L2, where nothing needs it) and b.
    """
    zero, one = params.dtype.type(0), params.dtype.type(1)
    code, learning_rate, momentum = step[0], step[1], step[2]
    W = weights(params, layers, l)
    if code == SGD and momentum == 0:
        scale = step[7]
        input_transpose_times(A_prev, delta, W, -learning_rate * scale, one - learning_rate * l2, blas_scratch)
        w_sq = squared_norm(W.ravel()) if l2 > 0 else zero
    else:
        input_transpose_times(A_prev, delta, weights(grads, layers, l), one, zero, blas_scratch)
        if code == NO_UPDATE:
            return zero, zero
        w_start = layers[l, W_OFFSET]
        w_sq = update_range(params, grads, state_a, state_b, w_start, w_start + W.size, l2, step)
    b_start = layers[l, B_OFFSET]
    b_sq = update_range(params, grads, state_a, state_b, b_start, b_start + layers[l, FAN_OUT], zero, step)
    return w_sq, b_sq


@jit
def network_forward_backward(
    X,
    Y,
    sample_weight,
    params,
    grads,
    layers,
    hidden_codes,
    output_code,
    acts,
    capacity,
    delta_a,
    delta_b,
    state_a,
    state_b,
    l2,
    step,
    blas_scratch,
):
    """Forward, loss, backward over the m rows of X (one mini-batch), and the optimizer step fused in.

    Writes into ``grads`` the raw gradient sums (``A_prev.T @ delta`` and ``sum(delta)``, delta already
    weighted by the sample weights); the optimizer scales them by ``step``'s ``scale = 1 / sum(w)`` and adds
    ``l2 * W``. Layer l is updated as soon as ``delta_prev`` no longer needs its W. With ``step[0] ==
    NO_UPDATE`` only the gradients are computed (for lbfgs). ``delta_a`` and ``delta_b`` take turns holding
    a layer's delta.

    Returns
    -------
    (weighted sum of per-sample losses, squared norm of the new weights, of the new biases)
    """
    m = n_rows(X)
    last = layers.shape[0] - 1
    out = forward_to_output(X, params, layers, hidden_codes, acts, capacity)
    delta = rows(delta_a, 0, m, layers[last, FAN_OUT])
    grad_b = bias(grads, layers, last)
    loss = output_loss_backward(out, bias(params, layers, last), Y, sample_weight, output_code, delta, grad_b)
    w_sq = params.dtype.type(0)
    b_sq = params.dtype.type(0)
    for l in range(last, 0, -1):
        A_prev = rows(acts, activation_offset(layers, l - 1, capacity), m, layers[l, FAN_IN])
        delta_prev = rows(delta_b if (last - l) % 2 == 0 else delta_a, 0, m, layers[l, FAN_IN])
        np.dot(delta, weights(params, layers, l).T, delta_prev)  # before layer l's step changes W
        activation_backward(delta_prev, A_prev, hidden_codes[l - 1], bias(grads, layers, l - 1))
        w, b = layer_gradient_step(A_prev, delta, params, grads, state_a, state_b, layers, l, l2, step, blas_scratch)
        w_sq += w
        b_sq += b
        delta = delta_prev
    w, b = layer_gradient_step(X, delta, params, grads, state_a, state_b, layers, 0, l2, step, blas_scratch)
    return loss, w_sq + w, b_sq + b

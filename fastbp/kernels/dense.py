"""Dense layers: forward, backward and the network-wide passes built from them.

The matrix products go to BLAS through ``np.dot(a, b, out)`` (numba passes transposed views as transpose
flags, without copies); everything around them is one fused pass each:

forward, layer l      Z = A_prev @ W                      (BLAS)
                      A = f(Z + b)                        (activations.bias_activation_forward)
output layer          y_hat, loss, delta = w (y_hat - y), db = sum(delta)   (losses.output_loss_backward)
backward, layer l     dW = A_prev.T @ delta               (BLAS)
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
from fastbp.kernels.losses import output_forward, output_loss_backward

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
def network_forward(X, params, layers, hidden_codes, output_code, acts, capacity):
    """Forward pass over the m rows of X; layer l's outputs go to ``acts``. Returns the output view."""
    m = X.shape[0]
    last = layers.shape[0] - 1
    for l in range(last + 1):
        Z = rows(acts, activation_offset(layers, l, capacity), m, layers[l, FAN_OUT])
        if l == 0:  # X is kept apart from the scratch views: it may be read-only (a memmap)
            np.dot(X, weights(params, layers, 0), Z)
        else:
            A_prev = rows(acts, activation_offset(layers, l - 1, capacity), m, layers[l, FAN_IN])
            np.dot(A_prev, weights(params, layers, l), Z)
        if l < last:
            bias_activation_forward(Z, bias(params, layers, l), hidden_codes[l])
        else:
            output_forward(Z, bias(params, layers, l), output_code)
    return rows(acts, activation_offset(layers, last, capacity), m, layers[last, FAN_OUT])


@jit
def network_forward_backward(
    X, Y, sample_weight, params, grads, layers, hidden_codes, output_code, acts, capacity, delta_a, delta_b
):
    """Forward, loss and backward over the m rows of X (all one mini-batch).

    Writes the raw gradient sums into ``grads`` (``A_prev.T @ delta`` and ``sum(delta)``, with delta already
    weighted by the sample weights; the caller scales by ``1 / sum(w)`` and adds the L2 term). Returns the
    weighted sum of the per-sample losses. ``delta_a`` and ``delta_b`` take turns holding a layer's delta.
    """
    m = X.shape[0]
    last = layers.shape[0] - 1
    for l in range(last + 1):
        Z = rows(acts, activation_offset(layers, l, capacity), m, layers[l, FAN_OUT])
        if l == 0:
            np.dot(X, weights(params, layers, 0), Z)
        else:
            A_prev = rows(acts, activation_offset(layers, l - 1, capacity), m, layers[l, FAN_IN])
            np.dot(A_prev, weights(params, layers, l), Z)
        if l < last:
            bias_activation_forward(Z, bias(params, layers, l), hidden_codes[l])
    out = rows(acts, activation_offset(layers, last, capacity), m, layers[last, FAN_OUT])
    delta = rows(delta_a, 0, m, layers[last, FAN_OUT])
    grad_b = bias(grads, layers, last)
    loss = output_loss_backward(out, bias(params, layers, last), Y, sample_weight, output_code, delta, grad_b)
    for l in range(last, 0, -1):
        A_prev = rows(acts, activation_offset(layers, l - 1, capacity), m, layers[l, FAN_IN])
        np.dot(A_prev.T, delta, weights(grads, layers, l))
        delta_prev = rows(delta_b if (last - l) % 2 == 0 else delta_a, 0, m, layers[l, FAN_IN])
        np.dot(delta, weights(params, layers, l).T, delta_prev)
        activation_backward(delta_prev, A_prev, hidden_codes[l - 1], bias(grads, layers, l - 1))
        delta = delta_prev
    np.dot(X.T, delta, weights(grads, layers, 0))
    return loss

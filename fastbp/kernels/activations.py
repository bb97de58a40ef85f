"""Hidden-layer activations: the forward rule fused with the bias add, next to its derivative.

Each activation is a pair of scalar functions, ``f(z)`` and ``f'`` written in terms of the output
``a = f(z)`` (as scikit-learn does, so the backward pass needs only the stored activations). The dispatchers
branch on the integer code once per call, outside the element loops, so every loop is branch-free. Constants
are passed in typed (``zero``, ``one``): a bare ``1`` next to a float32 would make numba compute in float64.

Adding an activation (leaky_relu, elu, softplus, ...) means: one scalar pair here, one code in
``ACTIVATION_CODES``, one branch in each dispatcher, and the same pair in ``fastbp.reference``.
"""

from __future__ import annotations

import numpy as np

from fastbp._jit import jit

IDENTITY, LOGISTIC, TANH, RELU = 0, 1, 2, 3
ACTIVATION_CODES: dict[str, int] = {"identity": IDENTITY, "logistic": LOGISTIC, "tanh": TANH, "relu": RELU}


@jit(inline="always")
def logistic(z, one):
    return one / (one + np.exp(-z))


@jit(inline="always")
def logistic_derivative(a, one):  # d/dz logistic(z) = a (1 - a)
    return a * (one - a)


@jit(inline="always")
def tanh_derivative(a, one):  # d/dz tanh(z) = 1 - a^2
    return one - a * a


@jit(inline="always")
def relu(z, zero):
    return z if z > zero else zero


@jit(inline="always")
def relu_derivative(a, zero, one):  # scikit-learn: delta[a == 0] = 0
    return zero if a == zero else one


@jit
def bias_activation_forward(Z, b, code):
    """``Z <- f(Z + b)`` in place, one pass over Z (Z: (m, k) C-contiguous, b: (k,))."""
    m, k = Z.shape
    zero = Z.dtype.type(0)
    one = Z.dtype.type(1)
    if code == IDENTITY:
        for i in range(m):
            for j in range(k):
                Z[i, j] = Z[i, j] + b[j]
    elif code == LOGISTIC:
        for i in range(m):
            for j in range(k):
                Z[i, j] = logistic(Z[i, j] + b[j], one)
    elif code == TANH:
        for i in range(m):
            for j in range(k):
                Z[i, j] = np.tanh(Z[i, j] + b[j])
    else:
        for i in range(m):
            for j in range(k):
                Z[i, j] = relu(Z[i, j] + b[j], zero)


@jit
def activation_backward(delta, A, code, grad_b):
    """``delta <- delta * f'(A)`` in place; the same pass writes ``grad_b = sum over rows of delta``.

    A holds the layer's outputs ``f(Z)`` from the forward pass.
    """
    m, k = delta.shape
    zero = delta.dtype.type(0)
    one = delta.dtype.type(1)
    grad_b[:] = zero
    if code == IDENTITY:
        for i in range(m):
            for j in range(k):
                grad_b[j] += delta[i, j]
    elif code == LOGISTIC:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * logistic_derivative(A[i, j], one)
                delta[i, j] = d
                grad_b[j] += d
    elif code == TANH:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * tanh_derivative(A[i, j], one)
                delta[i, j] = d
                grad_b[j] += d
    else:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * relu_derivative(A[i, j], zero, one)
                delta[i, j] = d
                grad_b[j] += d

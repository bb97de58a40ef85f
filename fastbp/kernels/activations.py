"""Hidden-layer activations: the registry, each forward rule next to its derivative, and the fused passes.

This file is the one place an activation is defined. Each has

- a scalar pair for the kernels: ``f(z, p, c)`` and its derivative ``df(z, a, p, c)``, where ``a = f(z)``,
  ``p`` the activation's parameter (leaky_relu's slope; ignored by the others) and ``c`` typed constants
  (a bare ``1`` next to a float32 would make numba compute in float64);
- an :class:`Activation` entry in :data:`ACTIVATIONS`: its code, whether the derivative needs the
  pre-activation ``z`` (gelu, silu: not a function of ``a``) and the same pair in plain NumPy, which
  ``fastbp.reference`` uses as the test oracle;
- one branch in each of the two fused passes below (``bias_activation_forward``, ``activation_backward``).

Names, validation messages, the CLI's choices, model files and the tests' parametrisation all read
:data:`ACTIVATIONS`; a test fails if a code has no dispatcher branch (the dispatchers' last branch is an
explicit code too, so an unknown code changes nothing instead of running some other activation).

Derivatives that are functions of the output ``a`` (as scikit-learn writes them) need only the stored
activations. gelu and silu need ``z``: their forward pass also writes ``z`` to a ``pre`` buffer during
training (never for the other activations, which therefore cost what they cost before).
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.special import erf as _np_erf

from fastbp._jit import jit

Constants = namedtuple("Constants", "zero one half inv_sqrt2 inv_sqrt_2pi")


@jit(inline="always")
def constants(dtype_value):
    """The constants every scalar rule may need, in the dtype of ``dtype_value``'s type."""
    t = type(dtype_value)
    return Constants(t(0), t(1), t(0.5), t(1 / math.sqrt(2)), t(1 / math.sqrt(2 * math.pi)))


# -- the scalar rules: forward f(z), derivative df(z, a) -----------------------------------------------------
@jit(inline="always")
def identity(z, p, c):
    return z


@jit(inline="always")
def identity_derivative(z, a, p, c):
    return c.one


@jit(inline="always")
def logistic(z, p, c):
    return c.one / (c.one + np.exp(-z))


@jit(inline="always")
def logistic_derivative(z, a, p, c):  # a (1 - a)
    return a * (c.one - a)


@jit(inline="always")
def tanh(z, p, c):
    return np.tanh(z)


@jit(inline="always")
def tanh_derivative(z, a, p, c):  # 1 - a^2
    return c.one - a * a


@jit(inline="always")
def relu(z, p, c):
    return z if z > c.zero else c.zero


@jit(inline="always")
def relu_derivative(z, a, p, c):  # scikit-learn: 0 where a == 0
    return c.zero if a == c.zero else c.one


@jit(inline="always")
def leaky_relu(z, p, c):  # p: the slope for z <= 0 (>= 0, so a > 0 exactly when z > 0)
    return z if z > c.zero else p * z


@jit(inline="always")
def leaky_relu_derivative(z, a, p, c):
    return c.one if a > c.zero else p


@jit(inline="always")
def elu(z, p, c):  # alpha = 1
    return z if z > c.zero else np.expm1(z)


@jit(inline="always")
def elu_derivative(z, a, p, c):  # exp(z) = a + 1 for z <= 0
    return c.one if a > c.zero else a + c.one


@jit(inline="always")
def softplus(z, p, c):  # log(1 + e^z) without overflow
    return max(z, c.zero) + np.log1p(np.exp(-abs(z)))


@jit(inline="always")
def softplus_derivative(z, a, p, c):  # logistic(z) = 1 - e^-a, accurate for tiny a
    return -np.expm1(-a)


@jit(inline="always")
def gelu(z, p, c):  # z Phi(z), the exact erf form
    return c.half * z * (c.one + math.erf(z * c.inv_sqrt2))


@jit(inline="always")
def gelu_derivative(z, a, p, c):  # Phi(z) + z phi(z)
    return c.half * (c.one + math.erf(z * c.inv_sqrt2)) + z * c.inv_sqrt_2pi * np.exp(-c.half * z * z)


@jit(inline="always")
def silu(z, p, c):  # z logistic(z)
    return z / (c.one + np.exp(-z))


@jit(inline="always")
def silu_derivative(z, a, p, c):  # s (1 + z (1 - s)), s = logistic(z)
    s = c.one / (c.one + np.exp(-z))
    return s * (c.one + z * (c.one - s))


# -- the registry ---------------------------------------------------------------------------------------------
def _np_logistic(z):
    return 1 / (1 + np.exp(-z))


class Activation(NamedTuple):
    """One hidden activation: its kernel code and the plain NumPy pair the tests compare the kernels with."""

    code: int
    needs_z: bool  # the derivative needs the pre-activation z, not only a = f(z)
    reference: Callable  # f(z, p)
    reference_derivative: Callable  # f'(z, a, p)


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(0, False, lambda z, p: z, lambda z, a, p: np.ones_like(a)),
    "logistic": Activation(1, False, lambda z, p: _np_logistic(z), lambda z, a, p: a * (1 - a)),
    "tanh": Activation(2, False, lambda z, p: np.tanh(z), lambda z, a, p: 1 - a**2),
    "relu": Activation(3, False, lambda z, p: np.maximum(z, 0), lambda z, a, p: (a > 0).astype(a.dtype)),
    "leaky_relu": Activation(
        4, False, lambda z, p: np.where(z > 0, z, p * z), lambda z, a, p: np.where(z > 0, 1, p).astype(a.dtype)
    ),
    "elu": Activation(
        5,
        False,
        lambda z, p: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
        lambda z, a, p: np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(a.dtype),
    ),
    "softplus": Activation(6, False, lambda z, p: np.logaddexp(0, z), lambda z, a, p: _np_logistic(z)),
    "gelu": Activation(
        7,
        True,
        lambda z, p: z * (1 + _np_erf(z / np.sqrt(2))) / 2,
        lambda z, a, p: (1 + _np_erf(z / np.sqrt(2))) / 2 + z * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi),
    ),
    "silu": Activation(
        8, True, lambda z, p: z * _np_logistic(z), lambda z, a, p: _np_logistic(z) * (1 + z * (1 - _np_logistic(z)))
    ),
}
# the codes the fused passes branch on (module globals: numba compiles them in as constants)
IDENTITY, LOGISTIC, TANH, RELU, LEAKY_RELU, ELU, SOFTPLUS, GELU, SILU = (
    ACTIVATIONS[name].code
    for name in ("identity", "logistic", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "silu")
)


# -- the fused passes -----------------------------------------------------------------------------------------
# One explicit loop per activation, not a generic loop taking the scalar rule as an argument: numba inlines a
# function-argument loop once per rule at the IR level, which made these two kernels compile in 2.7 s instead
# of 1.5 s (nine activations, float64, a fresh process; docs/design.md).
@jit
def bias_activation_forward(Z, b, code, p, pre):
    """``Z <- f(Z + b)`` in place, one pass (Z: (m, k) C-contiguous, b: (k,), p: the activation's parameter).

    For activations whose derivative needs z (``Activation.needs_z``: gelu, silu), ``z = Z + b`` also goes
    to ``pre`` (same shape as Z) when ``pre`` has rows; prediction passes an empty ``pre``.
    """
    c = constants(Z.dtype.type(0))
    m, k = Z.shape
    keep = pre.shape[0] > 0
    if code == IDENTITY:
        for i in range(m):
            for j in range(k):
                Z[i, j] = identity(Z[i, j] + b[j], p, c)
    elif code == LOGISTIC:
        for i in range(m):
            for j in range(k):
                Z[i, j] = logistic(Z[i, j] + b[j], p, c)
    elif code == TANH:
        for i in range(m):
            for j in range(k):
                Z[i, j] = tanh(Z[i, j] + b[j], p, c)
    elif code == RELU:
        for i in range(m):
            for j in range(k):
                Z[i, j] = relu(Z[i, j] + b[j], p, c)
    elif code == LEAKY_RELU:
        for i in range(m):
            for j in range(k):
                Z[i, j] = leaky_relu(Z[i, j] + b[j], p, c)
    elif code == ELU:
        for i in range(m):
            for j in range(k):
                Z[i, j] = elu(Z[i, j] + b[j], p, c)
    elif code == SOFTPLUS:
        for i in range(m):
            for j in range(k):
                Z[i, j] = softplus(Z[i, j] + b[j], p, c)
    elif code == GELU:
        for i in range(m):
            for j in range(k):
                z = Z[i, j] + b[j]
                if keep:
                    pre[i, j] = z
                Z[i, j] = gelu(z, p, c)
    elif code == SILU:
        for i in range(m):
            for j in range(k):
                z = Z[i, j] + b[j]
                if keep:
                    pre[i, j] = z
                Z[i, j] = silu(z, p, c)


@jit
def activation_backward(delta, A, pre, code, p, grad_b):
    """``delta <- delta * f'``, in place; the same pass writes ``grad_b = sum over rows of delta``.

    A holds the layer's outputs ``f(z)`` from the forward pass, ``pre`` its ``z`` (read only for the
    activations whose ``needs_z`` is set; any array of A's shape otherwise).
    """
    c = constants(delta.dtype.type(0))
    m, k = delta.shape
    grad_b[:] = c.zero
    if code == IDENTITY:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * identity_derivative(A[i, j], A[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d
    elif code == LOGISTIC:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * logistic_derivative(A[i, j], A[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d
    elif code == TANH:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * tanh_derivative(A[i, j], A[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d
    elif code == RELU:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * relu_derivative(A[i, j], A[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d
    elif code == LEAKY_RELU:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * leaky_relu_derivative(A[i, j], A[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d
    elif code == ELU:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * elu_derivative(A[i, j], A[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d
    elif code == SOFTPLUS:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * softplus_derivative(A[i, j], A[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d
    elif code == GELU:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * gelu_derivative(pre[i, j], A[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d
    elif code == SILU:
        for i in range(m):
            for j in range(k):
                d = delta[i, j] * silu_derivative(pre[i, j], A[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d

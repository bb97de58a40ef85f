"""Hidden-layer activations: the registry, each forward rule next to its derivative, and the fused passes.

This file is the one place an activation is defined. Each has

- a scalar pair for the kernels: ``f(z, p, c)`` and its derivative ``df(z, a, p, c)``, where ``a = f(z)``,
  ``p`` the activation's parameter (leaky_relu's slope; ignored by the others) and ``c`` typed constants
  (a bare ``1`` next to a float32 would make numba compute in float64);
- an :class:`Activation` entry in :data:`ACTIVATIONS`: its code, whether the derivative needs the
  pre-activation ``z`` (gelu, silu: not a function of ``a``), the kernels' pair, and the same pair in plain
  NumPy, which ``fastbp.reference`` uses as the test oracle.

From the kernels' pair, two factories make the activation's fused passes (bias + f forward; f' + bias
gradient backward), and the dispatchers ``bias_activation_forward`` / ``activation_backward`` pick one by the
layer's code among the activations a specialization compiles in (:mod:`fastbp.kernels.branches`; an unknown
code changes nothing instead of running some other activation).

Names, validation messages, the CLI's choices, model files and the tests' parametrisation all read
:data:`ACTIVATIONS`.

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
from numba.extending import overload
from scipy.special import erf as _np_erf

from fastbp._jit import OVERLOAD_OPTIONS, jit
from fastbp.kernels.branches import change_nothing, dispatch

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
    """One hidden activation: its kernel code, the kernels' scalar pair and the plain NumPy pair the tests use."""

    code: int
    needs_z: bool  # the derivative needs the pre-activation z, not only a = f(z)
    kernel: Callable  # f(z, p, c), compiled
    kernel_derivative: Callable  # f'(z, a, p, c), compiled
    reference: Callable  # f(z, p)
    reference_derivative: Callable  # f'(z, a, p)


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(0, False, identity, identity_derivative, lambda z, p: z, lambda z, a, p: np.ones_like(a)),
    "logistic": Activation(
        1, False, logistic, logistic_derivative, lambda z, p: _np_logistic(z), lambda z, a, p: a * (1 - a)
    ),
    "tanh": Activation(2, False, tanh, tanh_derivative, lambda z, p: np.tanh(z), lambda z, a, p: 1 - a**2),
    "relu": Activation(
        3, False, relu, relu_derivative, lambda z, p: np.maximum(z, 0), lambda z, a, p: (a > 0).astype(a.dtype)
    ),
    "leaky_relu": Activation(
        4,
        False,
        leaky_relu,
        leaky_relu_derivative,
        lambda z, p: np.where(z > 0, z, p * z),
        lambda z, a, p: np.where(z > 0, 1, p).astype(a.dtype),
    ),
    "elu": Activation(
        5,
        False,
        elu,
        elu_derivative,
        lambda z, p: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
        lambda z, a, p: np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(a.dtype),
    ),
    "softplus": Activation(
        6, False, softplus, softplus_derivative, lambda z, p: np.logaddexp(0, z), lambda z, a, p: _np_logistic(z)
    ),
    "gelu": Activation(
        7,
        True,
        gelu,
        gelu_derivative,
        lambda z, p: z * (1 + _np_erf(z / np.sqrt(2))) / 2,
        lambda z, a, p: (1 + _np_erf(z / np.sqrt(2))) / 2 + z * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi),
    ),
    "silu": Activation(
        8,
        True,
        silu,
        silu_derivative,
        lambda z, p: z * _np_logistic(z),
        lambda z, a, p: _np_logistic(z) * (1 + z * (1 - _np_logistic(z))),
    ),
}


# -- the fused passes -----------------------------------------------------------------------------------------
# One pass per activation, made from its scalar pair by the factories below: the rule is a constant of the
# pass (a closure over a compiled function), not an argument. A generic loop taking the rule as an argument
# compiled the passes in 2.7 s instead of 1.5 s (numba typed it once per rule at the IR level; design.md).
def _forward_pass(f, keeps_z):
    def forward(branches, code, Z, b, p, pre, start, stop):
        c = constants(Z.dtype.type(0))
        keep = keeps_z and pre.shape[0] > 0
        b_cols = b[start:stop]
        for i in range(Z.shape[0]):
            z_row = Z[i, start:stop]  # a contiguous row piece: a 2-D column view's loops ran 4x slower
            for j in range(z_row.size):
                z = z_row[j] + b_cols[j]
                if keep:
                    pre[i, start + j] = z
                z_row[j] = f(z, p, c)

    return forward


def _backward_pass(df, needs_z):
    def backward(branches, code, delta, A, pre, p, grad_b, start, stop):
        c = constants(delta.dtype.type(0))
        g = grad_b[start:stop]
        g[:] = c.zero
        for i in range(delta.shape[0]):
            d_row, a_row = delta[i, start:stop], A[i, start:stop]
            z_row = pre[i, start:stop] if needs_z else a_row
            for j in range(d_row.size):
                d = d_row[j] * df(z_row[j], a_row[j], p, c)
                d_row[j] = d
                g[j] += d

    return backward


FORWARD_PASSES = tuple((a.code, _forward_pass(a.kernel, a.needs_z)) for a in ACTIVATIONS.values())
BACKWARD_PASSES = tuple((a.code, _backward_pass(a.kernel_derivative, a.needs_z)) for a in ACTIVATIONS.values())


def bias_activation_forward(branches, code, Z, b, p, pre, start, stop):  # pragma: no cover - see the overload
    """``Z <- f(Z + b)`` in place on columns ``start:stop``, one pass (Z: (m, k) C-contiguous, b: (k,), p: the
    activation's parameter; the serial step passes all columns, each thread of the parallel step its own).

    ``code`` picks f among ``branches.activations``. For activations whose derivative needs z
    (``Activation.needs_z``: gelu, silu), ``z = Z + b`` also goes to ``pre`` (same shape as Z) when ``pre``
    has rows; prediction passes an empty ``pre``.
    """


@overload(bias_activation_forward, **OVERLOAD_OPTIONS)
def _bias_activation_forward(branches, code, Z, b, p, pre, start, stop):
    return dispatch(FORWARD_PASSES, branches.activations, change_nothing)


def activation_backward(branches, code, delta, A, pre, p, grad_b, start, stop):  # pragma: no cover - see below
    """``delta <- delta * f'`` in place on columns ``start:stop``; the same pass writes ``grad_b[start:stop]``,
    the sums over rows of those columns of delta.

    ``code`` picks f' among ``branches.activations``. A holds the layer's outputs ``f(z)`` from the forward
    pass, ``pre`` its ``z`` (read only for the activations whose ``needs_z`` is set; any array of A's shape
    otherwise).
    """


@overload(activation_backward, **OVERLOAD_OPTIONS)
def _activation_backward(branches, code, delta, A, pre, p, grad_b, start, stop):
    return dispatch(BACKWARD_PASSES, branches.activations, change_nothing)

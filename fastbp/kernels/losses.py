"""Output layers paired with their losses: the registry, each loss next to its output error, the fused pass.

| loss             | output   | per-sample loss (summed over outputs), r = y_hat - y   | output error d loss / d z  |
|------------------|----------|--------------------------------------------------------|----------------------------|
| squared_error    | identity | 1/2 r^2                                                | r                          |
| binary_log_loss  | logistic | -y log p - (1 - y) log(1 - p)                          | p - y                      |
| log_loss         | softmax  | -sum_k y_k log p_k                                     | p - y                      |
| poisson          | exp      | y log(y / y_hat) - y + y_hat (half Poisson deviance)   | y_hat - y                  |
| absolute_error   | identity | abs(r)                                                 | 1 if r > 0 else -1         |
| huber            | identity | 1/2 r^2 if abs(r) <= delta, else delta (abs(r) - delta/2)  | r clipped to +-delta  |
| quantile         | identity | q (y - y_hat) if y >= y_hat, else (1 - q) (y_hat - y)  | -q if y >= y_hat else 1 - q |

This file is the one place an output/loss pair is defined: a scalar pair for the kernels (``loss(y, y_hat, p,
c)`` and ``error(y, y_hat, p, c)``; ``p`` is the loss's parameter, ``c`` typed constants), a :class:`Loss`
entry in :data:`LOSSES` (code, output activation, parameter name, the kernels' pair, the same math in NumPy
for ``fastbp.reference``); a factory makes its fused pass from the kernels' pair, and
:func:`output_loss_backward` picks the pass by code among the losses a specialization compiles in
(:mod:`fastbp.kernels.branches`). The output error of the four matched
pairs is ``y_hat - y``; the robust losses' errors are defined at their kinks as scikit-learn's ``_loss``
module defines them (absolute error: -1 at r = 0; quantile: 1 - q at y = y_hat).

Probabilities are clipped to [eps, 1 - eps] for the loss value only, as scikit-learn does. The loss of a batch
is ``sum_i w_i loss_i / sum_i w_i``; the kernel returns the weighted sum and leaves the division to the
caller, which also adds the L2 penalty. Squared error sums over outputs (scikit-learn averages the loss over
outputs but not the gradient, so its lbfgs sees a gradient that is not the loss's, issue #8349; here loss and
gradient agree); the other regression losses sum over outputs too.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba.extending import overload

from fastbp._jit import OVERLOAD_OPTIONS, jit
from fastbp.kernels.branches import change_nothing, dispatch
from fastbp.kernels.constants import eps_of

Constants = namedtuple("Constants", "zero one half eps")


# -- the scalar rules: per-element loss and output error ----------------------------------------------------
@jit(inline="always")
def xlogy(x, y, zero):  # scipy.special.xlogy for x >= 0: 0 where x == 0
    return zero if x == zero else x * np.log(y)


@jit(inline="always")
def clip(p, lo, hi):
    return lo if p < lo else (hi if p > hi else p)


@jit(inline="always")
def residual(y, y_hat, p, c):  # y_hat - y: the output error of every matched output/loss pair
    return y_hat - y


@jit(inline="always")
def squared_error(y, y_hat, p, c):
    r = y_hat - y
    return c.half * r * r


@jit(inline="always")
def binary_log_loss(y, y_hat, p, c):
    q = clip(y_hat, c.eps, c.one - c.eps)
    return -(xlogy(y, q, c.zero) + xlogy(c.one - y, c.one - q, c.zero))


@jit(inline="always")
def log_loss(y, y_hat, p, c):  # one output's term of -sum_k y_k log p_k
    return -xlogy(y, clip(y_hat, c.eps, c.one - c.eps), c.zero)


@jit(inline="always")
def poisson(y, y_hat, p, c):
    return xlogy(y, y / y_hat, c.zero) - y + y_hat


@jit(inline="always")
def absolute_error(y, y_hat, p, c):
    return abs(y_hat - y)


@jit(inline="always")
def absolute_error_error(y, y_hat, p, c):
    return c.one if y_hat > y else -c.one


@jit(inline="always")
def huber(y, y_hat, p, c):  # p: delta, the threshold between the quadratic and the linear part
    r = abs(y_hat - y)
    return c.half * r * r if r <= p else p * (r - c.half * p)


@jit(inline="always")
def huber_error(y, y_hat, p, c):
    r = y_hat - y
    return r if abs(r) <= p else (p if r > c.zero else -p)


@jit(inline="always")
def quantile(y, y_hat, p, c):  # p: the quantile q in (0, 1)
    return p * (y - y_hat) if y >= y_hat else (c.one - p) * (y_hat - y)


@jit(inline="always")
def quantile_error(y, y_hat, p, c):
    return -p if y >= y_hat else c.one - p


# -- the registry ---------------------------------------------------------------------------------------------
def _np_xlogy(x, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0, x * np.log(y))


def _np_clip(p):
    eps = np.finfo(p.dtype).eps
    return np.clip(p, eps, 1 - eps)


def _np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_residual(y, y_hat, p):
    return y_hat - y


class Loss(NamedTuple):
    """One output/loss pair: kernel code, output activation, parameter, and its math in plain NumPy."""

    code: int
    output: str  # the output activation
    parameter: str | None  # the name of the loss's parameter, if it has one
    kernel: Callable  # per-element loss (y, y_hat, p, c), compiled
    kernel_error: Callable  # d loss / d z (y, y_hat, p, c), compiled
    reference_output: Callable  # y_hat = output(z)
    reference_loss: Callable  # per-element loss (y, y_hat, p), summed over outputs by the caller
    reference_error: Callable  # d loss / d z (y, y_hat, p)


LOSSES: dict[str, Loss] = {
    "squared_error": Loss(
        0, "identity", None, squared_error, residual, lambda z: z, lambda y, q, p: 0.5 * (q - y) ** 2, _np_residual
    ),
    "binary_log_loss": Loss(
        1,
        "logistic",
        None,
        binary_log_loss,
        residual,
        lambda z: 1 / (1 + np.exp(-z)),
        lambda y, q, p: -(_np_xlogy(y, _np_clip(q)) + _np_xlogy(1 - y, 1 - _np_clip(q))),
        _np_residual,
    ),
    "log_loss": Loss(
        2, "softmax", None, log_loss, residual, _np_softmax, lambda y, q, p: -_np_xlogy(y, _np_clip(q)), _np_residual
    ),
    "poisson": Loss(
        3, "exp", None, poisson, residual, np.exp, lambda y, q, p: _np_xlogy(y, y / q) - y + q, _np_residual
    ),
    "absolute_error": Loss(
        4,
        "identity",
        None,
        absolute_error,
        absolute_error_error,
        lambda z: z,
        lambda y, q, p: np.abs(q - y),
        lambda y, q, p: np.where(q > y, 1.0, -1.0),
    ),
    "huber": Loss(
        5,
        "identity",
        "delta",
        huber,
        huber_error,
        lambda z: z,
        lambda y, q, p: np.where(np.abs(q - y) <= p, 0.5 * (q - y) ** 2, p * (np.abs(q - y) - 0.5 * p)),
        lambda y, q, p: np.clip(q - y, -p, p),
    ),
    "quantile": Loss(
        6,
        "identity",
        "quantile",
        quantile,
        quantile_error,
        lambda z: z,
        lambda y, q, p: np.where(y >= q, p * (y - q), (1 - p) * (q - y)),
        lambda y, q, p: np.where(y >= q, -p, 1 - p),
    ),
}
# The loss an output activation has when none is named (its matched loss: the first entry with that output).
DEFAULT_LOSS: dict[str, str] = {}
for _name, _entry in LOSSES.items():
    DEFAULT_LOSS.setdefault(_entry.output, _name)


# -- the fused passes -----------------------------------------------------------------------------------------
@jit
def softmax_forward(Z, b):
    """``Z <- softmax(Z + b)`` row by row, in place."""
    m, k = Z.shape
    one = Z.dtype.type(1)
    for i in range(m):
        top = Z[i, 0] + b[0]
        for j in range(k):
            z = Z[i, j] + b[j]
            top = z if z > top else top  # Python's max(top, z), without compiling numba's max (0.14 s)
        total = Z.dtype.type(0)
        for j in range(k):
            e = np.exp(Z[i, j] + b[j] - top)
            Z[i, j] = e
            total += e
        inv = one / total
        for j in range(k):
            Z[i, j] *= inv


@jit
def logistic_forward(Z, b):
    one = Z.dtype.type(1)
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Z[i, j] = one / (one + np.exp(-(Z[i, j] + b[j])))


@jit
def exp_forward(Z, b):
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Z[i, j] = np.exp(Z[i, j] + b[j])


@jit
def identity_forward(Z, b):
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Z[i, j] = Z[i, j] + b[j]


# each output activation of the registry (``Loss.output``) and its pass
OUTPUT_FORWARD = {
    "identity": identity_forward,
    "softmax": softmax_forward,
    "logistic": logistic_forward,
    "exp": exp_forward,
}


def _output_pass(forward):
    def output(branches, code, Z, b):
        forward(Z, b)

    return output


OUTPUT_PASSES = tuple((entry.code, _output_pass(OUTPUT_FORWARD[entry.output])) for entry in LOSSES.values())


def output_forward(branches, code, Z, b):  # pragma: no cover - compiled by the overload below
    """``Z <- output_activation(Z + b)`` in place, the output of loss ``code`` (prediction; no loss)."""


@overload(output_forward, **OVERLOAD_OPTIONS)
def _output_forward(branches, code, Z, b):
    return dispatch(OUTPUT_PASSES, branches.losses, change_nothing)


def _loss_pass(output, loss, error):
    """One loss's fused pass: output activation, loss sum, delta and its column sums."""

    def loss_pass(branches, code, Z, b, Y, sample_weight, p, delta, grad_b):
        output(Z, b)
        c = Constants(Z.dtype.type(0), Z.dtype.type(1), Z.dtype.type(0.5), eps_of(Z))
        m, k = Z.shape
        weighted = sample_weight.shape[0] > 0
        grad_b[:] = c.zero
        total = c.zero
        for i in range(m):
            w = sample_weight[i] if weighted else c.one
            row = c.zero
            for j in range(k):
                row += loss(Y[i, j], Z[i, j], p, c)
                d = w * error(Y[i, j], Z[i, j], p, c)
                delta[i, j] = d
                grad_b[j] += d
            total += w * row
        return total

    return loss_pass


LOSS_PASSES = tuple(
    (entry.code, _loss_pass(OUTPUT_FORWARD[entry.output], entry.kernel, entry.kernel_error))
    for entry in LOSSES.values()
)


def _no_loss(branches, code, Z, *args):  # a code the specialization does not know: NaN stops the epoch
    return Z.dtype.type(np.nan)


def output_loss_backward(branches, code, Z, b, Y, sample_weight, p, delta, grad_b):  # pragma: no cover
    """Output activation, loss and output error in one pass over the rows (compiled by the overload below).

    On return Z holds ``y_hat``, ``delta = w * error(y, y_hat)`` and ``grad_b`` its column sums. Returns the
    weighted sum of the per-sample losses. ``sample_weight`` of size 0 means all weights are 1; ``p`` is the
    loss's parameter (huber's delta, the quantile), ignored by the others; ``code`` picks the loss among
    ``branches.losses``. One pass per loss, made from its scalar pair (a generic loop taking the rules as
    arguments took 3.5 s of a first fit's compile instead of 1.7 s, numba's compile events; as in
    activations.py).
    """


@overload(output_loss_backward, **OVERLOAD_OPTIONS)
def _output_loss_backward(branches, code, Z, b, Y, sample_weight, p, delta, grad_b):
    return dispatch(LOSS_PASSES, branches.losses, _no_loss)

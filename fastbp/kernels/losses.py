"""Output layers paired with their losses, so that the output error is always ``y_hat - y``.

| output   | loss                          | per-sample loss (summed over outputs)              |
|----------|-------------------------------|----------------------------------------------------|
| identity | squared error                 | 1/2 sum_k (y_hat_k - y_k)^2                        |
| logistic | binary cross-entropy          | -sum_k y_k log p_k + (1 - y_k) log(1 - p_k)        |
| softmax  | categorical cross-entropy     | -sum_k y_k log p_k                                 |
| exp      | Poisson deviance (half)       | sum_k y_k log(y_k / y_hat_k) - y_k + y_hat_k       |

Probabilities are clipped to [eps, 1 - eps] for the loss value only, as scikit-learn does. The loss of a
batch is ``sum_i w_i loss_i / sum_i w_i``; each kernel returns the weighted sum and leaves the division to
the caller, which also adds the L2 penalty.

Squared error sums over outputs (scikit-learn averages the loss over outputs but not the gradient, so its
lbfgs sees a gradient that is not the loss's, issue #8349; here loss and gradient agree).
"""

from __future__ import annotations

import numpy as np

from fastbp._jit import jit

IDENTITY_SQUARED_ERROR, LOGISTIC_BINARY_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY, EXP_POISSON = 0, 1, 2, 3
OUTPUT_CODES: dict[str, int] = {
    "identity": IDENTITY_SQUARED_ERROR,
    "logistic": LOGISTIC_BINARY_CROSS_ENTROPY,
    "softmax": SOFTMAX_CROSS_ENTROPY,
    "exp": EXP_POISSON,
}


@jit(inline="always")
def xlogy(x, y, zero):  # scipy.special.xlogy for x >= 0: 0 where x == 0
    return zero if x == zero else x * np.log(y)


@jit(inline="always")
def clip(p, lo, hi):
    return lo if p < lo else (hi if p > hi else p)


@jit
def output_forward(Z, b, code):
    """``Z <- output_activation(Z + b)`` in place (prediction; no loss)."""
    m, k = Z.shape
    one = Z.dtype.type(1)
    zero = Z.dtype.type(0)
    for i in range(m):
        if code == SOFTMAX_CROSS_ENTROPY:
            top = Z[i, 0] + b[0]
            for j in range(k):
                top = max(top, Z[i, j] + b[j])
            total = zero
            for j in range(k):
                e = np.exp(Z[i, j] + b[j] - top)
                Z[i, j] = e
                total += e
            inv = one / total
            for j in range(k):
                Z[i, j] *= inv
        elif code == LOGISTIC_BINARY_CROSS_ENTROPY:
            for j in range(k):
                Z[i, j] = one / (one + np.exp(-(Z[i, j] + b[j])))
        elif code == EXP_POISSON:
            for j in range(k):
                Z[i, j] = np.exp(Z[i, j] + b[j])
        else:
            for j in range(k):
                Z[i, j] = Z[i, j] + b[j]


@jit
def output_loss_backward(Z, b, Y, sample_weight, code, delta, grad_b):
    """Output activation, loss and output error in one pass over the rows.

    On return Z holds ``y_hat``, ``delta = w * (y_hat - Y)`` and ``grad_b`` its column sums. Returns the
    weighted sum of the per-sample losses. ``sample_weight`` of size 0 means all weights are 1.
    """
    output_forward(Z, b, code)
    m, k = Z.shape
    zero = Z.dtype.type(0)
    one = Z.dtype.type(1)
    half = Z.dtype.type(0.5)
    eps = Z.dtype.type(np.finfo(Z.dtype).eps)
    weighted = sample_weight.shape[0] > 0
    grad_b[:] = zero
    total = zero
    for i in range(m):
        row = zero
        if code == SOFTMAX_CROSS_ENTROPY:
            for j in range(k):
                row -= xlogy(Y[i, j], clip(Z[i, j], eps, one - eps), zero)
        elif code == LOGISTIC_BINARY_CROSS_ENTROPY:
            for j in range(k):
                p = clip(Z[i, j], eps, one - eps)
                row -= xlogy(Y[i, j], p, zero) + xlogy(one - Y[i, j], one - p, zero)
        elif code == EXP_POISSON:
            for j in range(k):
                row += xlogy(Y[i, j], Y[i, j] / Z[i, j], zero) - Y[i, j] + Z[i, j]
        else:
            for j in range(k):
                r = Z[i, j] - Y[i, j]
                row += half * r * r
        w = sample_weight[i] if weighted else one
        total += w * row
        for j in range(k):
            d = w * (Z[i, j] - Y[i, j])
            delta[i, j] = d
            grad_b[j] += d
    return total

"""The parallel training step: numba's threads own the cores, each running single-threaded BLAS on its part.

The serial step (``dense.network_forward_backward``) leaves the cores to OpenBLAS's own threads, and every
elementwise pass, Adam's included, runs on one core while OpenBLAS's idle worker spins on the other. Here BLAS
runs one thread (``fastbp.threads`` limits it around the epoch) and one ``prange`` region per layer and
direction gives each of ``parts`` threads a fixed part of the work (docs/design.md "The parallel step"):

forward, layer l     Z[:, cols] = A_prev @ W[:, cols]; A[:, cols] = f(Z[:, cols] + b[cols])
                     (the thread's columns: its half of every product, bias and activation while in cache)
output layer         y_hat, loss, delta, db: one serial pass (a few columns; cheaper than a launch)
backward, layer l    delta_prev[:, rows] = delta @ W[rows, :].T; delta_prev[:, rows] *= f'(A_prev[:, rows])
                     and db_prev[rows]; dW[rows, :] = A_prev[:, rows].T @ delta; the step on W[rows, :]
                     (the thread's rows of W: a contiguous block, read for delta_prev before it is stepped);
                     the step on b[cols]

Each thread's W rows are a contiguous block of the parameter and state buffers: an Adam step over column
halves of every row ran 2x slower on two threads than on one (``python bench/adam_memory.py``). Parts are
multiples of 16 elements, so no two threads write the same cache line of a row. The squared norms are
summed in part order after each region: for a given ``parts`` every weight is bitwise the same in every run
(the partition is fixed; which OS thread runs a part does not matter).
"""

from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.extending import overload

from fastbp._jit import OVERLOAD_OPTIONS, jit
from fastbp.kernels.activations import activation_backward, bias_activation_forward
from fastbp.kernels.blas import SCRATCH_BYTES, N, T, gemm
from fastbp.kernels.dense import (
    B_OFFSET,
    FAN_IN,
    FAN_OUT,
    W_OFFSET,
    activation_offset,
    bias,
    network_forward_backward,
    rows,
)
from fastbp.kernels.losses import output_loss_backward
from fastbp.kernels.optimizers import NO_UPDATE, SGD, squared_norm, update_range

# Each part's scratch: its gemm arguments (blas.SCRATCH_BYTES), then its two squared norms (float64).
PART_BYTES = 2 * SCRATCH_BYTES


@jit(inline="always")
def part(n, t, parts):
    """Part ``t`` of ``range(n)`` split in ``parts``: ``(start, stop)``, starts at multiples of 16."""
    size = ((n + parts - 1) // parts + 15) // 16 * 16
    start = min(n, t * size)
    return start, min(n, start + size)


@jit
def forward_part(branches, A, params, w_start, b_start, Z, pre, code, p, hidden, t, parts, blas):
    """Thread t's columns of one layer: ``Z[:, cols] = A @ W[:, cols]``, then bias and activation on them."""
    m, n = Z.shape
    k = A.shape[1]  # A is C-contiguous (X through Network._check_X): its row stride is its width
    c0, c1 = part(n, t, parts)
    if c1 > c0:
        item = params.itemsize
        W = params.ctypes.data + item * (w_start + c0)
        gemm(N, N, m, c1 - c0, k, 1, A.ctypes.data, k, W, n, 0, Z.ctypes.data + item * c0, n, blas, params)
        if hidden:
            bias_activation_forward(branches, code, Z, params[b_start : b_start + n], p, pre, c0, c1)


@jit
def backward_part(
    branches, A_prev, delta, delta_prev, pre, code, p, params, grads, state_a, state_b, w_start, b_start,
    prev_b_start, l2, step, t, parts, blas,
):  # fmt: skip
    """Thread t's rows of layer l's W: its part of ``delta_prev`` (and the derivative below), ``dW`` and step.

    ``delta_prev`` has no rows for the first layer (there is no layer below). Returns the squared norms of the
    thread's new weights and biases (plain SGD without L2 needs neither: 0).
    """
    m, n = delta.shape
    k = A_prev.shape[1]
    zero, one = params.dtype.type(0), params.dtype.type(1)
    item = params.itemsize
    r0, r1 = part(k, t, parts)
    w_sq = b_sq = zero
    if r1 > r0:
        W_rows = params.ctypes.data + item * (w_start + r0 * n)
        if delta_prev.shape[0] > 0:  # delta_prev[:, rows] = delta @ W[rows, :].T, before the step changes W
            at = delta_prev.ctypes.data + item * r0
            gemm(N, T, m, r1 - r0, n, 1, delta.ctypes.data, n, W_rows, n, 0, at, k, blas, params)
            grad_b = grads[prev_b_start : prev_b_start + k]
            activation_backward(branches, code, delta_prev, A_prev, pre, p, grad_b, r0, r1)
        A_cols = A_prev.ctypes.data + item * r0
        lo, hi = w_start + r0 * n, w_start + r1 * n
        if step.code == SGD and step.momentum == 0:  # the gemm is the step: W <- (1 - lr l2) W - lr scale A.T @ D
            rate = step.learning_rate
            gemm(T, N, r1 - r0, n, m, -rate * step.scale, A_cols, k, delta.ctypes.data, n, one - rate * l2,
                 W_rows, n, blas, params)  # fmt: skip
            w_sq = squared_norm(params[lo:hi]) if l2 > 0 else zero
        else:
            dW = grads.ctypes.data + item * lo
            gemm(T, N, r1 - r0, n, m, 1, A_cols, k, delta.ctypes.data, n, 0, dW, n, blas, params)
            if step.code != NO_UPDATE:
                w_sq = update_range(params, grads, state_a, state_b, lo, hi, l2, step)
    c0, c1 = part(n, t, parts)
    if c1 > c0 and step.code != NO_UPDATE:
        b_sq = update_range(params, grads, state_a, state_b, b_start + c0, b_start + c1, zero, step)
    return w_sq, b_sq


@jit(parallel=True)
def forward_parts(branches, A, params, w_start, b_start, Z, pre, code, p, hidden, parts, blas):
    """One layer's forward pass, :func:`forward_part` on each of ``parts`` threads."""
    for i in prange(parts):
        t = np.int64(i)  # typed int64 before the parfor pass and uint64 after: two compiles of the part (~0.4 s)
        own = blas[t * PART_BYTES : t * PART_BYTES + SCRATCH_BYTES]
        forward_part(branches, A, params, w_start, b_start, Z, pre, code, p, hidden, t, parts, own)


@jit(parallel=True)
def backward_parts(
    branches, A_prev, delta, delta_prev, pre, code, p, params, grads, state_a, state_b, w_start, b_start,
    prev_b_start, l2, step, parts, blas,
):  # fmt: skip
    """One layer's backward pass and step, :func:`backward_part` on each of ``parts`` threads.

    Returns the squared norms of the layer's new W and b, the parts' sums added in part order.
    """
    for i in prange(parts):
        t = np.int64(i)  # as in forward_parts (~1 s)
        own = blas[t * PART_BYTES : t * PART_BYTES + SCRATCH_BYTES]
        w, b = backward_part(
            branches, A_prev, delta, delta_prev, pre, code, p, params, grads, state_a, state_b, w_start,
            b_start, prev_b_start, l2, step, t, parts, own,
        )  # fmt: skip
        norms = blas[t * PART_BYTES + SCRATCH_BYTES : (t + 1) * PART_BYTES].view(np.float64)
        norms[0], norms[1] = w, b  # not a parfor reduction: those cost ~0.9 s of compile
    w_sq = b_sq = 0.0
    for t in range(parts):
        norms = blas[t * PART_BYTES + SCRATCH_BYTES : (t + 1) * PART_BYTES].view(np.float64)
        w_sq += norms[0]
        b_sq += norms[1]
    return params.dtype.type(w_sq), params.dtype.type(b_sq)


@jit
def parallel_forward_backward(
    branches, X, Y, sample_weight, params, grads, model, scratch, state_a, state_b, l2, step, dropout_key, parts
):  # fmt: skip
    """``dense.network_forward_backward`` over ``parts`` threads; the same arguments, results and layout.

    ``X`` is dense; no dropout (Python chooses the serial step for both; ``dropout_key`` is unused).
    ``scratch.blas`` holds ``parts * PART_BYTES`` bytes: each part's gemm arguments and squared norms.
    """
    layers = model.layers
    m = X.shape[0]
    last = layers.shape[0] - 1
    capacity, blas = scratch.capacity, scratch.blas
    keeps_z = scratch.pre.size > 0
    for l in range(last + 1):
        offset = activation_offset(layers, l, capacity)
        Z = rows(scratch.acts, offset, m, layers[l, FAN_OUT])
        pre = rows(scratch.pre, offset, m if keeps_z and l < last else 0, layers[l, FAN_OUT])
        hidden = l < last
        code = model.activations[l] if hidden else model.loss  # the output layer's activation is the loss's
        p = model.activation_params[l] if hidden else model.loss_param
        w_start, b_start = layers[l, W_OFFSET], layers[l, B_OFFSET]
        if l == 0:  # X apart: it may be read-only (a memmap), the scratch views are not: two types
            forward_parts(branches, X, params, w_start, b_start, Z, pre, code, p, hidden, parts, blas)
        else:
            A = rows(scratch.acts, activation_offset(layers, l - 1, capacity), m, layers[l, FAN_IN])
            forward_parts(branches, A, params, w_start, b_start, Z, pre, code, p, hidden, parts, blas)
    out = rows(scratch.acts, activation_offset(layers, last, capacity), m, layers[last, FAN_OUT])
    delta = rows(scratch.delta_a, 0, m, layers[last, FAN_OUT])
    loss = output_loss_backward(
        branches, model.loss, out, bias(params, layers, last), Y, sample_weight, model.loss_param, delta,
        bias(grads, layers, last),
    )  # fmt: skip
    w_sq = params.dtype.type(0)
    b_sq = params.dtype.type(0)
    for l in range(last, 0, -1):
        h = l - 1
        offset = activation_offset(layers, h, capacity)
        k = layers[l, FAN_IN]
        A_prev = rows(scratch.acts, offset, m, k)
        delta_prev = rows(scratch.delta_b if (last - l) % 2 == 0 else scratch.delta_a, 0, m, k)
        pre = rows(scratch.pre, offset, m, k) if keeps_z else A_prev
        w, b = backward_parts(
            branches, A_prev, delta, delta_prev, pre, model.activations[h], model.activation_params[h], params,
            grads, state_a, state_b, layers[l, W_OFFSET], layers[l, B_OFFSET], layers[h, B_OFFSET], l2, step, parts,
            blas,
        )  # fmt: skip
        w_sq += w
        b_sq += b
        delta = delta_prev
    no_rows = rows(scratch.delta_b, 0, 0, layers[0, FAN_IN])  # no layer below the first
    b_start = layers[0, B_OFFSET]
    w, b = backward_parts(
        branches, X, delta, no_rows, no_rows, model.loss, model.loss_param, params, grads, state_a, state_b,
        layers[0, W_OFFSET], b_start, b_start, l2, step, parts, blas,
    )  # fmt: skip
    return loss, w_sq + w, b_sq + b


def forward_backward_step(
    branches, X, Y, sample_weight, params, grads, model, scratch, state_a, state_b, l2, step, dropout_key, parts
):  # pragma: no cover - compiled by the overload below
    """One mini-batch's step: the parallel one over ``parts`` threads if ``branches.parallel``, else the serial
    ``dense.network_forward_backward`` (which takes ``dropout_key`` and ignores ``parts``).

    Chosen when the epoch is typed, so an epoch compiles only the step it runs.
    """


@overload(forward_backward_step, **OVERLOAD_OPTIONS)
def _forward_backward_step(
    branches, X, Y, sample_weight, params, grads, model, scratch, state_a, state_b, l2, step, dropout_key, parts
):  # fmt: skip
    # The step's own Python function, not a wrapper calling its dispatcher: numba re-optimizes each callee in
    # every caller, and the wrapper level cost a first fit ~1.1 s of compile (numba's compile events).
    if branches.parallel and isinstance(X, types.Array):
        return parallel_forward_backward.py_func
    return network_forward_backward.py_func


@jit(parallel=True)
def launch(n):
    """A parallel loop of ``n`` empty iterations: makes numba pick its threading layer (``fastbp.threads``)."""
    total = 0
    for i in prange(n):
        total += i
    return total

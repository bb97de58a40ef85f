"""The network's input X as seen by the kernels: a dense 2-D array or a CSR matrix, behind one interface.

A CSR matrix travels as the tuple ``(data, indices, indptr, n_columns)`` in which row r spans
``indptr[r]:indptr[r + 1]`` of ``data``/``indices``; the offsets are absolute, so a run of rows is just a
slice of ``indptr`` (no copy). Only the first layer ever touches X, through these five functions; numba picks
the dense or the sparse version at compile time (``overload``), so the rest of the network code is shared.

========================  ==============================  ==========================================
function                  dense X                          CSR X
========================  ==============================  ==========================================
n_rows(X)                 X.shape[0]                       len(indptr) - 1
input_rows(X, start, m)   X[start:start + m] (a view)      (data, indices, indptr[start:start+m+1], n)
input_gather(...)         copy rows ``order[start:]``      copy rows into CSR batch buffers
input_times(X, W, Z)      Z = X @ W (BLAS)                 Z = X @ W, a loop over the stored values
input_transpose_times     C = beta C + alpha X.T @ D       the same, scattering each stored value's row
========================  ==============================  ==========================================
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from fastbp._jit import OVERLOAD_OPTIONS, jit
from fastbp.kernels.blas import gemm_accumulate


def n_rows(X):  # pragma: no cover - the compiled versions below are what runs
    raise NotImplementedError


def input_rows(X, start, m):  # pragma: no cover
    raise NotImplementedError


def input_gather(X, order, start, m, buffer):  # pragma: no cover
    raise NotImplementedError


def input_times(X, W, Z):  # pragma: no cover
    raise NotImplementedError


def input_transpose_times(X, D, C, alpha, beta, blas_scratch):  # pragma: no cover
    raise NotImplementedError


@jit
def all_finite(X):
    """Whether a dense 2-D array holds no NaN or inf, without allocating (``x * 0`` is 0 only for finite x)."""
    zero = X.dtype.type(0)
    total = zero
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            total += X[i, j] * zero
    return total == zero


def _dense(X) -> bool:
    return isinstance(X, types.Array)


@overload(n_rows, **OVERLOAD_OPTIONS)
def _n_rows(X):
    if _dense(X):
        return lambda X: X.shape[0]
    return lambda X: X[2].shape[0] - 1


@overload(input_rows, **OVERLOAD_OPTIONS)
def _input_rows(X, start, m):
    if _dense(X):
        return lambda X, start, m: X[start : start + m]
    return lambda X, start, m: (X[0], X[1], X[2][start : start + m + 1], X[3])


@overload(input_gather, **OVERLOAD_OPTIONS)
def _input_gather(X, order, start, m, buffer):
    if _dense(X):

        def gather_dense(X, order, start, m, buffer):
            for r in range(m):  # an explicit loop: 30% faster than buffer[r, :] = X[row, :] (measured)
                source, target = X[order[start + r]], buffer[r]
                for j in range(X.shape[1]):
                    target[j] = source[j]
            return buffer[:m]

        return gather_dense

    def gather_csr(X, order, start, m, buffer):
        data, indices, indptr, n_columns = X
        batch_data, batch_indices, batch_indptr = buffer
        at = 0
        batch_indptr[0] = 0
        for r in range(m):
            row = order[start + r]
            for p in range(indptr[row], indptr[row + 1]):
                batch_data[at] = data[p]
                batch_indices[at] = indices[p]
                at += 1
            batch_indptr[r + 1] = at
        return batch_data, batch_indices, batch_indptr[: m + 1], n_columns

    return gather_csr


@overload(input_times, **OVERLOAD_OPTIONS)
def _input_times(X, W, Z):
    if _dense(X):

        def times_dense(X, W, Z):
            np.dot(X, W, Z)

        return times_dense

    def times_csr(X, W, Z):
        data, indices, indptr, _ = X
        Z[:] = 0
        for r in range(Z.shape[0]):
            for p in range(indptr[r], indptr[r + 1]):
                value, row_of_W = data[p], indices[p]
                for j in range(Z.shape[1]):
                    Z[r, j] += value * W[row_of_W, j]

    return times_csr


@overload(input_transpose_times, **OVERLOAD_OPTIONS)
def _input_transpose_times(X, D, C, alpha, beta, blas_scratch):
    if _dense(X):

        def transpose_times_dense(X, D, C, alpha, beta, blas_scratch):
            gemm_accumulate(X, D, C, alpha, beta, blas_scratch)

        return transpose_times_dense

    def transpose_times_csr(X, D, C, alpha, beta, blas_scratch):
        data, indices, indptr, _ = X
        if beta == 0:
            C[:] = 0
        elif beta != 1:
            for i in range(C.shape[0]):
                for j in range(C.shape[1]):
                    C[i, j] *= beta
        for r in range(D.shape[0]):
            for p in range(indptr[r], indptr[r + 1]):
                value, row_of_C = alpha * data[p], indices[p]
                for j in range(C.shape[1]):
                    C[row_of_C, j] += value * D[r, j]

    return transpose_times_csr

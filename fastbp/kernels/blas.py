"""BLAS's gemm through pointers: any alpha and beta, any part of a matrix, from any thread.

numba's ``np.dot(a, b, out)`` hard-wires ``out = a @ b`` (alpha 1, beta 0) on whole arrays. Plain SGD wants
``W <- beta W + alpha A.T @ D`` (beta = 1 - lr * l2, alpha = -lr / n): one gemm that *is* the update, with no
gradient buffer and no separate pass over W (:func:`gemm_accumulate`). The parallel step
(``kernels/parallel.py``) multiplies column or row blocks of its matrices, given by a pointer and a row
stride (:func:`gemm`). Both call scipy's ``sgemm``/``dgemm`` (the same OpenBLAS that numba's ``np.dot``
uses) through the function pointers of ``scipy.linalg.cython_blas``.

BLAS is column-major: a C-ordered (fan_in, fan_out) W is the column-major W^T, so :func:`gemm` swaps the
operands (``C^T = op(B)^T op(A)^T``). Every BLAS argument is a pointer; the scalars go through a small
scratch buffer allocated once per epoch (one per thread in the parallel step).
"""

from __future__ import annotations

import llvmlite.binding
import numpy as np
from numba import types
from numba.extending import get_cython_function_address, intrinsic

from fastbp._jit import jit

# Named external symbols, not ctypes pointers: numba cannot cache code that holds a ctypes pointer (and then
# neither the epoch kernel that calls it), but it caches a call to a named symbol, bound here at import.
# Pointers travel as intp, which has the pointer's size and calling convention.
for _name in ("sgemm", "dgemm"):
    llvmlite.binding.add_symbol(f"fastbp_{_name}", get_cython_function_address("scipy.linalg.cython_blas", _name))
_sgemm = types.ExternalFunction("fastbp_sgemm", types.void(*([types.intp] * 13)))
_dgemm = types.ExternalFunction("fastbp_dgemm", types.void(*([types.intp] * 13)))

SCRATCH_BYTES = 64  # 2 chars at 0, six int32 at 8, two floats (alpha, beta) at 32
N, T = 78, 84  # BLAS's transpose flags, 'N' and 'T'


@intrinsic
def store(typingctx, address, value):
    """``*(type of value *) address = value``: a typed store into a scratch buffer, without the typed views
    (``scratch[8:32].view(np.int32)``) whose checks numba compiles for each pair of dtypes (~0.13 s each)."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        pointer = builder.inttoptr(args[0], context.get_value_type(signature.args[1]).as_pointer())
        builder.store(args[1], pointer)
        return context.get_dummy_value()

    return types.void(address, value), codegen


@jit(inline="always")
def gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scratch, like):
    """``C <- alpha op(A) @ op(B) + beta C`` on row-major matrices given by pointers, one BLAS call.

    ``op(X)`` is X (``N``) or X.T (``T``); op(A) is (m, k), op(B) (k, n), C (m, n); ``lda``, ``ldb``,
    ``ldc`` are the row strides in elements. ``scratch`` (``SCRATCH_BYTES`` uint8) holds the pointed-to
    arguments (one per thread when threads call at once); ``like`` is any array of the matrices' dtype.
    BLAS is column-major and a row-major matrix is its transpose there, so this computes
    ``C.T = op(B).T @ op(A).T`` with the operands swapped and the same flags.
    """
    p = scratch.ctypes.data
    scratch[0], scratch[1] = trans_b, trans_a
    store(p + 8, np.int32(n))
    store(p + 12, np.int32(m))
    store(p + 16, np.int32(k))
    store(p + 20, np.int32(ldb))
    store(p + 24, np.int32(lda))
    store(p + 28, np.int32(ldc))
    real = like.dtype.type
    beta_at = p + 32 + like.itemsize
    store(p + 32, real(alpha))
    store(beta_at, real(beta))
    if like.itemsize == 4:
        _sgemm(p, p + 1, p + 8, p + 12, p + 16, p + 32, b, p + 20, a, p + 24, beta_at, c, p + 28)
    else:
        _dgemm(p, p + 1, p + 8, p + 12, p + 16, p + 32, b, p + 20, a, p + 24, beta_at, c, p + 28)


@jit
def gemm_accumulate(A, D, W, alpha, beta, scratch):
    """``W <- beta * W + alpha * A.T @ D`` for C-contiguous A (m, k), D (m, n), W (k, n), one BLAS call.

    ``scratch`` is a uint8 array of ``SCRATCH_BYTES`` bytes that holds the pointed-to arguments.
    """
    m, k = A.shape
    n = D.shape[1]
    gemm(T, N, k, n, m, alpha, A.ctypes.data, k, D.ctypes.data, n, beta, W.ctypes.data, n, scratch, W)

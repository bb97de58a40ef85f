"""Numba owning the cores: each product split over a prange, BLAS at one thread, Adam fused in.

    python bench/column_split.py [batch sizes ...] [noadam]

The probe behind fastbp's parallel step (docs/design.md "The parallel step"): during training BLAS gets one thread
(threadpoolctl) and numba's prange owns both cores. The forward products and the input gradients are split by
output columns, each core running a single-threaded gemm on its half. The weight gradient and Adam come two
ways: split by rows of W (each core computes ``dW[rows, :]`` and steps those whole rows, a contiguous half of
the buffer) or by columns (``dW[:, cols]``, then Adam on the half-rows). The two differ 3x in the Adam step
alone (``python bench/adam_memory.py``: column halves over two threads are slower than one thread). Printed
per batch size, one process, best of 3 epochs (60,000 x 784 float32, 784-256-128-10, no shuffle): the
two-thread GEMM floor, the same floor with BLAS at one thread, both splits, and ``fastbp.Network.train_epoch``
(serial kernels, two-thread BLAS). ``noadam`` skips the weights' Adam step (the biases still take theirs).
"""

from __future__ import annotations

import sys
import time

import numba
import numpy as np
from numba import njit, prange, types
from threadpoolctl import threadpool_limits

import fastbp
import fastbp.kernels.blas  # noqa: F401 - binds the fastbp_sgemm symbol
from fastbp._jit import FASTMATH

_sgemm = types.ExternalFunction("fastbp_sgemm", types.void(*([types.intp] * 13)))
FLAGS = {"fastmath": set(FASTMATH), "error_model": "numpy"}


@njit(inline="always")
def gemm(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc, s):  # noqa: N803 - BLAS's names
    """Column-major sgemm through pointers; ``s`` is this thread's 64-byte argument scratch."""
    s[0], s[1] = ta, tb
    ints = s[8:32].view(np.int32)
    ints[0], ints[1], ints[2], ints[3], ints[4], ints[5] = M, N, K, lda, ldb, ldc
    f = s[32:40].view(np.float32)
    f[0], f[1] = alpha, beta
    p = s.ctypes.data
    _sgemm(p, p + 1, p + 8, p + 12, p + 16, p + 32, a, p + 20, b, p + 24, p + 36, c, p + 28)


@njit(inline="always")
def block(n, t, threads):
    """Thread t's columns of n: equal parts, multiples of 16 floats (whole cache lines)."""
    per = ((n + threads - 1) // threads + 15) // 16 * 16
    c0 = min(n, t * per)
    return c0, min(n, c0 + per)


@njit(**FLAGS)
def adam(p, g, m, v, scale, step):
    """fastbp's Adam step on contiguous ranges (subnormal state flushed, as fastbp's is)."""
    b1, b2, eps, one, zero = np.float32(0.9), np.float32(0.999), np.float32(1e-8), np.float32(1), np.float32(0)
    tiny = np.float32(np.finfo(np.float32).tiny)
    g_floor = np.sqrt(tiny / (one - b2))
    for j in range(p.size):
        gj = g[j] * scale
        mj = b1 * m[j] + (one - b1) * gj
        mj = mj if abs(mj) >= tiny else zero
        gj = gj if abs(gj) >= g_floor else zero
        vj = b2 * v[j] + (one - b2) * gj * gj
        vj = vj if vj >= tiny else zero
        m[j], v[j] = mj, vj
        p[j] = p[j] - step * mj / (np.sqrt(vj) + eps)


@njit(parallel=True, **FLAGS)
def epoch(X, Y, P, G, M1, V1, sizes, bs, lr, threads, acts, deltas, scratch, adam_weights, weight_rows):
    N = X.shape[0]
    one, zero = np.float32(1), np.float32(0)
    L = sizes.shape[0] - 1
    nw = 0
    for l in range(L):
        nw += sizes[l] * sizes[l + 1]
    t_adam = 0
    for s0 in range(0, N, bs):
        m = min(bs, N - s0)
        Xb = X[s0 : s0 + m]
        t_adam += 1
        step = np.float32(lr * np.sqrt(1 - 0.999**t_adam) / (1 - 0.9**t_adam))
        off, boff, aoff = 0, nw, 0
        for l in range(L):  # forward: Z[:, cols] = A @ W[:, cols], then bias + ReLU on those columns
            k, n = sizes[l], sizes[l + 1]
            A = Xb if l == 0 else acts[aoff - m * k : aoff].reshape((m, k))
            Z = acts[aoff : aoff + m * n].reshape((m, n))
            W, b = P[off : off + k * n], P[boff : boff + n]
            for t in prange(threads):
                c0, c1 = block(n, t, threads)
                if c1 > c0:
                    gemm(78, 78, c1 - c0, m, k, one, W.ctypes.data + 4 * c0, n, A.ctypes.data, k, zero,
                         Z.ctypes.data + 4 * c0, n, scratch[t])  # fmt: skip
                    if l < L - 1:
                        for i in range(m):
                            for j in range(c0, c1):
                                v = Z[i, j] + b[j]
                                Z[i, j] = v if v > zero else zero
            off, boff, aoff = off + k * n, boff + n, aoff + m * n
        n = sizes[L]  # softmax and output error, serial (10 columns)
        Z = acts[aoff - m * n : aoff].reshape((m, n))
        d = deltas[0, : m * n].reshape((m, n))
        bL = P[boff - n : boff]
        for i in range(m):
            top = Z[i, 0] + bL[0]
            for j in range(n):
                Z[i, j] += bL[j]
                top = max(top, Z[i, j])
            total = zero
            for j in range(n):
                e = np.exp(Z[i, j] - top)
                Z[i, j] = e
                total += e
            for j in range(n):
                d[i, j] = Z[i, j] / total - Y[s0 + i, j]
        cur = 0
        for l in range(L - 1, -1, -1):
            k, n = sizes[l], sizes[l + 1]
            off, boff, aoff = 0, nw, 0
            for q in range(l):
                off, boff, aoff = off + sizes[q] * sizes[q + 1], boff + sizes[q + 1], aoff + m * sizes[q + 1]
            W = P[off : off + k * n]
            delta = deltas[cur, : m * n].reshape((m, n))
            A = Xb if l == 0 else acts[aoff - m * k : aoff].reshape((m, k))
            if l > 0:  # delta_prev[:, rows] = delta @ W[rows, :].T, then the ReLU derivative on those columns
                dp = deltas[1 - cur, : m * k].reshape((m, k))
                for t in prange(threads):
                    r0, r1 = block(k, t, threads)
                    if r1 > r0:
                        gemm(84, 78, r1 - r0, m, n, one, W.ctypes.data + 4 * r0 * n, n, delta.ctypes.data, n,
                             zero, dp.ctypes.data + 4 * r0, k, scratch[t])  # fmt: skip
                        for i in range(m):
                            for j in range(r0, r1):
                                if A[i, j] <= zero:
                                    dp[i, j] = zero
            scale = one / np.float32(m)
            for t in prange(threads):  # the weight gradient and Adam: by rows (default) or by columns
                if weight_rows:  # dW[rows, :] = A[:, rows].T @ delta, then Adam on those whole (contiguous) rows
                    r0, r1 = block(k, t, threads)
                    if r1 > r0:
                        gemm(78, 84, n, r1 - r0, m, one, delta.ctypes.data, n, A.ctypes.data + 4 * r0, k, zero,
                             G.ctypes.data + 4 * (off + r0 * n), n, scratch[t])  # fmt: skip
                        lo, hi = off + r0 * n, off + r1 * n
                        if adam_weights:
                            adam(P[lo:hi], G[lo:hi], M1[lo:hi], V1[lo:hi], scale, step)
                c0, c1 = block(n, t, threads)
                if c1 > c0 and not weight_rows:  # dW[:, cols] = A.T @ delta[:, cols], Adam on W[:, cols] row by row
                    gemm(78, 84, c1 - c0, k, m, one, delta.ctypes.data + 4 * c0, n, A.ctypes.data, k, zero,
                         G.ctypes.data + 4 * (off + c0), n, scratch[t])  # fmt: skip
                    for i in range(k if adam_weights else 0):
                        lo, hi = off + i * n + c0, off + i * n + c1
                        adam(P[lo:hi], G[lo:hi], M1[lo:hi], V1[lo:hi], scale, step)
                for j in range(c0, c1):  # the bias by columns either way
                    gj = zero
                    for i in range(m):
                        gj += delta[i, j]
                    G[boff + j] = gj
                lo, hi = boff + c0, boff + c1
                adam(P[lo:hi], G[lo:hi], M1[lo:hi], V1[lo:hi], scale, step)
            cur = 1 - cur
    return 0


@njit(**FLAGS)
def floor_epoch(X, P, sizes, bs, acts, deltas, G):
    """The bare products of one epoch (forward, weight gradients, input gradients), BLAS with its threads."""
    N, L = X.shape[0], sizes.shape[0] - 1
    for s0 in range(0, N, bs):
        m = min(bs, N - s0)
        Xb = X[s0 : s0 + m]
        off = aoff = 0
        for l in range(L):
            k, n = sizes[l], sizes[l + 1]
            A = Xb if l == 0 else acts[aoff - m * k : aoff].reshape((m, k))
            np.dot(A, P[off : off + k * n].reshape((k, n)), acts[aoff : aoff + m * n].reshape((m, n)))
            off, aoff = off + k * n, aoff + m * n
        for l in range(L - 1, -1, -1):
            k, n = sizes[l], sizes[l + 1]
            off = aoff = 0
            for q in range(l):
                off, aoff = off + sizes[q] * sizes[q + 1], aoff + m * sizes[q + 1]
            delta = acts[aoff : aoff + m * n].reshape((m, n))
            A = Xb if l == 0 else acts[aoff - m * k : aoff].reshape((m, k))
            np.dot(A.T, delta, G[off : off + k * n].reshape((k, n)))
            if l > 0:
                np.dot(delta, P[off : off + k * n].reshape((k, n)).T, deltas[0, : m * k].reshape((m, k)))
    return 0


def measure(bs, X, Y, sizes, threads, adam_weights) -> dict:
    """Best of 3 epochs of each arrangement at batch size ``bs``."""
    n_params = int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) + sizes[1:].sum())
    acts, deltas = np.zeros(bs * 394, np.float32), np.zeros((2, bs * 256), np.float32)
    scratch = np.zeros((threads, 64), np.uint8)
    P0 = (np.random.default_rng(1).standard_normal(n_params) * 0.05).astype(np.float32)
    G = np.zeros_like(P0)
    net = fastbp.Network([784, 256, 128, 10], "relu", "softmax", np.float32).initialize(0)
    adam = fastbp.Adam()

    def split(weight_rows):
        P, M1, V1 = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
        with threadpool_limits(1, user_api="blas"):
            t = time.perf_counter()
            epoch(X, Y, P, G, M1, V1, sizes, bs, 1e-3, threads, acts, deltas, scratch, adam_weights, weight_rows)
            return time.perf_counter() - t

    def floor(blas_threads=None):
        with threadpool_limits(blas_threads, user_api="blas"):
            t = time.perf_counter()
            floor_epoch(X, P0, sizes, bs, acts, deltas, G)
            return time.perf_counter() - t

    def serial():
        t = time.perf_counter()
        net.train_epoch(X, Y, bs, adam, shuffle=False)
        return time.perf_counter() - t

    runs = {
        "floor": floor,
        "floor, BLAS 1 thread": lambda: floor(1),
        "split, Adam by rows": lambda: split(True),
        "split, Adam by columns": lambda: split(False),
        "fastbp": serial,
    }
    for run in runs.values():
        run()  # compile, warm up
    return {name: min(run() for _ in range(3)) for name, run in runs.items()}


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((60000, 784), dtype=np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 60000)]
    sizes = np.array([784, 256, 128, 10])
    threads = numba.get_num_threads()
    adam_weights = "noadam" not in sys.argv
    print(f"numba threads {threads}, Adam on the weights: {adam_weights}")
    for bs in [int(a) for a in sys.argv[1:] if a.isdigit()] or [32, 128, 512]:
        best = measure(bs, X, Y, sizes, threads, adam_weights)
        line = ", ".join(f"{name} {s:.3f} s ({s / best['floor']:.2f})" for name, s in best.items())
        print(f"batch {bs}: {line}", flush=True)


if __name__ == "__main__":
    main()

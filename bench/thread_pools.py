"""Why no parallel loop runs between two-thread BLAS calls: a gemm then an Adam update, serial vs prange, per
threading layer (the parallel step holds BLAS at one thread instead: docs/design.md "The parallel step").

    python bench/thread_pools.py              # default layer (OpenMP here)
    python bench/thread_pools.py workqueue
    OMP_WAIT_POLICY=passive python bench/thread_pools.py

Prints microseconds per step; compare the "serial" and "parallel" lines (docs/design.md has the figures).
"""

import sys
import time

import numba

if len(sys.argv) > 1:
    numba.config.THREADING_LAYER = sys.argv[1]

import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def adam_body(p, g, m, v, i, lr, b1, b2, eps):
    one = p.dtype.type(1)
    mi = b1 * m[i] + (one - b1) * g[i]
    vi = b2 * v[i] + (one - b2) * g[i] * g[i]
    m[i] = mi
    v[i] = vi
    p[i] -= lr * mi / (np.sqrt(vi) + eps)


body = njit(fastmath=FASTMATH, inline="always")(adam_body)


@njit(fastmath=FASTMATH)
def adam_serial(p, g, m, v, lr, b1, b2, eps):
    for i in range(p.size):
        body(p, g, m, v, i, lr, b1, b2, eps)


@njit(fastmath=FASTMATH, parallel=True)
def adam_parallel(p, g, m, v, lr, b1, b2, eps):
    for i in prange(p.size):
        body(p, g, m, v, i, lr, b1, b2, eps)


@njit
def steps_serial(A, D, G, p, g, m, v, lr, b1, b2, eps):
    for _ in range(100):
        np.dot(A.T, D, G)
        adam_serial(p, g, m, v, lr, b1, b2, eps)


@njit
def steps_parallel(A, D, G, p, g, m, v, lr, b1, b2, eps):
    for _ in range(100):
        np.dot(A.T, D, G)
        adam_parallel(p, g, m, v, lr, b1, b2, eps)


def main():
    f = np.float32
    rng = np.random.default_rng(0)
    A, D, G = rng.random((32, 784), f), rng.random((32, 256), f), np.empty((784, 256), f)
    p, g, m, v = (rng.random(234752, f) for _ in range(4))
    args = (A, D, G, p, g, m, v, f(1e-3), f(0.9), f(0.999), f(1e-8))
    for name, fn in (("serial", steps_serial), ("parallel", steps_parallel)):
        fn(*args)
        best = min(_timed(fn, args) for _ in range(5))
        print(f"{name:>8}: {best / 100 * 1e6:8.1f} us per step (gemm + Adam update)")
    print("threading layer:", numba.threading_layer())


def _timed(fn, args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()

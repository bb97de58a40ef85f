"""The Adam step alone: one core or two, hot or from memory, contiguous halves or column halves.

    python bench/adam_memory.py

One Adam step over the 234,752 float32 parameters of 784-256-128-10 (read p, g, m, v; write p, m, v), serial
and split over numba's threads (prange), with the data hot in cache (the step alone, repeated) and evicted (a
64 MB buffer touched before each step). Split into contiguous halves the step runs ~1.6x faster on two threads;
split into column halves of the 784 x 256 matrix (each thread stepping its half of every row, as a
column-split weight gradient leaves it) it runs ~2x *slower* than on one thread, which is why the column split
with Adam by columns measured slower than fastbp (``bench/column_split.py``). Median of 200 steps.
docs/design.md "The parallel step" has the figures.
"""

from __future__ import annotations

import time

import numba
import numpy as np
from numba import njit, prange

from fastbp._jit import FASTMATH

FLAGS = {"fastmath": set(FASTMATH), "error_model": "numpy"}


@njit(**FLAGS)
def adam_serial(p, g, m, v, step):
    b1, b2, eps, one = np.float32(0.9), np.float32(0.999), np.float32(1e-8), np.float32(1)
    for i in range(p.size):
        mi = b1 * m[i] + (one - b1) * g[i]
        vi = b2 * v[i] + (one - b2) * g[i] * g[i]
        m[i], v[i] = mi, vi
        p[i] -= step * mi / (np.sqrt(vi) + eps)


@njit(parallel=True, **FLAGS)
def adam_parallel(p, g, m, v, step, threads):
    per = (p.size + threads - 1) // threads
    for t in prange(threads):
        a, b = t * per, min(p.size, (t + 1) * per)
        adam_serial(p[a:b], g[a:b], m[a:b], v[a:b], step)


@njit(parallel=True, **FLAGS)
def adam_column_halves(p, g, m, v, step, threads, n_columns):
    """The same step with each thread owning a band of columns of the (size / n_columns) x n_columns matrix,
    row by row (as a column-split weight gradient leaves it): 3x slower than contiguous halves here."""
    rows, per = p.size // n_columns, (n_columns + threads - 1) // threads
    for t in prange(threads):
        c0, c1 = t * per, min(n_columns, (t + 1) * per)
        for i in range(rows):
            a, b = i * n_columns + c0, i * n_columns + c1
            adam_serial(p[a:b], g[a:b], m[a:b], v[a:b], step)


@njit(**FLAGS)
def touch(buffer):
    for i in range(0, buffer.size, 16):  # one write per cache line
        buffer[i] += np.float32(1)


@njit(**FLAGS)
def copy(a, b):
    for i in range(a.size):
        b[i] = a[i] * np.float32(1.0001)


def main() -> None:
    rng = np.random.default_rng(0)
    p, g, m, v = (rng.random(234_752, dtype=np.float32) for _ in range(4))
    big = np.zeros(16 * 2**20, np.float32)
    threads, step = numba.get_num_threads(), np.float32(1e-3)
    steps = {
        "serial": lambda: adam_serial(p, g, m, v, step),
        "prange": lambda: adam_parallel(p, g, m, v, step, threads),
        "prange, column halves": lambda: adam_column_halves(p, g, m, v, step, threads, 256),
    }
    for run in steps.values():
        run()
    touch(big)
    for label, evict in (("hot", False), ("evicted", True)):
        for name, run in steps.items():
            times = []
            for _ in range(200):
                if evict:
                    touch(big)
                t = time.perf_counter()
                run()
                times.append(time.perf_counter() - t)
            print(f"{label:8s} {name:22s} {np.median(times) * 1e6:6.0f} us per step ({threads} threads)")
    a = rng.random(16 * 2**20, dtype=np.float32)
    b = np.empty_like(a)
    copy(a, b)
    t = time.perf_counter()
    copy(a, b)
    print(f"one core streaming (read + write): {2 * a.nbytes / (time.perf_counter() - t) / 1e9:.1f} GB/s")


if __name__ == "__main__":
    main()

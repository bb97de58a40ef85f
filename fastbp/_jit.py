"""The one place that defines how fastbp compiles its kernels.

Every kernel is decorated with :func:`jit`, so the compiler flags below apply to all of them.

Flags and why
-------------
fastmath
    An explicit subset of LLVM's fast-math flags *without* ``nnan`` and ``ninf``: with those two, LLVM may
    assume no NaN or inf exists and drop the divergence checks (``np.isfinite`` on a NaN returned True in a
    measurement, see docs/design.md). ``reassoc`` and ``contract`` let reductions and ``a * b + c`` vectorize.
error_model="numpy"
    Division by zero gives inf/NaN instead of raising; kernels never raise, Python validates first.
cache=True
    Compiled code is written next to the modules, so a new process loads it in milliseconds instead of
    compiling for seconds. Numba does not notice edits to a kernel in *another* module that a cached kernel
    calls: after editing kernels, delete the caches (``find fastbp -name '*.nb[ci]' -delete``).
nogil=True
    Predictions from several Python threads run at once.

Threads
-------
No kernel uses ``prange``. Training interleaves BLAS calls (which use every core through OpenBLAS's own
thread pool) with elementwise kernels; a parallel numba region between two BLAS calls made a training step
34x slower with the default OpenMP layer and still 10-20% slower than serial code with the workqueue layer or
``OMP_WAIT_POLICY=passive`` (``python bench/thread_pools.py``, numbers in docs/design.md). Serial kernels
leave the cores to BLAS, change no process-wide setting, and are deterministic for a given BLAS thread count.
"""

from __future__ import annotations

import numba

FASTMATH: frozenset[str] = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def jit(*args, **kwargs):
    """Compile a kernel with fastbp's flags (``numba.njit`` with the options documented above)."""
    options = {"cache": True, "fastmath": set(FASTMATH), "error_model": "numpy", "nogil": True}
    options.update(kwargs)
    if args and callable(args[0]):
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)

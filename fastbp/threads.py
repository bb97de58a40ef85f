"""Which training step an epoch runs, on how many threads, and BLAS held at one thread while it does.

The parallel step (:mod:`fastbp.kernels.parallel`) splits each mini-batch's products and passes over numba's
threads, each calling BLAS on one thread; the serial step leaves the threads to BLAS. The parallel step wins
where an optimizer's update pass is a large share of a step (Adam, momentum; small batches): it runs on every
core instead of one core beside OpenBLAS's spinning worker, while the split products cost about what
OpenBLAS's two-thread ones do (docs/design.md "The parallel step"). :func:`step_parts` decides per epoch;
:func:`blas_single_threaded` holds BLAS at one thread for the epoch's compiled call only, restoring it
afterwards (also on exceptions and Ctrl-C).

While it holds, BLAS runs one thread *process-wide*: NumPy products in other Python threads of the process run
single-threaded until the epoch returns. Fits running at once in several threads share one hold (the
original thread counts come back when the last one ends).
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numba

# The largest batch the parallel step runs: Adam float32 epoch, parallel / serial step, 0.72 / 0.90 / 0.93 at
# batch 32 / 64 / 128, 1.04 / 0.99 / 1.02 at 200 / 256 / 512 (python bench/parallel_step.py; design.md).
PARALLEL_MAX_BATCH = 128

_forced: contextvars.ContextVar[int | None] = contextvars.ContextVar("forced_parts", default=None)
_lock = threading.Lock()
_holds = 0
_saved_counts: list[int] = []  # each BLAS library's threads before the first hold, restored by the last


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the BLAS libraries loaded (made once: scanning them takes ~20 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def blas_threads() -> int:
    """The threads BLAS was given in this process: the fewest of any BLAS library loaded (1 if none).

    While an epoch holds BLAS at one thread, the count from before the hold.
    """
    with _lock:
        counts = _saved_counts if _holds else [lib.get_num_threads() for lib in _blas_controller().lib_controllers]
    return min(counts, default=1)


@functools.cache
def threading_layer() -> str:
    """The threading layer numba runs parallel loops on (``omp``, ``tbb`` or ``workqueue``).

    numba picks it at the first parallel launch, so this launches a tiny parallel loop once.
    """
    from fastbp.kernels.parallel import launch

    launch(2)
    return numba.threading_layer()


def step_parts(batch_size: int, dense: bool, dropout: bool, update_pass: bool = True) -> int:
    """How many threads each step of an epoch is split over: 1 for the serial step.

    The parallel step runs when numba has two threads or more, BLAS was given at least as many (a joblib or
    Dask worker given one BLAS thread trains serially: its process was given one core), the input is dense,
    there is no dropout, the optimizer has an update pass (Adam, SGD with momentum: plain SGD's step is its
    gemm, and split it measured 1-7% slower than serial), the batch holds at most
    :data:`PARALLEL_MAX_BATCH` rows, and the threading layer is not ``workqueue`` (which aborts the process
    when two Python threads launch parallel loops at once).

    ``FASTBP_STEP=serial`` in the environment keeps every epoch serial (BLAS's thread count is then never
    changed); ``auto``, the default, applies the rules above.

    Parameters
    ----------
    batch_size : int
        Rows per mini-batch.
    dense : bool
        Whether the training input is a dense array (CSR input trains serially).
    dropout : bool
        Whether the network has dropout (it trains serially).
    update_pass : bool, default=True
        Whether the optimizer makes a pass over the parameters (False: plain SGD, momentum 0).

    Returns
    -------
    int
        The number of parts (threads), ``min(numba.get_num_threads(), blas_threads())``, or 1.
    """
    forced = _forced.get()
    if forced is not None:
        return forced if dense and not dropout else 1
    if _step_setting() == "serial":
        return 1
    if not dense or dropout or not update_pass or batch_size > PARALLEL_MAX_BATCH:
        return 1
    parts = min(numba.get_num_threads(), blas_threads())
    if parts < 2 or threading_layer() == "workqueue":
        return 1
    return parts


def _step_setting() -> str:
    value = os.environ.get("FASTBP_STEP", "auto")
    if value not in ("auto", "serial"):
        raise ValueError(f"FASTBP_STEP must be 'auto' or 'serial', got {value!r}")
    return value


@contextmanager
def forced_parts(parts: int) -> Iterator[None]:
    """Inside the block (this thread or task), :func:`step_parts` answers ``parts`` for dense input without
    dropout: ``fastbp.precompile`` compiles the step a larger fit will run on a tiny one."""
    token = _forced.set(int(parts))
    try:
        yield
    finally:
        _forced.reset(token)


@contextmanager
def blas_single_threaded() -> Iterator[None]:
    """BLAS at one thread inside the block, its thread counts restored on the way out (exceptions included).

    Holds from several Python threads at once share one limit: the first sets it, the last restores the
    counts the first found. The counts are set on the libraries directly: threadpoolctl's own limits let only
    one "controlling" thread change OpenBLAS, so a fit in another thread could neither set nor restore them.
    """
    global _holds, _saved_counts
    with _lock:
        if _holds == 0:
            libraries = _blas_controller().lib_controllers
            _saved_counts = [lib.get_num_threads() for lib in libraries]
            _set_threads(libraries, [1] * len(libraries))
        _holds += 1
    try:
        yield
    finally:
        with _lock:
            _holds -= 1
            if _holds == 0:
                _set_threads(_blas_controller().lib_controllers, _saved_counts)


def _set_threads(libraries, counts) -> None:
    for lib, count in zip(libraries, counts):
        # threadpoolctl >= 3.6 lets only the "controlling" thread change OpenBLAS's process-wide pool; its
        # unchecked setter changes it from any thread (older versions have no such rule and no such method)
        getattr(lib, "_real_set_num_threads", lib.set_num_threads)(count)

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
    calls (it checks only the caller's own file), and silently runs the stale code: this happened here (an
    edit to the Adam step did not reach the cached epoch kernel). :func:`drop_stale_cache` therefore keys
    every kernel cache on a hash of all kernel sources and deletes it when any of them changes.
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

import hashlib
import os
from pathlib import Path

import numba

FASTMATH: frozenset[str] = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


class CompileCacheWarning(UserWarning):
    """numba has nowhere to write its compile cache, so fastbp's kernels compile in every new process."""


_cache_unavailable: list[str] = []  # the reason, once the first kernel found no writable cache folder


def jit(*args, **kwargs):
    """Compile a kernel with fastbp's flags (``numba.njit`` with the options documented above).

    Where numba can write no cache (package folder and user cache folder both read-only, numba's "no locator
    available"), the kernels compile without a cache: ``import fastbp`` works, every process compiles anew,
    and one :class:`CompileCacheWarning` says so (set ``NUMBA_CACHE_DIR`` to a writable folder to cache).
    """
    options = {"cache": True, "fastmath": set(FASTMATH), "error_model": "numpy", "nogil": True}
    options.update(kwargs)

    def compile_(function):
        if options["cache"] and not _cache_unavailable:
            try:
                return numba.njit(**options)(function)
            except RuntimeError as error:
                if "no locator available" not in str(error):
                    raise
                _cache_unavailable.append(str(error))
                from fastbp._warn import warn_user

                warn_user(
                    "numba cannot write a compile cache for fastbp (the package folder and the user cache folder "
                    "are read-only): kernels compile in every new process. Set NUMBA_CACHE_DIR to a writable "
                    "folder to keep them.",
                    CompileCacheWarning,
                )
        return numba.njit(**{**options, "cache": options["cache"] and not _cache_unavailable})(function)

    return compile_(args[0]) if args and callable(args[0]) else compile_


def drop_stale_cache(package_dir: Path) -> None:
    """Delete numba's cache files for ``package_dir`` if any kernel source changed since they were written.

    Called once when :mod:`fastbp.kernels` is imported, before any kernel is compiled or loaded. Looks in the
    in-tree cache (``__pycache__`` beside the modules) and, if set, under ``NUMBA_CACHE_DIR``; a folder it
    cannot write is left alone (numba then uses its user-wide cache, which is keyed the same way).
    """
    sources = sorted(package_dir.glob("*.py")) + [Path(__file__)]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    folders = [package_dir / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        folders += [p for p in Path(os.environ["NUMBA_CACHE_DIR"]).rglob("*") if p.is_dir() and p.name == "kernels"]
    for folder in folders:
        stamp = folder / "fastbp-kernels.sha256"
        try:
            if stamp.is_file() and stamp.read_text() == digest:
                continue
            for cached in [*folder.glob("*.nbi"), *folder.glob("*.nbc")]:
                cached.unlink()
            if folder.is_dir() or folder == package_dir / "__pycache__":
                folder.mkdir(exist_ok=True)
                stamp.write_text(digest)
        except OSError:
            pass

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
cache
    Compiled code is kept in a per-user folder, :func:`kernel_cache_dir`: ``kernels-<version>-<hash>`` under
    ``$FASTBP_CACHE_DIR``, else ``$NUMBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastbp`` or ``~/.cache/fastbp``,
    so a new process loads it in milliseconds instead of compiling for seconds. Not beside the modules: a
    cache inside site-packages outlived ``pip uninstall`` and the leftover folder then shadowed a later
    editable install as an empty namespace package; and read-only installs could not cache at all. The hash
    covers every kernel source, because numba checks only the cached function's own file and silently ran
    stale code after an edit to a kernel it calls (an edit to the Adam step did not reach the cached epoch
    kernel); folders of the same version with another hash are deleted at import.
nogil=True
    Predictions from several Python threads run at once.

Threads
-------
Two training steps: the serial one leaves the cores to BLAS (OpenBLAS's own threads split each product); the
parallel one (``kernels/parallel.py``, ``parallel=True``) gives each of numba's threads a fixed part of every
product and pass while BLAS runs one thread. ``fastbp/threads.py`` chooses per epoch and holds BLAS at one
thread around the parallel epoch only (docs/design.md "The parallel step"). A parallel region between two
multi-threaded BLAS calls is what to avoid: it made a step 34x slower with the OpenMP layer (``python
bench/thread_pools.py``). Prediction is serial.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numba
from numba.core.caching import CompileResultCacheImpl, FunctionCache, _CacheLocator, _SourceFileBackedLocatorMixin

FASTMATH: frozenset[str] = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
# the same flags for the implementations numba's @overload compiles (no cache option there: they are compiled
# into their callers, which are cached)
OVERLOAD_OPTIONS = {"jit_options": {"fastmath": set(FASTMATH), "error_model": "numpy"}}
_KERNEL_SOURCES = sorted((Path(__file__).parent / "kernels").glob("*.py")) + [Path(__file__)]


class CompileCacheWarning(UserWarning):
    """numba has nowhere to write its compile cache, so fastbp's kernels compile in every new process."""


def kernel_cache_dir() -> Path:
    """The folder of fastbp's compiled kernels for this version and these kernel sources.

    Returns
    -------
    pathlib.Path
        ``<root>/kernels-<fastbp version>-<12 hex digits of the kernel sources' SHA-256>``, where root is
        ``$FASTBP_CACHE_DIR``, else ``$NUMBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastbp`` or
        ``~/.cache/fastbp``.
    """
    root = os.environ.get("FASTBP_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastbp"
    return Path(root) / f"kernels-{_version()}-{_SOURCES_DIGEST[:12]}"


def _version() -> str:
    try:
        return version("fastbp")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "source"


_SOURCES_DIGEST = hashlib.sha256(b"".join(p.read_bytes() for p in _KERNEL_SOURCES)).hexdigest()


class _KernelCacheLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
    """numba's cache locator for fastbp's kernels: :func:`kernel_cache_dir`, or nothing if it is not writable."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(kernel_cache_dir())

    def get_cache_path(self):
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        locator = cls(py_func, py_file)
        try:
            locator.ensure_cache_path()
        except OSError:
            return None
        return locator


class _KernelCacheImpl(CompileResultCacheImpl):
    _locator_classes = [_KernelCacheLocator]


class _KernelCache(FunctionCache):
    """numba's FunctionCache, looking only in fastbp's kernel folder (never beside the installed modules)."""

    _impl_class = _KernelCacheImpl


_cache_unavailable: list[str] = []  # the reason, once the first kernel found no writable cache folder


def jit(*args, **kwargs):
    """Compile a kernel with fastbp's flags (``numba.njit`` with the options documented above).

    Where the kernel cache folder cannot be written (numba's "no locator available"), the kernels compile
    without a cache: ``import fastbp`` works, every process compiles anew, and one :class:`CompileCacheWarning`
    says so (set ``FASTBP_CACHE_DIR`` to a writable folder to cache).
    """
    options = {"cache": True, "fastmath": set(FASTMATH), "error_model": "numpy", "nogil": True}
    options.update(kwargs)
    cache = options.pop("cache")

    def compile_(function):
        dispatcher = numba.njit(**options)(function)
        if cache and not _cache_unavailable:
            try:
                dispatcher._cache = _KernelCache(function)  # what numba's cache=True does, with our locator
            except RuntimeError as error:
                if "no locator available" not in str(error):
                    raise
                _cache_unavailable.append(str(error))
                from fastbp._warn import warn_user

                warn_user(
                    f"fastbp cannot write its compile cache ({kernel_cache_dir()} is not writable): kernels "
                    "compile in every new process. Set FASTBP_CACHE_DIR to a writable folder to keep them.",
                    CompileCacheWarning,
                )
        return dispatcher

    return compile_(args[0]) if args and callable(args[0]) else compile_


def drop_other_builds() -> None:
    """Delete cache folders of this fastbp version built from other kernel sources (an edited checkout)."""
    current = kernel_cache_dir()
    try:
        for folder in current.parent.glob(f"kernels-{_version()}-*"):
            if folder != current and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        pass

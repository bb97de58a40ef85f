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

Link-only kernels
-----------------
numba finalizes every compiled function on its own: LLVM's module optimization over the function and
everything linked into it, then machine code; a caller links in its callees' optimized code and does both
again, so a kernel deep in the call tree is optimized and emitted once per level above it. Here a kernel that
another kernel calls is compiled *link-only* (:class:`_LinkOnlyLibrary`: typed and lowered, its callees'
code linked in, nothing optimized or emitted), and the kernel Python calls optimizes and emits its whole tree
once (Python calls an ordinary dispatcher of the same function, :class:`_Kernel`). With the small cuts of the
same change, a first default fit with an empty cache compiles in 5.7-6.2 s instead of 9.9-10.2 s, with the
same epoch and prediction speed (docs/design.md "Cold start"). It relies on numba internals
(``JITCodeLibrary``'s linking, the lowering pass using ``state.library``), so it is on only for the numba
releases it was checked with (:data:`LINK_ONLY_NUMBA`); ``FASTBP_LINK_ONLY=0`` (read at import) compiles every
kernel the ordinary way with any release.

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
from numba.core import compiler, typed_passes
from numba.core.caching import CompileResultCacheImpl, FunctionCache, _CacheLocator, _SourceFileBackedLocatorMixin
from numba.core.codegen import JITCodeLibrary
from numba.core.compiler_machinery import LoweringPass, register_pass
from numba.core.registry import CPUDispatcher

FASTMATH: frozenset[str] = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
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


class _LinkOnlyLibrary(JITCodeLibrary):
    """The code of a kernel called by other kernels: linked into each caller's module, nothing of its own.

    numba finalizes every compiled function's library on its own: LLVM's module optimization and machine code
    for the function and everything linked into it, again at every level of the call tree (a first fit
    compiles ~20 nested kernels). This library stops after linking its callees; the kernel Python calls
    optimizes and emits the whole tree once (docs/design.md "Cold start").
    """

    def finalize(self):
        self._raise_if_finalized()
        seen = set()
        for library in self._linking_libraries:
            if library not in seen:
                seen.add(library)
                self._reload_init.update(library._reload_init)
                self._final_module.link_in(library._get_module_for_linking(), preserve=True)
        self._finalized = True

    def get_pointer_to_function(self, name):
        return 0  # no machine code: Python calls the kernel itself, which compiles its own (:class:`_Kernel`)

    @property
    def codegen(self):
        return _NoEnvironment(self._codegen)


class _NoEnvironment:
    """The codegen, minus ``set_env``: a library without machine code has no environment global to set."""

    def __init__(self, codegen):
        self._codegen = codegen

    def set_env(self, env_name, env):
        pass

    def __getattr__(self, name):
        return getattr(self._codegen, name)


@register_pass(mutates_CFG=False, analysis_only=False)
class _LinkOnlyLowering(LoweringPass):
    """Lower into a :class:`_LinkOnlyLibrary` (numba's lowering pass uses ``state.library`` when it is set)."""

    _name = "fastbp_link_only_library"

    def __init__(self):
        LoweringPass.__init__(self)

    def run_pass(self, state):
        state.library = _LinkOnlyLibrary(state.targetctx.codegen(), state.func_id.func_qualname)
        return False


class _LinkOnlyCompiler(compiler.Compiler):
    """numba's pipeline, lowering into a :class:`_LinkOnlyLibrary`."""

    def define_pipelines(self):
        pipelines = super().define_pipelines()
        for pipeline in pipelines:
            pipeline.add_pass_after(_LinkOnlyLowering, typed_passes.AnnotateTypes)
            pipeline.finalize()
        return pipelines


class _Kernel(CPUDispatcher):
    """A kernel as Python calls it (an ordinary cached dispatcher), typed as ``link_only`` inside other kernels.

    ``link_only`` is a second dispatcher of the same function, compiled with :class:`_LinkOnlyCompiler`: numba
    types a kernel's reference to another kernel through ``_numba_type_``, so calls between kernels go there.
    """

    @property
    def _numba_type_(self):
        return self.link_only._numba_type_


# The numba releases whose internals the link-only libraries were checked against; others compile the ordinary way.
LINK_ONLY_NUMBA = {(0, 68)}
LINK_ONLY = os.environ.get("FASTBP_LINK_ONLY", "1") != "0" and numba.version_info.short in LINK_ONLY_NUMBA

# the same flags for the implementations numba's @overload compiles (they are compiled into their callers only)
OVERLOAD_OPTIONS = {"jit_options": {"fastmath": set(FASTMATH), "error_model": "numpy"}}
if LINK_ONLY:
    OVERLOAD_OPTIONS["jit_options"]["pipeline_class"] = _LinkOnlyCompiler

_cache_unavailable: list[str] = []  # the reason, once the first kernel found no writable cache folder


def jit(*args, **kwargs):
    """Compile a kernel with fastbp's flags (``numba.njit`` with the options documented above).

    Returns a :class:`_Kernel` (with ``FASTBP_LINK_ONLY=0``, numba's CPU dispatcher). Where the kernel cache folder
    cannot be written (numba's "no locator available"), the kernels compile without a cache: ``import fastbp``
    works, every process compiles anew, and one :class:`CompileCacheWarning` says so (set ``FASTBP_CACHE_DIR``
    to a writable folder to cache).
    """
    options = {"cache": True, "fastmath": set(FASTMATH), "error_model": "numpy", "nogil": True}
    options.update(kwargs)
    cache = options.pop("cache")

    def compile_(function):
        if LINK_ONLY:
            targetoptions = {**options, "nopython": True}  # what numba.njit(**options) passes on
            dispatcher = _Kernel(function, targetoptions=targetoptions)
            dispatcher.link_only = CPUDispatcher(
                function, targetoptions=targetoptions, pipeline_class=_LinkOnlyCompiler
            )
        else:
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

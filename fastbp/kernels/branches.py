"""Which branches a kernel compiles: only the activations, loss and dropout a network uses.

The fused passes pick an activation or a loss by a code at run time (a network may mix activations, and one
compiled epoch serves every layer). When every kernel compiled every branch, a first ``fit`` compiled nine
activations, seven losses and dropout to run one of each: 13.6-15.2 s with an empty cache, 8.4-9.7 s now that
it compiles only the branches it uses (a fresh process, default ``MLPClassifier`` on float32; docs/design.md
"Cold start").

So the kernels Python calls take a :class:`Branches` value as their first argument. Its numba type carries
the codes, so numba compiles (and caches) one specialization per set of branches, and the dispatchers built
here hand the type checker only the branches in the set: code for the others is never typed, lowered or
optimized. A network trains with its activations, loss and dropout and predicts with its activations. Each
new combination compiles once (then it is in the cache). :func:`all_branches` compiles every branch; with
``FASTBP_KERNELS=shared`` every network uses it: one specialization serves all (a first fit takes longer,
~18 s, but a grid search over activations or losses compiles once; the test suite runs this way).
"""

from __future__ import annotations

import functools
import inspect
import os

from numba import types
from numba.extending import NativeValue, models, register_model, unbox

from fastbp._jit import jit


class BranchesType(types.Type):
    """numba's type of a :class:`Branches` value: the value itself, so each set compiles its own code."""

    def __init__(self, activations: tuple, losses: tuple, dropout: bool, parallel: bool = False) -> None:
        self.activations, self.losses, self.dropout, self.parallel = activations, losses, dropout, parallel
        super().__init__(name=f"Branches({activations}, {losses}, {dropout}, {parallel})")

    @property
    def key(self):
        return self.activations, self.losses, self.dropout, self.parallel

    def __reduce__(self):  # the compile cache's index pickles signatures
        return BranchesType, self.key


class Branches:
    """The activation codes, loss codes and dropout a kernel specialization compiles in (hashable, immutable).

    Parameters
    ----------
    activations, losses : iterable of int
        Codes from :data:`fastbp.ACTIVATIONS` and :data:`fastbp.LOSSES`.
    dropout : bool
        Whether dropout code is compiled in.
    parallel : bool, default=False
        Whether the training epoch runs the parallel step (:mod:`fastbp.kernels.parallel`) instead of the
        serial one: the epoch compiles only the one it runs.
    """

    __slots__ = ("activations", "losses", "dropout", "parallel", "_numba_type_")

    def __init__(self, activations, losses, dropout: bool, parallel: bool = False) -> None:
        object.__setattr__(self, "activations", tuple(sorted({int(c) for c in activations})))
        object.__setattr__(self, "losses", tuple(sorted({int(c) for c in losses})))
        object.__setattr__(self, "dropout", bool(dropout))
        object.__setattr__(self, "parallel", bool(parallel))
        # numba reads a value's type from this attribute: 0.4 us a call instead of 4 us through typeof_impl
        object.__setattr__(self, "_numba_type_", BranchesType(*self.key()))

    def __reduce__(self):
        return Branches, self.key()

    def __setattr__(self, name, value):
        raise AttributeError("Branches is immutable")

    def key(self) -> tuple:
        return self.activations, self.losses, self.dropout, self.parallel

    def with_parallel(self, parallel: bool) -> Branches:
        """These branches with the serial (False) or the parallel (True) training step."""
        return self if parallel == self.parallel else Branches(*self.key()[:3], parallel)

    def __eq__(self, other) -> bool:
        return isinstance(other, Branches) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return (
            f"Branches(activations={self.activations}, losses={self.losses}, dropout={self.dropout}, "
            f"parallel={self.parallel})"
        )


register_model(BranchesType)(models.OpaqueModel)  # no data at run time: everything is in the type


@unbox(BranchesType)
def _unbox_branches(typ, obj, c):
    return NativeValue(c.context.get_dummy_value())


def all_branches() -> Branches:
    """Every activation and loss in the registries, and dropout."""
    from fastbp.kernels.activations import ACTIVATIONS
    from fastbp.kernels.losses import LOSSES

    return Branches((a.code for a in ACTIVATIONS.values()), (loss.code for loss in LOSSES.values()), True)


def shared_kernels() -> bool:
    """True when ``FASTBP_KERNELS=shared``: networks use every branch (``dense.ALL``), not their own."""
    value = os.environ.get("FASTBP_KERNELS", "specialized")
    if value not in ("shared", "specialized"):
        raise ValueError(f"FASTBP_KERNELS must be 'shared' or 'specialized', got {value!r}")
    return value == "shared"


def change_nothing(branches, code, *args):
    """The fallback of a dispatching pass that writes in place: a code the specialization does not know."""
    return None


@functools.cache
def dispatch(passes: tuple, codes: tuple, fallback):
    """The implementation of a dispatching pass ``(branches, code, *args)`` that knows only ``codes``.

    ``passes`` holds ``(code, pass)`` pairs of plain functions taking ``(branches, code, ...)``. With one code
    the implementation *is* that pass: a specialization is built from the network's own codes, so every call
    passes that code, and one compiled function is all it costs (each small compiled function adds ~0.1 s to a
    first fit). With several, one flat ``if code == ...: elif ...`` with the passes inlined; a code outside
    ``codes`` runs ``fallback`` (Python checks codes before any kernel runs, so that is a guard, not a path).
    Not a chain of nested compiled functions: numba re-optimizes every callee inside each caller, and nine
    nested branches made the first fit with every branch 40 s instead of 14 s. Called at type-checking time by
    the ``@overload`` of each dispatching pass.
    """
    kernels = dict(passes)
    if len(codes) == 1:
        return kernels[codes[0]]
    namespace = {f"pass_{code}": _compiled(kernels[code]) for code in codes}
    namespace["fallback"] = jit(cache=False)(fallback)
    args = ", ".join(inspect.signature(kernels[codes[0]]).parameters)  # branches, code, then the pass's own
    lines = [f"def dispatch({args}):"]
    for i, code in enumerate(codes):
        lines += [f"    {'elif' if i else 'if'} code == {code}:", f"        return pass_{code}({args})"]
    lines.append(f"    return fallback({args})")
    exec("\n".join(lines), namespace)  # the one generated function: a flat branch per code
    return namespace["dispatch"]


@functools.cache
def _compiled(function):
    return jit(cache=False, inline="always")(function)  # typed inside the one dispatch function

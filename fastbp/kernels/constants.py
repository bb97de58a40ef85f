"""Machine constants of an array's float type, folded in when a kernel is compiled.

``np.finfo(x.dtype).eps`` inside a kernel compiles numba's ``np.finfo`` implementation (0.1-0.3 s of a first
fit's compile, numba's compile events); these read it in Python while the kernel is typed instead.
"""

from __future__ import annotations

import numpy as np
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from fastbp._jit import OVERLOAD_OPTIONS


def eps_of(x):  # pragma: no cover - the compiled version below is what runs
    """``np.finfo(x.dtype).eps`` in x's dtype: the gap between 1 and the next float."""
    raise NotImplementedError


def tiny_of(x):  # pragma: no cover
    """``np.finfo(x.dtype).tiny`` in x's dtype: the smallest normal float."""
    raise NotImplementedError


def _constant(x, attribute: str):
    value = getattr(np.finfo(as_dtype(x.dtype)), attribute)  # a NumPy scalar of x's dtype
    return lambda x: value


@overload(eps_of, **OVERLOAD_OPTIONS)
def _eps_of(x):
    return _constant(x, "eps")


@overload(tiny_of, **OVERLOAD_OPTIONS)
def _tiny_of(x):
    return _constant(x, "tiny")

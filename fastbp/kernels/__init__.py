"""Compiled kernels: activations, output/loss pairs, dense layers, optimizer updates, whole epochs.

Private: the public API is :class:`fastbp.Network` and the estimators, which validate input before calling
anything here (kernels never raise).
"""

import numpy as np

from fastbp._jit import drop_other_builds

drop_other_builds()


def writable(array, shape: tuple | None = None, dtype=None) -> bool:
    """True if ``array`` is a buffer a kernel may write: a writeable C-contiguous ndarray of this dtype (and
    this exact shape, if given). Kernels index without bounds checks, so Python checks every buffer it passes."""
    return (
        isinstance(array, np.ndarray)
        and (shape is None or array.shape == shape)
        and (dtype is None or array.dtype == dtype)
        and array.flags.c_contiguous
        and array.flags.writeable
    )

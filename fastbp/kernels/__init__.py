"""Compiled kernels: activations, output/loss pairs, dense layers, optimizer updates, whole epochs.

Private: the public API is :class:`fastbp.Network` and the estimators, which validate input before calling
anything here (kernels never raise).
"""

from fastbp._jit import drop_other_builds

drop_other_builds()

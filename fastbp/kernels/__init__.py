"""Compiled kernels: activations, output/loss pairs, dense layers, optimizer updates, whole epochs.

Private: the public API is :class:`fastbp.Network` and the estimators, which validate input before calling
anything here (kernels never raise).
"""

from pathlib import Path

from fastbp._jit import drop_stale_cache

drop_stale_cache(Path(__file__).parent)

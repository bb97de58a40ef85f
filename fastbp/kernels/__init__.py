"""Compiled kernels: activations, output/loss pairs, dense layers, optimizer updates, whole epochs.

Private: the public API is :class:`fastbp.Network` and the estimators, which validate input before calling
anything here (kernels never raise).
"""

"""Optimizer settings and state: plain Python values and numpy arrays, so they pickle and clone.

The arithmetic lives in :mod:`fastbp.kernels.optimizers`; these classes hold the hyperparameters and the
state buffers, which share the flat layout of :attr:`fastbp.Network.params`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastbp.kernels import writable


@dataclass
class SGD:
    """Stochastic gradient descent with optional (Nesterov) momentum, scikit-learn's update rule.

    ``v <- momentum * v - learning_rate * g``; then ``p <- p + v``, or with Nesterov
    ``p <- p + momentum * v - learning_rate * g``. ``momentum=0`` is plain SGD.

    Parameters
    ----------
    learning_rate : float
        Step size (a schedule changes it between epochs by assigning this attribute).
    momentum : float
        In [0, 1].
    nesterov : bool
        Use Nesterov's momentum.
    """

    learning_rate: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    velocity: np.ndarray | None = field(default=None, repr=False)

    def initialize(self, params: np.ndarray) -> None:
        """Allocate zeroed state matching ``params`` (kept if it already matches)."""
        if not writable(self.velocity, params.shape, params.dtype):
            self.velocity = np.zeros_like(params)


@dataclass
class Adam:
    """Adam (Kingma and Ba), with scikit-learn's bias correction folded into the step size.

    Parameters
    ----------
    learning_rate : float
        Step size.
    beta_1, beta_2 : float
        Decay rates of the first and second moment estimates, in [0, 1).
    epsilon : float
        Added to the square root of the second moment.
    """

    learning_rate: float = 0.001
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    t: int = 0
    m: np.ndarray | None = field(default=None, repr=False)
    v: np.ndarray | None = field(default=None, repr=False)

    def initialize(self, params: np.ndarray) -> None:
        """Allocate zeroed moments matching ``params`` (kept if they already match)."""
        fits = writable(self.m, params.shape, params.dtype) and writable(self.v, params.shape, params.dtype)
        if not fits or self.m is self.v:
            self.m = np.zeros_like(params)
            self.v = np.zeros_like(params)
            self.t = 0

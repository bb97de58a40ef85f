"""Optimizer settings and state: plain Python values and numpy arrays, so they pickle and clone.

The arithmetic lives in :mod:`fastbp.kernels.optimizers`; these classes hold the hyperparameters and the
state buffers, which share the flat layout of :attr:`fastbp.Network.params`.

:data:`OPTIMIZERS` is the registry: the estimators' ``solver`` choices (besides lbfgs), the CLI's, and the
model files' optimizer records derive from it. Each class says what it is to the rest of fastbp:

- ``name``, ``code`` (its branch in the kernels' ``update_range``), ``state`` (its state arrays),
  ``hyperparameters`` (the settings a model file keeps, each with its check) and ``counters`` (integers a
  model file keeps, e.g. Adam's step count);
- ``from_estimator(estimator)``: the optimizer an estimator's parameters describe;
- ``kernel_settings()``: what the epoch kernel reads (``kernels.optimizers.Step`` fields, without scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fastbp.kernels import writable
from fastbp.kernels.optimizers import ADAM
from fastbp.kernels.optimizers import SGD as _SGD_CODE


def _positive(v) -> bool:
    return isinstance(v, float) and np.isfinite(v) and v > 0


def _fraction(v) -> bool:
    return isinstance(v, float) and 0 <= v < 1


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

    name: ClassVar[str] = "sgd"
    code: ClassVar[int] = _SGD_CODE
    state: ClassVar[tuple[str, ...]] = ("velocity",)
    hyperparameters: ClassVar[dict[str, Any]] = {
        "learning_rate": _positive,
        "momentum": lambda v: isinstance(v, float) and 0 <= v <= 1,
        "nesterov": lambda v: isinstance(v, bool),
    }
    counters: ClassVar[tuple[str, ...]] = ()

    learning_rate: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    velocity: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_estimator(cls, estimator) -> SGD:
        """The optimizer of ``solver="sgd"`` with this estimator's parameters."""
        return cls(estimator.learning_rate_init, estimator.momentum, estimator.nesterovs_momentum)

    def initialize(self, params: np.ndarray) -> None:
        """Allocate zeroed state matching ``params`` (kept if it already matches)."""
        if not writable(self.velocity, params.shape, params.dtype):
            self.velocity = np.zeros_like(params)

    def kernel_settings(self) -> tuple:
        """``(code, learning_rate, momentum, nesterov, beta_1, beta_2, epsilon)``, state arrays, step count."""
        settings = (self.code, self.learning_rate, self.momentum, bool(self.nesterov), 0.0, 0.0, 0.0)
        return settings, (self.velocity, self.velocity), 0


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

    name: ClassVar[str] = "adam"
    code: ClassVar[int] = ADAM
    state: ClassVar[tuple[str, ...]] = ("m", "v")
    hyperparameters: ClassVar[dict[str, Any]] = {
        "learning_rate": _positive,
        "beta_1": _fraction,
        "beta_2": _fraction,
        "epsilon": _positive,
    }
    counters: ClassVar[tuple[str, ...]] = ("t",)

    learning_rate: float = 0.001
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    t: int = 0
    m: np.ndarray | None = field(default=None, repr=False)
    v: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_estimator(cls, estimator) -> Adam:
        """The optimizer of ``solver="adam"`` with this estimator's parameters."""
        return cls(estimator.learning_rate_init, estimator.beta_1, estimator.beta_2, estimator.epsilon)

    def kernel_settings(self) -> tuple:
        """``(code, learning_rate, momentum, nesterov, beta_1, beta_2, epsilon)``, state arrays, step count."""
        settings = (self.code, self.learning_rate, 0.0, False, self.beta_1, self.beta_2, self.epsilon)
        return settings, (self.m, self.v), self.t

    def initialize(self, params: np.ndarray) -> None:
        """Allocate zeroed moments matching ``params`` (kept if they already match)."""
        fits = writable(self.m, params.shape, params.dtype) and writable(self.v, params.shape, params.dtype)
        if not fits or self.m is self.v:
            self.m = np.zeros_like(params)
            self.v = np.zeros_like(params)
            self.t = 0


# name -> optimizer class; solver names of the estimators besides "lbfgs"
OPTIMIZERS: dict[str, type] = {cls.name: cls for cls in (SGD, Adam)}

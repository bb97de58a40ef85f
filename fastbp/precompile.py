"""Compile fastbp's kernels ahead of time, into the compile cache a later first fit loads them from.

A first fit with an empty compile cache spends 8-10 s compiling (docs/design.md "Cold start"). Running
:func:`compile_kernels` (or ``fastbp compile``) once, for example while building a container image or after
``pip install``, moves that wait out of the first fit: a later process finds the kernels in the cache and
starts training within ~1.5 s of ``import fastbp``.

Each configuration is compiled by a tiny fit and prediction with the options a user would pass, so exactly
the specializations a real fit and prediction of that configuration need are compiled, and nothing else.
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from sklearn.base import clone

from fastbp._jit import kernel_cache_dir
from fastbp.estimators import MLPClassifier, MLPRegressor
from fastbp.kernels.activations import ACTIVATIONS
from fastbp.kernels.losses import LOSSES
from fastbp.optimizers import OPTIMIZERS
from fastbp.threads import forced_parts, step_parts

TASKS = ("multiclass", "binary", "regression")
SOLVERS = (*OPTIMIZERS, "lbfgs")
# regression losses (identity or exp output); classification always minimizes the log loss
REGRESSION_LOSSES = tuple(name for name, entry in LOSSES.items() if entry.output in ("identity", "exp"))


@dataclass(frozen=True)
class Configuration:
    """One combination of options whose kernels :func:`compile_kernels` compiles."""

    dtype: str
    activation: str
    task: str
    loss: str
    solver: str
    dropout: bool
    sparse: bool

    def __str__(self) -> str:
        parts = [self.dtype, self.activation, self.task if self.task != "regression" else f"regression ({self.loss})"]
        parts += [self.solver] + ["dropout"] * self.dropout + ["sparse X"] * self.sparse
        return ", ".join(parts)


def configurations(
    dtypes=("float32", "float64"),
    activations=("relu",),
    tasks=TASKS,
    losses=("squared_error",),
    solvers=("adam",),
    dropout: bool = False,
    sparse: bool = False,
) -> list[Configuration]:
    """Every combination of the options, checked: what :func:`compile_kernels` compiles.

    Parameters
    ----------
    dtypes : sequence of {"float32", "float64"}
        Input dtypes (fastbp trains in the dtype of X: float64 for most NumPy data).
    activations : sequence of str
        Hidden activations (keys of :data:`fastbp.ACTIVATIONS`), each compiled on its own.
    tasks : sequence of {"multiclass", "binary", "regression"}
        ``MLPClassifier`` with more than two classes (softmax) or two (logistic), ``MLPRegressor``.
    losses : sequence of str
        Regression losses (``squared_error``, ``huber``, ...); classification always uses the log loss.
    solvers : sequence of str
        ``sgd``, ``adam``, ``lbfgs``: ``sgd`` and ``adam`` share one compiled epoch, ``lbfgs`` has its own kernel.
    dropout : bool
        Compile the variant with dropout (a separate specialization; sgd and adam only, lbfgs has none).
    sparse : bool
        Compile for scipy.sparse input instead of dense arrays.

    Returns
    -------
    list of Configuration
        sgd and adam train with the same compiled epoch, so only one of them is kept; lbfgs takes no dropout.
    """
    for name, given, known in (
        ("dtype", dtypes, ("float32", "float64")),
        ("activation", activations, tuple(ACTIVATIONS)),
        ("task", tasks, TASKS),
        ("loss", losses, REGRESSION_LOSSES),
        ("solver", solvers, SOLVERS),
    ):
        if isinstance(given, str) or not given:
            raise ValueError(f"{name}s must be a non-empty list, got {given!r}")
        for value in given:
            if value not in known:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(known)}")
    stochastic = [s for s in solvers if s != "lbfgs"][:1]  # one compiled epoch serves sgd and adam
    solvers = stochastic + ["lbfgs"] * ("lbfgs" in solvers)
    out = []
    for dtype, activation, task, solver in itertools.product(dtypes, activations, tasks, solvers):
        for loss in losses if task == "regression" else ("log_loss" if task == "multiclass" else "binary_log_loss",):
            out.append(Configuration(dtype, activation, task, loss, solver, dropout and solver != "lbfgs", sparse))
    return list(dict.fromkeys(out))


def compile_configuration(config: Configuration) -> float:
    """Compile (or load from the cache) the kernels of one configuration; returns the seconds it took."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(config.dtype)
    options = dict(activation=config.activation, solver=config.solver, dropout=0.5 if config.dropout else 0.0)
    if config.task == "regression":
        y = np.abs(rng.normal(size=40)) + 0.5  # positive: every regression loss accepts it
        model = MLPRegressor(loss=config.loss, quantile=0.5 if config.loss == "quantile" else None, **options)
    else:
        y = np.arange(40) % (3 if config.task == "multiclass" else 2)
        model = MLPClassifier(**options)
    X = scipy.sparse.csr_matrix(X) if config.sparse else X
    # both steps a fit may run: the parallel one (small batches) and the serial one (fastbp.threads)
    parts = step_parts(16, not config.sparse, config.dropout)
    total = 0.0
    for each in sorted({1, parts}):
        with forced_parts(each):
            total += compile_for(model, X, y)
    return total


def compile_for(model, X, y) -> float:
    """Compile (or load from the cache) what ``model.fit(X, y)`` and the model's predictions will run.

    A clone of ``model`` trains one epoch on at most 40 rows of X plus one row of every class, then predicts
    them: the same dtype, input kind (dense or sparse), activations, loss, dropout and training step (serial or
    parallel, as :func:`fastbp.threads.step_parts` chooses for the real fit's batch size) as the real fit, so
    the same compiled specializations, at a fraction of its cost. ``model`` itself is not changed.

    Parameters
    ----------
    model : MLPClassifier or MLPRegressor
        Unfitted or fitted; only its parameters are used.
    X : ndarray or scipy.sparse matrix of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)

    Returns
    -------
    float
        Seconds taken: the compile time with an empty cache, well under a second with a warm one.
    """
    y = np.asarray(y)
    rows = np.arange(min(len(y), 40))
    if isinstance(model, MLPClassifier) and y.ndim == 1:
        rows = np.union1d(rows, np.unique(y, return_index=True)[1])  # every class, as in the real fit
    hidden = np.atleast_1d(model.hidden_layer_sizes).size
    tiny = clone(model).set_params(
        hidden_layer_sizes=(4,) * hidden, max_iter=1, batch_size=16, early_stopping=False, verbose=False
    )
    started = time.perf_counter()
    with warnings.catch_warnings(), forced_parts(fit_parts(model, X, len(y))):
        warnings.simplefilter("ignore")  # one epoch does not converge: expected here
        tiny.fit(X[rows], y[rows])
        (tiny.predict_proba if isinstance(tiny, MLPClassifier) else tiny.predict)(X[rows])
    return time.perf_counter() - started


def fit_parts(model, X, n_samples: int) -> int:
    """How many threads each step of ``model.fit(X[:n_samples], ...)`` will be split over (1: serial step).

    Parameters
    ----------
    model : MLPClassifier or MLPRegressor
        Its ``batch_size``, ``solver``, ``momentum`` and ``dropout`` decide.
    X : ndarray or scipy.sparse matrix
        The training input (only whether it is sparse matters).
    n_samples : int
        Training rows (the batch is ``min(batch_size, n_samples)``; ``"auto"`` is 200).

    Returns
    -------
    int
        What :func:`fastbp.threads.step_parts` answers for that fit (or the value an enclosing
        :func:`fastbp.threads.forced_parts` forces).
    """
    batch = model.batch_size
    batch = min(200 if batch == "auto" else int(batch), n_samples)
    plain_sgd = model.solver == "sgd" and model.momentum == 0
    dropout = bool(np.any(np.asarray(model.dropout) > 0))
    return step_parts(batch, not scipy.sparse.issparse(X), dropout, update_pass=not plain_sgd)


def compile_kernels(configs: list[Configuration] | None = None, out=print) -> list[tuple[Configuration, float]]:
    """Compile the kernels that fits and predictions of these configurations need, into the compile cache.

    Parameters
    ----------
    configs : list of Configuration, optional
        From :func:`configurations`; by default its defaults (float32 and float64, relu, multi-class,
        binary and regression with the squared error, adam).
    out : callable or None
        Receives one line per configuration (``print`` by default; ``None`` for silence).

    Returns
    -------
    list of (Configuration, seconds)
        What was compiled and how long each took (well under a second for one already in the cache).

    Notes
    -----
    The cache is the folder :func:`fastbp._jit.kernel_cache_dir` names for the current environment
    (``FASTBP_CACHE_DIR``, ``NUMBA_CACHE_DIR`` or the per-user cache folder): run this with the settings the
    later fits will see. With ``FASTBP_KERNELS=shared`` one all-branch specialization serves every activation
    and loss, and the first configuration compiles it.
    """
    configs = configurations() if configs is None else configs
    out = out or (lambda line: None)
    out(f"compiling fastbp's kernels into {kernel_cache_dir()}")
    done = []
    for config in configs:
        seconds = compile_configuration(config)
        out(f"  {config}: {seconds:.1f} s")
        done.append((config, seconds))
    out(f"done in {sum(s for _, s in done):.1f} s; a later fit with these options loads them from the cache")
    return done

"""Drop-in replacements for scikit-learn's ``MLPClassifier`` and ``MLPRegressor``.

Same constructor parameters, defaults, fitted attributes and random-number use as scikit-learn 1.9 (a seed
gives scikit-learn's initial weights, validation split and batch order), but each epoch is one compiled call
(:meth:`fastbp.Network.train_epoch`) instead of a Python loop over mini-batches. The Python loop here runs
once per epoch: stopping rules, learning-rate schedules, ``loss_curve_``, verbose output and Ctrl-C.

Deliberate differences from scikit-learn, each a fix of a known defect:

- Early stopping and the no-improvement rule stop after ``n_iter_no_change`` epochs without improvement;
  scikit-learn waits one epoch more (``count > n_iter_no_change``).
- Squared error sums over outputs, so ``loss_`` of a multi-output regressor is the loss whose gradient is
  followed; scikit-learn reports the mean over outputs but follows the gradient of the sum (so its lbfgs
  line search sees an inconsistent gradient, scikit-learn issue #8349). Single-output losses are identical.
- ``learning_rate="adaptive"`` divides the rate by 5 after ``n_iter_no_change`` epochs that each fail to
  improve on the *previous* epoch by ``tol``, as scikit-learn's documentation describes ("each time two
  consecutive epochs fail to decrease training loss"); scikit-learn's code compares with the best epoch so
  far (#15596), so after a loss spike it keeps cutting the rate while training is recovering.
- ``verbose`` reports lbfgs iterations too (scikit-learn prints nothing, #10236).
- ``learning_rate="adaptive"`` applies to adam too (scikit-learn ignores ``learning_rate`` for adam), and
  ``"cosine"`` is new; with early stopping a diverging fit keeps its best epoch (scikit-learn #29504).
- ``MLPRegressor.partial_fit`` is not available with ``solver='lbfgs'`` (scikit-learn exposes it by mistake).
- Non-finite weights raise :class:`fastbp.DivergenceError` (a ``ValueError``) at the epoch where they
  appear, and the estimator keeps the weights of the last finite epoch. With float32 data this includes
  squared errors beyond float32's range (targets near 1e30): scikit-learn keeps y and the loss in float64,
  fastbp keeps float32 data in float32; fit in float64 for such targets.
- Negative sample weights are refused (scikit-learn accepts them).
- ``fit`` trains a private copy and publishes the fitted model in one step, so a prediction from another
  thread during ``fit`` sees the old model or the new one (scikit-learn promises nothing here).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier

try:  # scikit-learn 1.9's callback protocol; older versions simply have no callbacks
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # pragma: no cover - scikit-learn < 1.9

    class CallbackSupportMixin:  # noqa: D101
        pass

    def with_callbacks(method):  # noqa: D103
        return method


from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils import shuffle as shuffle_rows
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_array, validate_data

from fastbp._interrupt import TrainingInterruptedWarning, deferred_interrupt
from fastbp._warn import warn_user
from fastbp.kernels.activations import ACTIVATIONS
from fastbp.kernels.inputs import all_finite
from fastbp.kernels.losses import LOSSES
from fastbp.network import DivergenceError, Network
from fastbp.optimizers import OPTIMIZERS
from fastbp.reference import LOSSES as REFERENCE_LOSSES

_STOCHASTIC_SOLVERS = tuple(OPTIMIZERS)  # "sgd", "adam"; and "lbfgs"
_ADAPTIVE_DIVISOR = 5.0  # learning_rate="adaptive" divides the rate by this after a stall (scikit-learn's)
_ADAPTIVE_MIN_RATE = 1e-6  # ... until the rate is this small; then a stall stops training
_NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need to be preprocessed."
)


def _store_params(estimator, params: dict) -> None:
    """``__init__`` stores every argument unchanged, as scikit-learn requires (validation happens in fit)."""
    for name, value in params.items():
        if name != "self":
            setattr(estimator, name, value)


def _is_dask_collection(X) -> bool:
    """A Dask array, without importing Dask unless the caller did."""
    return type(X).__module__.startswith("dask.")


def _contiguous(X):
    """C-contiguous dense X (a copy only if needed); sparse X as CSR, never densified."""
    return X.tocsr() if scipy.sparse.issparse(X) else np.ascontiguousarray(X)


@dataclass
class _Validation:
    """Rows that early stopping scores: features, labels as given (for the score), weights, encoded targets."""

    X: Any
    y: np.ndarray
    sample_weight: np.ndarray | None
    Y: np.ndarray


def _labels_from_outputs(binarizer: LabelBinarizer, outputs: np.ndarray) -> np.ndarray:
    """``binarizer.inverse_transform(outputs)`` for a network's dense outputs, without its input checks.

    The checks cost ~60 us a call, twice a one-row predict_proba. The arithmetic is scikit-learn's: the first
    largest output's class for multi-class models; the class of ``output > (pos_label + neg_label) / 2`` for
    binary ones. Multilabel and sparse-label models take scikit-learn's own path.
    """
    if not binarizer.sparse_input_ and len(binarizer.classes_) >= 2:
        if binarizer.y_type_ == "multiclass":
            return binarizer.classes_[outputs.argmax(axis=1)]
        if binarizer.y_type_ == "binary":
            threshold = (binarizer.pos_label + binarizer.neg_label) / 2.0
            return binarizer.classes_[(outputs.reshape(-1) > threshold).astype(np.intp)]
    return binarizer.inverse_transform(outputs)


def _warn_lbfgs_not_converged(result, n_iter: int, max_iter: int) -> None:
    """scikit-learn's ConvergenceWarning for lbfgs (``_check_optimize_result``), pointing at the user's call."""
    message = f"lbfgs failed to converge after {n_iter} iteration(s) (status={result.status}):\n{result.message}\n"
    if n_iter == max_iter:
        message += f"\nIncrease the number of iterations to improve the convergence (max_iter={max_iter})."
    message += "\nYou might also want to scale the data as shown in:\n    https://scikit-learn.org/stable/modules/preprocessing.html"
    warn_user(message, ConvergenceWarning)


class _BaseMLP(CallbackSupportMixin, BaseEstimator):
    """Shared fitting logic of the two estimators (not public)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS)), list, tuple],
        "negative_slope": [Interval(Real, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
        "solver": [StrOptions({"lbfgs", *OPTIMIZERS})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive", "cosine"})],
        "warmup_fraction": [Interval(Real, 0, 1, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
    }

    # -- the network behind coefs_ / intercepts_ ------------------------------------------------------------
    def _network(self, state: dict | None = None) -> Network:
        """The Network whose flat buffer ``coefs_``/``intercepts_`` view; rebuilt if a user assigned them.

        ``state`` is a snapshot of the fitted state (:meth:`_fitted_state`) for callers that may run while
        another thread's ``fit`` publishes a new model; it defaults to the live attributes.
        """
        state = self.__dict__ if state is None else state
        net, coefs, intercepts = state.get("_net"), state["coefs_"], state["intercepts_"]
        if net is not None and len(coefs) == len(intercepts) == len(net.layers):
            p = net.params
            if all(a.base is p for a in coefs) and all(a.base is p for a in intercepts):
                return net
        arrays = list(coefs) + list(intercepts)
        dtype = np.result_type(*arrays)
        dtype = dtype if dtype in (np.float32, np.float64) else np.float64
        sizes = [c.shape[0] for c in coefs] + [coefs[-1].shape[1]]
        net = self._new_network(sizes, dtype, state).set_parameters(coefs, intercepts)
        self.__dict__.update(_net=net, coefs_=net.coefs, intercepts_=net.intercepts)
        return net

    def _new_network(self, sizes, dtype, state: dict) -> Network:
        """A Network of these sizes with the estimator's activations, output, loss and dropout (in ``state``).

        Parameters added after a model was pickled or saved are read with their defaults.
        """
        n_hidden = len(sizes) - 2
        activation = state["activation"]
        hidden = (activation,) * n_hidden if isinstance(activation, str) else tuple(activation)
        dropout = state.get("dropout", 0.0)
        options = {
            "negative_slope": state.get("negative_slope", 0.01),
            "dropout": dropout if np.ndim(dropout) == 0 else tuple(dropout),
        }
        if not is_classifier(self):
            loss = state.get("loss", "squared_error")
            options.update(loss=loss, delta=state.get("delta", 1.0))
            if loss == "quantile":
                options["quantile"] = state["quantile"]
        return Network(sizes, hidden, state["out_activation_"], dtype=dtype, **options)

    def _check_layer_options(self, n_hidden: int) -> None:
        """Per-layer ``activation`` and ``dropout`` lists must have one entry per hidden layer."""
        for name in ("activation", "dropout"):
            value = getattr(self, name)
            if not isinstance(value, str) and np.ndim(value) != 0 and len(value) != n_hidden:
                raise ValueError(
                    f"{name} lists {len(value)} values but the network has {n_hidden} hidden layers; give one "
                    f"value for all layers or one per hidden layer"
                )
        if not isinstance(self.activation, str):
            unknown = [a for a in self.activation if a not in ACTIVATIONS]
            if unknown:
                raise ValueError(f"unknown activation {unknown[0]!r}; expected names in {list(ACTIVATIONS)}")
        rates = np.asarray(self.dropout, dtype=np.float64)
        if not ((rates >= 0) & (rates < 1)).all():
            raise ValueError(f"dropout rates must be in [0, 1), got {self.dropout!r}")
        if self.solver == "lbfgs" and rates.any():
            raise ValueError(
                "dropout is applied per mini-batch and needs solver='sgd' or 'adam'; lbfgs minimizes the "
                "full-batch loss, which dropout would make random"
            )

    def _fitted_state(self) -> dict:
        """A snapshot of the attributes, taken in one step.

        ``fit`` publishes a new model in one ``__dict__.update`` (:meth:`_fit`); a prediction reads the
        network, labels and sizes from one snapshot, so it sees the old model or the new one, never a mix.
        """
        self._check_fitted()
        return self.__dict__.copy()

    def __getstate__(self):
        """Pickle ``coefs_``/``intercepts_`` once: the flat buffer they view is rebuilt on first use."""
        state = super().__getstate__()
        state.pop("_net", None)
        return state

    def _adopt(self, net: Network) -> None:
        self._net = net
        self.coefs_ = net.coefs
        self.intercepts_ = net.intercepts

    def _check_fitted(self) -> None:
        """scikit-learn's ``check_is_fitted``, without its tag lookup (~40 us, most of a one-row prediction)."""
        if not hasattr(self, "coefs_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator."
            )

    def _forward(self, X, state: dict, check_input: bool = True) -> np.ndarray:
        """Network outputs for X with the model in ``state``; float64 X gives float64 outputs."""
        net, X = self._ready(X, state, check_input)
        return net.forward(X)

    def _ready(self, X, state: dict, check_input: bool = True) -> tuple[Network, np.ndarray]:
        """(network, X) for a prediction with the model in ``state``: X validated, both in one dtype.

        A float32 model computes float64 X in float64 (with its float32 weights widened), as scikit-learn's
        matmul of float64 X with float32 weights does, rather than rounding X to float32.
        """
        net = self._network(state)
        if check_input and not self._is_plain_input(X, net, state):
            X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False)
        if X.dtype == np.float64 and net.dtype == np.float32:
            net = net.copy(np.float64)  # per call: coefs_ may have been edited in place since the last one
        return net, X if X.dtype == net.dtype else X.astype(net.dtype)

    def hidden_features(self, X, layer: int = -1) -> np.ndarray:
        """The activations of a hidden layer: the features the network learned (scikit-learn #8291).

        Not named ``transform``: scikit-learn's tags would then treat every MLP as a transformer (other
        estimator checks, other Pipeline behaviour). As a Pipeline step, wrap the fitted network:
        ``make_pipeline(FunctionTransformer(mlp.hidden_features), LogisticRegression())``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
        layer : int, default=-1
            Which hidden layer, from 0 (the first) or from the end (-1, the last).

        Returns
        -------
        ndarray of shape (n_samples, hidden_layer_sizes[layer])
            float32 for a float32 model and float32 X, float64 otherwise; computed in chunks like predict.
        """
        net, X = self._ready(X, self._fitted_state())
        return net.hidden(X, layer)

    def _is_plain_input(self, X, net: Network, state: dict) -> bool:
        """A finite float ndarray of the right width and dtype, from a model fitted without feature names.

        Such input needs none of ``validate_data``'s conversions; checking it directly takes ~2 us instead of
        ~60 us, which is most of a one-row prediction, and the compiled finiteness check reads 10,000 x 784
        floats in ~1.1 ms against ~1.9 ms for ``np.isfinite(X).all()``. Anything else takes the full
        validation (which also produces scikit-learn's error messages).
        """
        return (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.dtype == net.dtype
            and X.shape[0] > 0
            and X.shape[1] == state["n_features_in_"]
            and "feature_names_in_" not in state
            and X.flags.c_contiguous
            and bool(all_finite(X))
        )

    # -- fit ------------------------------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False, prepare=None, validation_data=None):
        """Train a working copy of the estimator, then publish its fitted state in one step.

        Training never writes the published model: a prediction from another thread during ``fit`` sees the
        old model (or ``NotFittedError``) until the new one replaces it whole. A fit that raises during
        training (divergence, an error in a scorer) still publishes the progress made up to the last
        completed epoch; one that fails before training began (bad input) leaves the estimator untouched.
        ``prepare(work)`` runs first on the copy (``partial_fit``'s label setup); ``validation_data`` is
        ``fit``'s ``(X_val, y_val, sample_weight_val)``.
        """
        continuing = hasattr(self, "coefs_") and (self.warm_start or incremental)
        work = self._working_copy(continuing, incremental)
        callbacks = self.__dict__.get("_callback_fit_ctx")
        if callbacks is not None and not incremental:  # the hooks receive the user's estimator, with fit's data
            work._callbacks = (self, callbacks, X, y)
        if prepare is not None:
            prepare(work)
        try:
            work._fit_in_place(X, y, sample_weight, incremental, validation_data)
        except Exception:
            if "coefs_" in work.__dict__:
                self._publish(work)
            raise
        self._publish(work)
        return self

    def _publish(self, work) -> None:
        """Make the working copy's fitted state this estimator's, in one step."""
        work.__dict__.pop("_callbacks", None)
        self.__dict__.update(work.__dict__)

    # -- callbacks (scikit-learn's protocol: one subtask per epoch or lbfgs iteration) ----------------------
    def _subtask_begin(self, name: str):
        hooks = self.__dict__.get("_callbacks")
        if hooks is None:
            return None
        owner, context, X, y = hooks
        subtask = context.subcontext(task_name=name)
        subtask.call_on_fit_task_begin(estimator=owner, X=X, y=y)
        return subtask

    def _subtask_end(self, subtask, finished: bool = True) -> bool:
        """End a subtask; True if a callback asks to stop. An unfinished one (rolled back) ends empty."""
        if subtask is None:
            return False
        owner, _, X, y = self._callbacks
        if not finished:
            subtask.call_on_fit_task_end(estimator=owner)
            return False
        return bool(
            subtask.call_on_fit_task_end(estimator=owner, X=X, y=y, reconstruction_attributes=self._fitted_copy)
        )

    def _fitted_copy(self) -> dict:
        """The attributes that make a copy of the user's estimator predict as this one does now."""
        private = {"_net", "_callbacks", "_optimizer", "_callback_fit_ctx", "_skl_callbacks"}
        state = {k: v for k, v in self.__dict__.items() if k not in private and k not in self.get_params()}
        state["coefs_"] = [c.copy() for c in self.coefs_]
        state["intercepts_"] = [b.copy() for b in self.intercepts_]
        return state

    def _working_copy(self, continuing: bool, incremental: bool):
        """A shallow copy whose training state (network, optimizer, curves) is its own."""
        work = object.__new__(type(self))
        work.__dict__.update(self.__dict__)
        if continuing:
            work._adopt(self._network().copy())
            for name in ("loss_curve_", "validation_scores_", "validation_loss_curve_", "history_"):
                if isinstance(getattr(work, name, None), list):
                    setattr(work, name, list(getattr(work, name)))
            if incremental and getattr(work, "_optimizer", None) is not None:
                work._optimizer = copy.deepcopy(work._optimizer)
        return work

    def _fit_in_place(self, X, y, sample_weight, incremental, validation_data=None):
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if not all(isinstance(h, Integral) and not isinstance(h, bool) for h in hidden):
            raise TypeError(f"hidden_layer_sizes must hold integers, got {self.hidden_layer_sizes!r}.")
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        hidden = [int(h) for h in hidden]
        self._check_layer_options(len(hidden))
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if not first_pass:  # a model fitted (or pickled) before these records existed
            self.__dict__.setdefault("history_", [])
            if getattr(self, "validation_scores_", None) is not None:
                self.__dict__.setdefault("validation_loss_curve_", [])
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        sample_weight = self._with_class_weights(sample_weight, Y, X.dtype, incremental)
        validation = None if validation_data is None else self._user_validation(*validation_data, X.dtype)
        Y = np.ascontiguousarray(Y.reshape(len(Y), -1), dtype=X.dtype)
        X = _contiguous(X)
        self.n_outputs_ = Y.shape[1]
        layer_units = [X.shape[1], *hidden, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, X.dtype)
        net = self._network()
        if net.dtype != X.dtype:  # warm start or partial_fit with another dtype: follow the data
            net = net.copy(X.dtype)
            self._adopt(net)
            if getattr(self, "_best_params", None) is not None:
                self._best_params = self._best_params.astype(X.dtype)
        if net.layer_sizes != tuple(layer_units):
            raise ValueError(
                f"the network has layers {net.layer_sizes} but this data needs {tuple(layer_units)}; "
                "fit again without warm_start to change hidden_layer_sizes or the number of outputs"
            )
        wanted = self._new_network(net.layer_sizes, net.dtype, self.__dict__)
        if (wanted.hidden_activations, wanted.options()) != (net.hidden_activations, net.options()):
            # warm_start / partial_fit after set_params(activation=..., dropout=..., ...): continue from the
            # same weights with the options asked for now, as scikit-learn reads them at every fit
            wanted.params[:] = net.params
            self._adopt(wanted)
            net = wanted
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(net, X, Y, sample_weight, incremental, validation)
        else:
            self._fit_lbfgs(net, X, Y, sample_weight)

    def _initialize(self, layer_units, dtype) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = LOSSES[self.loss].output
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        net = self._new_network(layer_units, dtype, self.__dict__).initialize(self._random_state)
        self._adopt(net)
        self._optimizer = None
        self._best_params = net.params.copy()
        self.history_ = []
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    def _make_optimizer(self):
        return OPTIMIZERS[self.solver].from_estimator(self)

    def _validation_split(self, X, Y, sample_weight):
        """scikit-learn's split (stratified for single-output classifiers), from the same random stream.

        Returns the training rows as indices into X, which training visits in place (X is not copied), and
        the validation set (a copy of its rows, for scoring).
        """
        # labels as scikit-learn stratifies them (its binarized y is bool), so its error messages name them alike
        stratify = Y.astype(bool) if is_classifier(self) and self.n_outputs_ == 1 else None
        with config_context(skip_parameter_validation=True):  # scikit-learn's MLP gets the split's own messages
            train, val = train_test_split(
                np.arange(X.shape[0]),
                random_state=self._random_state,
                test_size=self.validation_fraction,
                stratify=stratify,
            )
        if val.size < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
            )
        sw_val = None if sample_weight is None else sample_weight[val]
        return train, _Validation(X[val], self._decode(Y[val]), sw_val, Y[val])

    def _user_validation(self, X_val, y_val, sample_weight_val, dtype) -> _Validation:
        """``fit``'s X_val/y_val, checked as the training data and encoded with the training labels."""
        X_val = _contiguous(
            validate_data(self, X_val, accept_sparse=["csr", "csc"], dtype=dtype, reset=False, ensure_all_finite=True)
        )
        y_val = np.asarray(y_val)
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        if len(y_val) != X_val.shape[0]:
            raise ValueError(f"X_val has {X_val.shape[0]} rows but y_val has {len(y_val)}")
        Y_val = self._encode_validation(y_val)
        if sample_weight_val is not None:
            sample_weight_val = _check_sample_weight(sample_weight_val, X_val, dtype=dtype, ensure_non_negative=True)
        Y_val = np.ascontiguousarray(Y_val.reshape(len(Y_val), -1), dtype=dtype)
        return _Validation(X_val, y_val, sample_weight_val, Y_val)

    def _batch_size(self, n_samples: int) -> int:
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warn_user("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _fit_stochastic(self, net: Network, X, Y, sample_weight, incremental, validation=None):
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.learning_rate == "cosine" and incremental:
            raise ValueError(
                "learning_rate='cosine' spans the max_iter epochs of one fit; partial_fit has no such horizon "
                "(use 'constant', or fit with max_iter epochs)"
            )
        rows = np.arange(X.shape[0])  # the training rows, in scikit-learn's order
        if self.early_stopping:
            if validation is None:
                rows, validation = self._validation_split(X, Y, sample_weight)
            if self.validation_scores_ is None:  # warm start after a fit without early stopping
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
                self.validation_loss_curve_ = []
                self._best_params = net.params.copy()
        batch_size = self._batch_size(rows.size)
        workspace = net.workspace(batch_size)
        with deferred_interrupt() as interrupted:
            self._epoch_loop(
                net, X, Y, sample_weight, rows, validation, batch_size, workspace, incremental, interrupted
            )
        if self.early_stopping:
            net.params[:] = self._best_params

    def _epoch_loop(self, net, X, Y, sample_weight, rows, validation, batch_size, workspace, incremental, interrupted):
        position = np.arange(rows.size)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                started = time.perf_counter()
                if self.shuffle:  # the same draws as scikit-learn, so a seed gives its batch order
                    position = shuffle_rows(position, random_state=self._random_state)
                # rows read in place when every row is visited in order; otherwise gathered by index
                order = rows[position] if self.shuffle else (rows if rows.size < X.shape[0] else None)
                rates = self._step_rates(self.n_iter_, -(-rows.size // batch_size))
                learning_rate = self._optimizer.learning_rate if rates is None else float(rates.mean())
                subtask = self._subtask_begin("epoch")
                try:
                    loss = net.train_epoch(
                        X,
                        Y,
                        batch_size,
                        self._optimizer,
                        order=order,
                        shuffle=False,
                        sample_weight=sample_weight,
                        alpha=self.alpha,
                        workspace=workspace,
                        learning_rates=rates,
                        dropout_seed=self._dropout_seed(net),
                    )
                except DivergenceError as error:
                    self._subtask_end(subtask, finished=False)
                    if validation is None:
                        raise DivergenceError(f"{_NON_FINITE} ({error})") from None
                    # early stopping keeps the best validation epoch and ends there (scikit-learn #29504)
                    warn_user(
                        f"Training diverged in epoch {self.n_iter_ + 1} (the loss or the weights became inf or "
                        "NaN); kept the weights of the best validation epoch. Lower the learning rate or scale "
                        "the inputs.",
                        ConvergenceWarning,
                    )
                    break
                epoch = (loss, rows.size, time.perf_counter() - started, learning_rate)
                if self._epoch_done(epoch, validation, subtask, interrupted) or incremental:
                    break
        except KeyboardInterrupt:  # a second Ctrl-C: the epoch in flight was rolled back by Network
            warn_user("Training interrupted by user.", TrainingInterruptedWarning)

    def _dropout_seed(self, net: Network) -> int | None:
        """This epoch's dropout seed, drawn from ``random_state`` (after the shuffle); None without dropout.

        Drawn only when the network has dropout, so that without it the random stream stays scikit-learn's.
        """
        return int(self._random_state.randint(2**32, dtype=np.int64)) if any(net.dropout) else None

    def _epoch_done(self, epoch: tuple, validation, subtask, interrupted) -> bool:
        """Everything after a completed epoch, for the local and the Dask loops; True when training stops.

        ``epoch`` is ``(loss, rows trained, seconds, learning rate in effect)``. Records the epoch, applies the
        stopping rule and the schedule (:meth:`_end_of_epoch`), ends the callbacks' subtask (a True answer
        stops), honours Ctrl-C, and warns at ``max_iter``.
        """
        loss, n_samples, seconds, learning_rate = epoch
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n_samples
        self.loss_curve_.append(loss)
        stop = self._end_of_epoch(validation, seconds, n_samples, learning_rate)
        if self._subtask_end(subtask) or stop:  # a callback's request: after a complete epoch
            return True
        if interrupted():
            warn_user("Training interrupted by user.", TrainingInterruptedWarning)
            return True
        if self.n_iter_ == self.max_iter:
            warn_user(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
            )
        return False

    def _step_rates(self, epoch: int, steps: int) -> np.ndarray | None:
        """This epoch's per-batch learning rates for ``learning_rate="cosine"`` (None for the other schedules).

        Linear warm-up over the first ``warmup_fraction`` of the ``max_iter * steps`` steps of this fit, then
        cosine decay towards 0: PyTorch's ``LinearLR(start_factor=1/W, total_iters=W-1)`` followed by
        ``CosineAnnealingLR(T_max=T-W, eta_min=0)``, stepped once per mini-batch. Each ``fit`` starts the
        schedule anew.
        """
        if self.learning_rate != "cosine":
            return None
        total = self.max_iter * steps
        warmup = min(int(round(self.warmup_fraction * total)), total - 1)
        step = epoch * steps + np.arange(steps, dtype=np.float64)
        cosine = 0.5 * (1.0 + np.cos(np.pi * (step - warmup) / (total - warmup)))
        return self.learning_rate_init * np.where(step < warmup, (step + 1) / max(warmup, 1), cosine)

    def _end_of_epoch(self, validation, seconds: float, n_samples: int, learning_rate: float) -> bool:
        """Record the epoch, apply the stopping rule and the schedules; True when training should stop."""
        record = {"iteration": self.n_iter_, "loss": self.loss_, "learning_rate": float(learning_rate)}
        improved = self._validation_improved(validation, record) if validation is not None else self._loss_improved()
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        self.history_.append(record | {"seconds": seconds, "samples_per_second": n_samples / max(seconds, 1e-9)})
        self._report_epoch(record.get("validation_score"), seconds, n_samples)
        self._step_invscaling()
        if self._no_improvement_count < self.n_iter_no_change:
            return False
        return self._stalled("Validation score" if validation is not None else "Training loss")

    def _validation_improved(self, validation: _Validation, record: dict) -> bool:
        """Score the validation rows, keep the best weights; improved = ``tol`` above the reference.

        The reference is the best score so far; for the adaptive schedule, the previous epoch's (it reacts to
        stalling, not to the distance from an old best: scikit-learn #15596).
        """
        outputs = self._net.forward(validation.X)  # one forward pass serves the score and the loss
        score = self._score(validation.X, validation.y, validation.sample_weight, outputs=outputs)
        loss = self._validation_loss(outputs, validation)
        self.validation_loss_curve_.append(loss)
        record |= {"validation_loss": loss, "validation_score": float(score)}
        scores = self.validation_scores_
        reference = scores[-1] if self.learning_rate == "adaptive" and scores else self.best_validation_score_
        scores.append(score)
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self._net.params.copy()
        return score >= reference + self.tol

    def _validation_loss(self, outputs: np.ndarray, validation: _Validation) -> float:
        """The training objective on the validation rows (L2 term included), from the network's outputs.

        The per-sample losses are the NumPy reference's (``fastbp.reference.LOSSES``), which the tests hold
        equal to the kernels'; computing them from the outputs of the scoring pass costs no second pass
        (``loss_and_gradients`` would add a forward and a backward pass, ~10% of an epoch at the default
        validation_fraction).
        """
        _, per_element, _ = REFERENCE_LOSSES[self._net.loss]
        per_sample = per_element(validation.Y, outputs, self._net.loss_parameter).sum(axis=1)
        w = validation.sample_weight
        total = float(per_sample.sum()) if w is None else float((w * per_sample).sum())
        weight = float(len(per_sample)) if w is None else float(w.sum())
        weights = self._net.params[: self._net.n_weights]
        return (total + 0.5 * self.alpha * float(weights @ weights)) / weight

    def _loss_improved(self) -> bool:
        """Improved = the training loss ``tol`` below the best so far (adaptive: below the previous epoch's)."""
        best = np.inf if self.best_loss_ is None else self.best_loss_  # None after an early-stopping fit
        curve = self.loss_curve_
        reference = curve[-2] if self.learning_rate == "adaptive" and len(curve) > 1 else best
        self.best_loss_ = min(best, curve[-1])
        return curve[-1] <= reference - self.tol

    def _step_invscaling(self) -> None:
        """scikit-learn's ``invscaling`` schedule (sgd only): ``learning_rate_init / (t_ + 1) ** power_t``."""
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t

    def _stalled(self, what: str) -> bool:
        """``n_iter_no_change`` epochs without improvement: the adaptive schedule divides the rate (sgd and,
        unlike scikit-learn, adam) until it is tiny; otherwise training stops. True when it stops."""
        message = f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."
        if self.learning_rate == "adaptive" and self._optimizer.learning_rate > _ADAPTIVE_MIN_RATE:
            self._optimizer.learning_rate /= _ADAPTIVE_DIVISOR
            self._no_improvement_count = 0
            if self.verbose:
                print(f"{message} Setting learning rate to {self._optimizer.learning_rate:f}")
            return False
        if self.verbose:
            print(f"{message} Stopping.")
        return True

    def _with_class_weights(self, sample_weight, Y, dtype, incremental):
        """Sample weights times class weights (classifiers with ``class_weight``); regressors have none."""
        return sample_weight

    def _report_epoch(self, validation_score: float | None, seconds: float, n_samples: int) -> None:
        """The verbose line of an epoch (the ``fastbp train`` command reports through this too)."""
        if self.verbose:
            extra = f", validation score = {validation_score:.6f}" if validation_score is not None else ""
            speed = f"{seconds:.2f} s, {n_samples / max(seconds, 1e-9):,.0f} samples/s"
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}{extra}, {speed}")

    def _fit_lbfgs(self, net: Network, X, Y, sample_weight):
        def loss_and_gradient(flat):
            net.params[:] = flat
            loss, grad = net.loss_and_gradients(X, Y, sample_weight, self.alpha)
            return loss, grad.astype(np.float64)

        self._run_lbfgs(net, loss_and_gradient)

    def _run_lbfgs(self, net: Network, loss_and_gradient) -> None:
        """scipy's L-BFGS-B from ``net.params`` on ``loss_and_gradient(flat) -> (loss, gradient)``.

        The objective may compute anywhere (here, or on a Dask cluster: :mod:`fastbp.dask_training`); the
        result is written to ``net.params`` only once scipy has finished. Ctrl-C stops at the end of the
        running iteration (a second one at once), keeping the last completed iterate, as the stochastic
        solvers keep the last completed epoch.
        """
        start = net.params.astype(np.float64)
        last = {"x": start, "fun": None, "nit": 0}  # the last completed iteration

        subtask = [self._subtask_begin("lbfgs-iteration")]
        with deferred_interrupt() as interrupted:

            def end_of_iteration(intermediate_result):
                last.update(x=intermediate_result.x.copy(), fun=float(intermediate_result.fun), nit=last["nit"] + 1)
                self.history_.append({"iteration": last["nit"], "loss": last["fun"]})
                if self.verbose:
                    print(f"Iteration {last['nit']}, loss = {last['fun']:.8f}")
                if subtask[0] is not None:
                    net.params[:] = last["x"]  # the iterate, not the line search's last trial point
                    self.loss_, self.n_iter_ = last["fun"], last["nit"]
                    stop = self._subtask_end(subtask[0])
                    subtask[0] = self._subtask_begin("lbfgs-iteration")
                    if stop:
                        last["stopped by callback"] = True
                        raise StopIteration
                if interrupted():
                    raise StopIteration  # scipy ends the minimization with the current iterate

            try:
                result = scipy.optimize.minimize(
                    loss_and_gradient,
                    start,
                    method="L-BFGS-B",
                    jac=True,
                    callback=end_of_iteration,
                    options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
                )
                stopped = interrupted()
            except KeyboardInterrupt:  # a second Ctrl-C, anywhere inside scipy
                result, stopped = None, True
        self._subtask_end(subtask[0], finished=False)  # the iteration scipy did not run
        if stopped:
            warn_user("Training interrupted by user.", TrainingInterruptedWarning)
            x, n_iter, loss = last["x"], last["nit"], last["fun"]
            if loss is None:  # stopped before the first iteration ended: the starting point's loss
                loss = loss_and_gradient(start)[0]
        else:
            x, n_iter, loss = result.x, min(result.nit, self.max_iter), result.fun
            if result.status != 0 and not last.get("stopped by callback"):
                _warn_lbfgs_not_converged(result, n_iter, self.max_iter)
        if not (np.isfinite(x).all() and np.isfinite(loss)):
            net.params[:] = start  # the objective wrote other points into params; keep the starting model
            raise DivergenceError(_NON_FINITE)
        net.params[:] = x
        self.n_iter_, self.loss_ = n_iter, float(loss)

    # -- scikit-learn API -----------------------------------------------------------------------------------
    @with_callbacks
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        """Fit the model to data X and target(s) y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data; float32 stays float32, anything else becomes float64.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (class labels for the classifier, values for the regressor).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; the loss is the weighted mean.
        X_val, y_val : array-like, default=None
            Validation data for early stopping, instead of holding out ``validation_fraction`` of X (both or
            neither, and only with ``early_stopping=True``, as ``HistGradientBoostingClassifier.fit``). In a
            Pipeline, route them with ``Pipeline(..., transform_input=["X_val"])`` and
            ``set_fit_request(X_val=True, y_val=True)`` (metadata routing enabled).
        sample_weight_val : array-like of shape (n_val_samples,), default=None
            Weights of the validation rows.

        Returns
        -------
        self : object
        """
        self._validate_params()
        validation_data = None
        if X_val is not None or y_val is not None:
            if y_val is None:
                raise ValueError("X_val is provided, but y_val was not provided.")
            if X_val is None:
                raise ValueError("y_val is provided, but X_val was not provided.")
            if not self.early_stopping:
                raise ValueError(  # HistGradientBoosting's words, less its "'auto' or" (no such value here)
                    "X_val and y_val are passed to fit while at the same time early_stopping is False. When passing "
                    "X_val and y_val to fit, early_stopping should be set to True."
                )
            if self.solver == "lbfgs":
                raise ValueError("X_val and y_val are for early stopping, which solver='lbfgs' does not do")
            if _is_dask_collection(X):
                raise ValueError("X_val is not supported on Dask arrays, where early stopping is not either")
            validation_data = (X_val, y_val, sample_weight_val)
        context = None
        if getattr(self, "_skl_callbacks", None):  # one root task; a subtask per epoch or lbfgs iteration
            context = self._init_callback_context(max_subtasks=self.max_iter + (self.solver == "lbfgs"))
            context.call_on_fit_task_begin(estimator=self, X=X, y=y)
        if _is_dask_collection(X):
            from fastbp.dask_training import fit_dask

            fit_dask(self, X, y, sample_weight)
        else:
            self._fit(X, y, sample_weight=sample_weight, incremental=False, validation_data=validation_data)
        if context is not None:
            context.call_on_fit_task_end(estimator=self, X=X, y=y, reconstruction_attributes={})
        return self

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    def _score_with(self, X, y, sample_weight, score_function, outputs=None):
        y_pred = self._predict(X, check_input=False, outputs=outputs)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier, scikit-learn's ``MLPClassifier`` with compiled training.

    Beyond scikit-learn: ``class_weight``, ``fit(..., X_val=, y_val=)``, ``history_`` and
    ``validation_loss_curve_``, ``hidden_features`` (hidden-layer activations).

    Parameters have scikit-learn 1.9's names, defaults and meaning; see
    :class:`sklearn.neural_network.MLPClassifier`. The differences are listed in :mod:`fastbp.estimators`.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(100,)
    activation : str or list of str, default="relu"
        ``"identity"``, ``"logistic"``, ``"tanh"``, ``"relu"`` (scikit-learn's) or ``"leaky_relu"``, ``"elu"``,
        ``"softplus"``, ``"gelu"`` (exact erf form), ``"silu"``; one name for every hidden layer or a list with
        one name per hidden layer.
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
    alpha : float, default=1e-4
        L2 penalty on weights, ``alpha ||W||^2 / (2 n)`` with n the batch's size or weight sum.
    batch_size : int or "auto", default="auto"
    learning_rate : {"constant", "invscaling", "adaptive", "cosine"}, default="constant"
        scikit-learn's schedules (invscaling for sgd only), plus ``"adaptive"`` for adam too (scikit-learn
        applies it to sgd only) and ``"cosine"``: linear warm-up over ``warmup_fraction`` of the fit's steps,
        then cosine decay, stepped per mini-batch inside the compiled epoch (sgd and adam).
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    max_iter : int, default=200
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=None
    tol : float, default=1e-4
    verbose : bool, default=False
        Print one line per epoch (loss, validation score, seconds).
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
    n_iter_no_change : int or inf, default=10
    max_fun : int, default=15000
    warmup_fraction : float in [0, 1), default=0.0
        With ``learning_rate="cosine"``: the fraction of all mini-batch steps of the fit spent in linear
        warm-up.
    class_weight : dict, list of dicts, "balanced" or None, default=None
        Weights of the classes, multiplied into ``sample_weight`` (scikit-learn's forests' semantics:
        ``"balanced"`` uses ``n_samples / (n_classes * count)``; multilabel y takes a list of dicts, one per
        label, or ``"balanced"``). ``"balanced"`` is refused by ``partial_fit``.
    negative_slope : float, default=0.01
        The slope of ``"leaky_relu"`` for negative inputs (>= 0).
    dropout : float or list of float, default=0.0
        Inverted dropout: during sgd/adam training each hidden unit is dropped with this probability (one rate
        for every hidden layer, or one per hidden layer, in [0, 1)) and the kept ones are scaled by
        ``1 / (1 - rate)``. Never applied by predict, predict_proba, hidden_features or the validation score.
        The masks come from ``random_state`` (one draw per epoch): the same seed gives the same weights.
        Refused with ``solver="lbfgs"``.

    Attributes
    ----------
    history_ : list of dict
        One record per epoch (lbfgs: per iteration): ``iteration``, ``loss``, ``learning_rate``, ``seconds``,
        ``samples_per_second``, and with a validation set ``validation_loss`` and ``validation_score``.
    validation_loss_curve_ : list of float or None
        The loss (with the L2 term) on the validation set after each epoch, beside ``loss_curve_``.
    classes_, coefs_, intercepts_, loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, n_iter_, t_, n_layers_, n_outputs_, out_activation_, n_features_in_,
    feature_names_in_
        As in scikit-learn.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from fastbp import MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier(random_state=0, max_iter=30).fit(X / 16, y)  # doctest: +SKIP
    >>> clf.score(X / 16, y) > 0.95  # doctest: +SKIP
    True
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, list, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        class_weight=None,
        warmup_fraction=0.0,
        negative_slope=0.01,
        dropout=0.0,
    ):
        _store_params(self, locals())

    def _with_class_weights(self, sample_weight, Y, dtype, incremental):
        if self.class_weight is None:
            return sample_weight
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                "class_weight 'balanced' is not supported for partial_fit: the class frequencies of one call are "
                "not those of the data. Compute them once with sklearn.utils.class_weight.compute_class_weight and "
                "pass the resulting dict as class_weight."
            )
        labels = self._label_binarizer.inverse_transform(Y)
        if hasattr(labels, "toarray"):
            labels = labels.toarray()
        weights = compute_sample_weight(self.class_weight, labels).astype(dtype)
        return weights if sample_weight is None else sample_weight * weights

    def _encode_validation(self, y_val):
        unseen = np.setdiff1d(unique_labels(y_val), self.classes_) if y_val.ndim == 1 else []
        if len(unseen):
            raise ValueError(f"y_val has classes not seen in y: {unseen[:5]}")
        return self._label_binarizer.transform(y_val)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True, dtype=(np.float64, np.float32), reset=reset
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to "
                        f"fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        return X, self._label_binarizer.transform(y)

    def _decode(self, Y):
        return _labels_from_outputs(self._label_binarizer, Y)

    def predict(self, X):
        """Predict class labels (or label indicators for multilabel y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        return self._predict(X)

    def _predict(self, X, check_input=True, outputs=None):
        state = self._fitted_state()
        y_pred = self._forward(X, state, check_input) if outputs is None else outputs
        if state["n_outputs_"] == 1:
            y_pred = y_pred.ravel()
        return _labels_from_outputs(state["_label_binarizer"], y_pred)

    def _score(self, X, y, sample_weight=None, outputs=None):
        return self._score_with(X, y, sample_weight, accuracy_score, outputs)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Every class that will ever appear; required on the first call.

        Returns
        -------
        self : object
        """
        if not hasattr(self, "coefs_"):
            self._validate_params()

        def first_call_labels(work):
            if _check_partial_fit_first_call(work, classes):
                work._label_binarizer = LabelBinarizer()
                work._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)

        return self._fit(X, y, sample_weight=sample_weight, incremental=True, prepare=first_call_labels)

    def predict_proba(self, X):
        """Class probabilities, rows summing to 1 (per label for multilabel y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        state = self._fitted_state()
        y_pred = self._forward(X, state)
        if state["n_outputs_"] == 1:
            return np.hstack([1 - y_pred, y_pred])
        return y_pred

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor, scikit-learn's ``MLPRegressor`` with compiled training.

    Parameters have scikit-learn 1.9's names, defaults and meaning (see
    :class:`sklearn.neural_network.MLPRegressor` and :class:`MLPClassifier` here). Beyond scikit-learn: the
    robust and quantile losses, and everything :class:`MLPClassifier` adds.

    Parameters
    ----------
    loss : {"squared_error", "poisson", "absolute_error", "huber", "quantile"}, default="squared_error"
        ``"squared_error"`` (summed over outputs, see :mod:`fastbp.estimators`) and ``"poisson"`` (exp output,
        y >= 0) as scikit-learn's; ``"absolute_error"`` (predicts the median), ``"huber"`` (quadratic up to
        ``delta``, linear beyond) and ``"quantile"`` (pinball loss: predicts the ``quantile``), with the
        identity output. Their gradients at the kinks are those of scikit-learn's ``_loss`` module. Two
        quantile regressors give a prediction interval.
    quantile : float in (0, 1), default=None
        The quantile ``loss="quantile"`` predicts (required with it), as ``HistGradientBoostingRegressor``'s.
    delta : float > 0, default=1.0
        Huber's threshold, named as scikit-learn's ``HuberLoss`` names it (``GradientBoostingRegressor``'s
        ``alpha`` and ``SGDRegressor``'s ``epsilon`` mean other things here: the L2 penalty, Adam's epsilon).
        Residuals are in the units of y: scale y, or choose delta for them.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, learning_rate_init, power_t,
    max_iter, shuffle, random_state, tol, verbose, warm_start, momentum, nesterovs_momentum, early_stopping,
    validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun, warmup_fraction, negative_slope,
    dropout
        As in :class:`MLPClassifier`.

    Attributes
    ----------
    coefs_, intercepts_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, n_iter_,
    t_, n_layers_, n_outputs_, out_activation_, n_features_in_, feature_names_in_
        As in scikit-learn.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({name for name, entry in LOSSES.items() if entry.output in ("identity", "exp")})],
        "quantile": [Interval(Real, 0, 1, closed="neither"), None],
        "delta": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        warmup_fraction=0.0,
        negative_slope=0.01,
        dropout=0.0,
        quantile=None,
        delta=1.0,
    ):
        _store_params(self, locals())

    def _check_layer_options(self, n_hidden: int) -> None:
        super()._check_layer_options(n_hidden)
        if self.loss == "quantile" and self.quantile is None:
            raise ValueError("loss='quantile' needs the quantile to predict: set quantile to a value in (0, 1)")

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for Poisson regression.")
        return X, y

    def _decode(self, Y):
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _encode_validation(self, y_val):
        y_val = check_array(y_val, ensure_2d=False, dtype=np.float64, input_name="y_val")
        if self.loss == "poisson" and np.any(y_val < 0):
            raise ValueError("Some value(s) of y_val are negative which is not allowed for Poisson regression.")
        return y_val

    def predict(self, X):
        """Predict with the fitted network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        return self._predict(X)

    def _predict(self, X, check_input=True, outputs=None):
        y_pred = self._forward(X, self._fitted_state(), check_input) if outputs is None else outputs
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def _score(self, X, y, sample_weight=None, outputs=None):
        return self._score_with(X, y, sample_weight, r2_score, outputs)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        if not hasattr(self, "coefs_"):
            self._validate_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

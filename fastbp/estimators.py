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
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils import shuffle as shuffle_rows
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, validate_data

from fastbp._interrupt import TrainingInterruptedWarning, deferred_interrupt
from fastbp._warn import warn_user
from fastbp.kernels.inputs import all_finite
from fastbp.network import DivergenceError, Network
from fastbp.optimizers import SGD, Adam

_STOCHASTIC_SOLVERS = ("sgd", "adam")
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


def _warn_lbfgs_not_converged(result, n_iter: int, max_iter: int) -> None:
    """scikit-learn's ConvergenceWarning for lbfgs (``_check_optimize_result``), pointing at the user's call."""
    message = f"lbfgs failed to converge after {n_iter} iteration(s) (status={result.status}):\n{result.message}\n"
    if n_iter == max_iter:
        message += f"\nIncrease the number of iterations to improve the convergence (max_iter={max_iter})."
    message += "\nYou might also want to scale the data as shown in:\n    https://scikit-learn.org/stable/modules/preprocessing.html"
    warn_user(message, ConvergenceWarning)


class _BaseMLP(BaseEstimator):
    """Shared fitting logic of the two estimators (not public)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
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
        arrays = list(coefs) + list(intercepts)
        if net is not None and len(arrays) == 2 * len(net.layers):
            if all(a.base is net.params or a is net.params for a in arrays):
                return net
        dtype = np.result_type(*arrays)
        dtype = dtype if dtype in (np.float32, np.float64) else np.float64
        sizes = [c.shape[0] for c in coefs] + [coefs[-1].shape[1]]
        hidden = (state["activation"],) * (len(sizes) - 2)
        net = Network(sizes, hidden, state["out_activation_"], dtype=dtype).set_parameters(coefs, intercepts)
        self.__dict__.update(_net=net, coefs_=net.coefs, intercepts_=net.intercepts)
        return net

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
        """Network outputs for X with the model in ``state``; float64 X gives float64 outputs.

        A float32 model computes float64 X in float64 (with its float32 weights widened), as scikit-learn's
        matmul of float64 X with float32 weights does, rather than rounding X to float32.
        """
        net = self._network(state)
        if check_input and not self._is_plain_input(X, net, state):
            X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False)
        if X.dtype == np.float64 and net.dtype == np.float32:
            wide = Network(net.layer_sizes, net.hidden_activations, net.output, np.float64)
            wide.params[:] = net.params  # per call: coefs_ may have been edited in place since the last one
            net = wide
        return net.forward(X.astype(net.dtype, copy=False))

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
    def _fit(self, X, y, sample_weight=None, incremental=False, prepare=None):
        """Train a working copy of the estimator, then publish its fitted state in one step.

        Training never writes the published model: a prediction from another thread during ``fit`` sees the
        old model (or ``NotFittedError``) until the new one replaces it whole. A fit that raises during
        training (divergence, an error in a scorer) still publishes the progress made up to the last
        completed epoch; one that fails before training began (bad input) leaves the estimator untouched.
        ``prepare(work)`` runs first on the copy (``partial_fit``'s label setup).
        """
        continuing = hasattr(self, "coefs_") and (self.warm_start or incremental)
        work = self._working_copy(continuing, incremental)
        if prepare is not None:
            prepare(work)
        try:
            work._fit_in_place(X, y, sample_weight, incremental)
        except Exception:
            if "coefs_" in work.__dict__:
                self.__dict__.update(work.__dict__)
            raise
        self.__dict__.update(work.__dict__)
        return self

    def _working_copy(self, continuing: bool, incremental: bool):
        """A shallow copy whose training state (network, optimizer, curves) is its own."""
        work = object.__new__(type(self))
        work.__dict__.update(self.__dict__)
        if continuing:
            net = self._network()
            twin = Network(net.layer_sizes, net.hidden_activations, net.output, net.dtype)
            twin.params[:] = net.params
            work._adopt(twin)
            for name in ("loss_curve_", "validation_scores_"):
                if isinstance(getattr(work, name, None), list):
                    setattr(work, name, list(getattr(work, name)))
            if incremental and getattr(work, "_optimizer", None) is not None:
                work._optimizer = copy.deepcopy(work._optimizer)
        return work

    def _fit_in_place(self, X, y, sample_weight, incremental):
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if not all(isinstance(h, Integral) and not isinstance(h, bool) for h in hidden):
            raise TypeError(f"hidden_layer_sizes must hold integers, got {self.hidden_layer_sizes!r}.")
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        hidden = [int(h) for h in hidden]
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        Y = np.ascontiguousarray(Y.reshape(len(Y), -1), dtype=X.dtype)
        X = _contiguous(X)
        self.n_outputs_ = Y.shape[1]
        layer_units = [X.shape[1], *hidden, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, X.dtype)
        net = self._network()
        if net.dtype != X.dtype:  # warm start or partial_fit with another dtype: follow the data
            net = Network(net.layer_sizes, net.hidden_activations, net.output, X.dtype)
            net.params[:] = self._net.params
            self._adopt(net)
            if getattr(self, "_best_params", None) is not None:
                self._best_params = self._best_params.astype(X.dtype)
        if net.layer_sizes != tuple(layer_units):
            raise ValueError(
                f"the network has layers {net.layer_sizes} but this data needs {tuple(layer_units)}; "
                "fit again without warm_start to change hidden_layer_sizes or the number of outputs"
            )
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(net, X, Y, sample_weight, incremental)
        else:
            self._fit_lbfgs(net, X, Y, sample_weight)

    def _initialize(self, layer_units, dtype) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        hidden = (self.activation,) * (len(layer_units) - 2)
        net = Network(layer_units, hidden, self.out_activation_, dtype=dtype).initialize(self._random_state)
        self._adopt(net)
        self._optimizer = None
        self._best_params = net.params.copy()
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _make_optimizer(self):
        if self.solver == "sgd":
            return SGD(self.learning_rate_init, self.momentum, self.nesterovs_momentum)
        return Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _validation_split(self, X, Y, sample_weight):
        """scikit-learn's split (stratified for single-output classifiers), from the same random stream.

        Returns the training rows as indices into X, which training visits in place (X is not copied), and
        the validation set (a copy of its rows, for scoring).
        """
        stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
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
        return train, (X[val], self._decode(Y[val]), sw_val)

    def _batch_size(self, n_samples: int) -> int:
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warn_user("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _fit_stochastic(self, net: Network, X, Y, sample_weight, incremental):
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        rows, validation = np.arange(X.shape[0]), None  # the training rows, in scikit-learn's order
        if self.early_stopping:
            rows, validation = self._validation_split(X, Y, sample_weight)
            if self.validation_scores_ is None:  # warm start after a fit without early stopping
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
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
                order = rows[position] if self.shuffle else (rows if validation is not None else None)
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
                    )
                except DivergenceError as error:
                    raise DivergenceError(f"{_NON_FINITE} ({error})") from None
                self.n_iter_ += 1
                self.loss_ = loss
                self.t_ += rows.size
                self.loss_curve_.append(loss)
                if self._end_of_epoch(validation, time.perf_counter() - started, rows.size):
                    break
                if interrupted():
                    warn_user("Training interrupted by user.", TrainingInterruptedWarning)
                    break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warn_user(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                        "optimization hasn't converged yet.",
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt:  # a second Ctrl-C: the epoch in flight was rolled back by Network
            warn_user("Training interrupted by user.", TrainingInterruptedWarning)

    def _end_of_epoch(self, validation, seconds: float, n_samples: int) -> bool:
        """Record the epoch, update the schedule and the stopping rule; True when training should stop.

        An epoch improves if it beats the best so far by ``tol``; for the adaptive schedule, if it beats the
        previous epoch by ``tol`` (the schedule reacts to stalling, not to the distance from an old best).
        """
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        if validation is not None:
            X_val, y_val, sw_val = validation
            score = self._score(X_val, y_val, sw_val)
            scores = self.validation_scores_
            reference = scores[-1] if adaptive and scores else self.best_validation_score_
            scores.append(score)
            improved = score >= reference + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._net.params.copy()
        else:
            best = np.inf if self.best_loss_ is None else self.best_loss_  # None after an early-stopping fit
            reference = self.loss_curve_[-2] if adaptive and len(self.loss_curve_) > 1 else best
            improved = self.loss_curve_[-1] <= reference - self.tol
            self.best_loss_ = min(best, self.loss_curve_[-1])
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        self._report_epoch(self.validation_scores_[-1] if validation is not None else None, seconds, n_samples)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t
        if self._no_improvement_count < self.n_iter_no_change:
            return False
        what = "Validation score" if validation is not None else "Training loss"
        message = f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."
        if adaptive and self._optimizer.learning_rate > 1e-6:
            self._optimizer.learning_rate /= 5.0
            self._no_improvement_count = 0
            if self.verbose:
                print(f"{message} Setting learning rate to {self._optimizer.learning_rate:f}")
            return False
        if self.verbose:
            print(f"{message} Stopping.")
        return True

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

        def loss_and_gradient_at(flat):
            loss, grad = loss_and_gradient(flat)
            if last["fun"] is None:  # scipy evaluates the starting point first
                last["fun"] = loss
            return loss, grad

        with deferred_interrupt() as interrupted:

            def end_of_iteration(intermediate_result):
                last.update(x=intermediate_result.x.copy(), fun=float(intermediate_result.fun), nit=last["nit"] + 1)
                if self.verbose:
                    print(f"Iteration {last['nit']}, loss = {last['fun']:.8f}")
                if interrupted():
                    raise StopIteration  # scipy ends the minimization with the current iterate

            try:
                result = scipy.optimize.minimize(
                    loss_and_gradient_at,
                    start,
                    method="L-BFGS-B",
                    jac=True,
                    callback=end_of_iteration,
                    options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
                )
                stopped = interrupted()
            except KeyboardInterrupt:  # a second Ctrl-C, anywhere inside scipy
                result, stopped = None, True
        if stopped:
            warn_user("Training interrupted by user.", TrainingInterruptedWarning)
            x, n_iter, loss = last["x"], last["nit"], last["fun"]
            if loss is None:
                loss = loss_and_gradient(start)[0]
        else:
            x, n_iter, loss = result.x, min(result.nit, self.max_iter), result.fun
            if result.status != 0:
                _warn_lbfgs_not_converged(result, n_iter, self.max_iter)
        if not (np.isfinite(x).all() and np.isfinite(loss)):
            net.params[:] = start  # the objective wrote other points into params; keep the starting model
            raise DivergenceError(_NON_FINITE)
        net.params[:] = x
        self.n_iter_, self.loss_ = n_iter, float(loss)

    # -- scikit-learn API -----------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data X and target(s) y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data; float32 stays float32, anything else becomes float64.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (class labels for the classifier, values for the regressor).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; the loss is the weighted mean.

        Returns
        -------
        self : object
        """
        self._validate_params()
        if _is_dask_collection(X):
            from fastbp.dask_training import fit_dask

            return fit_dask(self, X, y, sample_weight)
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    def _score_with(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier, scikit-learn's ``MLPClassifier`` with compiled training.

    Parameters have scikit-learn 1.9's names, defaults and meaning; see
    :class:`sklearn.neural_network.MLPClassifier`. The differences are listed in :mod:`fastbp.estimators`.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(100,)
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
    alpha : float, default=1e-4
        L2 penalty on weights, ``alpha ||W||^2 / (2 n)`` with n the batch's size or weight sum.
    batch_size : int or "auto", default="auto"
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
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

    Attributes
    ----------
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
    ):
        _store_params(self, locals())

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
        return self._label_binarizer.inverse_transform(Y)

    def predict(self, X):
        """Predict class labels (or label indicators for multilabel y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        self._check_fitted()
        return self._predict(X)

    def _predict(self, X, check_input=True):
        state = self._fitted_state()
        y_pred = self._forward(X, state, check_input)
        if state["n_outputs_"] == 1:
            y_pred = y_pred.ravel()
        return state["_label_binarizer"].inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with(X, y, sample_weight, accuracy_score)

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
    :class:`sklearn.neural_network.MLPRegressor` and :class:`MLPClassifier` here); ``loss`` is
    ``"squared_error"`` (identity output) or ``"poisson"`` (exp output, y >= 0). Squared error is summed over
    outputs (see :mod:`fastbp.estimators`).

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, learning_rate_init, power_t,
    max_iter, shuffle, random_state, tol, verbose, warm_start, momentum, nesterovs_momentum, early_stopping,
    validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in :class:`MLPClassifier`.

    Attributes
    ----------
    coefs_, intercepts_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, n_iter_,
    t_, n_layers_, n_outputs_, out_activation_, n_features_in_, feature_names_in_
        As in scikit-learn.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
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
    ):
        _store_params(self, locals())

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

    def predict(self, X):
        """Predict with the fitted network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        self._check_fitted()
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, self._fitted_state(), check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with(X, y, sample_weight, r2_score)

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

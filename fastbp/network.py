"""``fastbp.Network``: a dense network whose parameters live in one flat buffer.

The thin Python model over the compiled kernels: it validates shapes and dtypes, owns the parameters and
hands them to one compiled call per epoch (``train_epoch``), per batch of predictions (``forward``) or per
full-batch gradient (``loss_and_gradients``). The scikit-learn estimators wrap it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from fastbp.kernels import epoch as _epoch
from fastbp.kernels import writable
from fastbp.kernels.activations import ACTIVATIONS
from fastbp.kernels.blas import SCRATCH_BYTES
from fastbp.kernels.branches import Branches, shared_kernels
from fastbp.kernels.dense import ALL, Model, hidden_forward, network_forward
from fastbp.kernels.losses import DEFAULT_LOSS, LOSSES
from fastbp.kernels.optimizers import SGD as SGD_CODE
from fastbp.kernels.optimizers import Step
from fastbp.kernels.parallel import PART_BYTES
from fastbp.optimizers import OPTIMIZERS, SGD, Adam
from fastbp.threads import blas_single_threaded, step_parts

PREDICT_CHUNK_ROWS = 4096  # rows per compiled forward call: bounds prediction scratch to a few MB


class DivergenceError(ValueError):
    """Training produced a non-finite loss or non-finite parameters (the parameters were rolled back)."""


@dataclass
class Workspace:
    """Scratch buffers for training, allocated once and reused by every epoch (one per fit)."""

    batch_size: int
    Y_batch: np.ndarray
    weight_batch: np.ndarray
    acts: np.ndarray
    pre: np.ndarray  # pre-activations z of the layers whose derivative needs them (gelu, silu); else empty
    delta_a: np.ndarray
    delta_b: np.ndarray
    grads: np.ndarray
    X_batch: np.ndarray | None = None  # dense gather buffer, allocated by the first shuffled dense epoch
    sparse_batch: tuple | None = None  # CSR gather buffers, sized by the first epoch that needs them


class Network:
    """A fully-connected network trained by backpropagation with compiled, fused kernels.

    Parameters
    ----------
    layer_sizes : sequence of int
        Units per layer, input first and output last, e.g. ``(784, 256, 128, 10)``. At least two.
    hidden_activation : str or sequence of str, default="relu"
        A name in ``fastbp.ACTIVATIONS`` (``"identity"``, ``"logistic"``, ``"tanh"``, ``"relu"``,
        ``"leaky_relu"``, ``"elu"``, ``"softplus"``, ``"gelu"``, ``"silu"``); one for every hidden layer or one
        per hidden layer.
    output : str, default="softmax"
        The output activation: ``"softmax"``, ``"logistic"`` (binary and multilabel targets), ``"identity"``
        or ``"exp"``. It fixes the loss unless ``loss`` names another one for it.
    dtype : {numpy.float32, numpy.float64}, default=numpy.float64
        Dtype of parameters, activations and inputs: float32 in means float32 throughout.
    loss : str, optional
        A name in ``fastbp.LOSSES`` whose output is ``output``. Default: the output's matched loss
        (softmax: ``"log_loss"``, logistic: ``"binary_log_loss"``, identity: ``"squared_error"``, exp:
        ``"poisson"``); the identity output also takes ``"absolute_error"``, ``"huber"`` and ``"quantile"``.
    negative_slope : float, default=0.01
        The slope of ``"leaky_relu"`` for z < 0 (>= 0).
    delta : float, default=1.0
        Huber loss: residuals up to ``delta`` count quadratically, larger ones linearly (> 0).
    quantile : float, default=0.5
        Quantile loss: the quantile predicted, in (0, 1).
    dropout : float or sequence of float, default=0.0
        Inverted dropout rate of every hidden layer, or one per hidden layer, in [0, 1): applied by
        :meth:`train_epoch` only, never in :meth:`forward`.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        Every layer's weights (row-major, shape (fan_in, fan_out)) in order, then every layer's biases.
        ``coefs`` and ``intercepts`` are views into it.
    layers : ndarray of shape (n_layers - 1, 4), int64
        Per layer: offset of W in ``params``, fan_in, fan_out, offset of b.

    Examples
    --------
    >>> import numpy as np, fastbp
    >>> net = fastbp.Network((4, 8, 3), "tanh", "softmax").initialize(random_state=0)
    >>> X = np.random.default_rng(0).normal(size=(10, 4))
    >>> Y = np.eye(3)[np.arange(10) % 3]
    >>> loss = net.train_epoch(X, Y, batch_size=4, optimizer=fastbp.Adam(), rng=np.random.default_rng(0))
    >>> net.forward(X).shape
    (10, 3)
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        hidden_activation: str | Sequence[str] = "relu",
        output: str = "softmax",
        dtype: type | np.dtype = np.float64,
        *,
        loss: str | None = None,
        negative_slope: float = 0.01,
        delta: float = 1.0,
        quantile: float = 0.5,
        dropout: float | Sequence[float] = 0.0,
    ) -> None:
        sizes = tuple(int(s) for s in layer_sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"layer_sizes needs at least two positive sizes (input, output), got {layer_sizes!r}")
        n_hidden = len(sizes) - 2
        if isinstance(hidden_activation, str):
            hidden = (hidden_activation,) * n_hidden
        else:
            hidden = tuple(hidden_activation)
            if len(hidden) != n_hidden:
                raise ValueError(f"{n_hidden} hidden layers need {n_hidden} activations, got {len(hidden)}")
        for name in hidden:
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; expected one of {list(ACTIVATIONS)}")
        if output not in DEFAULT_LOSS:
            raise ValueError(f"unknown output {output!r}; expected one of {list(DEFAULT_LOSS)}")
        loss = DEFAULT_LOSS[output] if loss is None else loss
        if loss not in LOSSES or LOSSES[loss].output != output:
            choices = [name for name, entry in LOSSES.items() if entry.output == output]
            raise ValueError(f"the {output!r} output takes the loss {' or '.join(map(repr, choices))}, not {loss!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        if not (np.isfinite(negative_slope) and negative_slope >= 0):
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope!r}")
        if not (np.isfinite(delta) and delta > 0):
            raise ValueError(f"delta must be > 0, got {delta!r}")
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
        rates = np.asarray(dropout, dtype=np.float64)
        rates = np.full(n_hidden, rates) if rates.ndim == 0 else rates
        if rates.shape != (n_hidden,) or not ((rates >= 0) & (rates < 1)).all():
            raise ValueError(f"dropout must be a rate in [0, 1) or one per hidden layer ({n_hidden}), got {dropout!r}")
        self.layer_sizes = sizes
        self.hidden_activations = hidden
        self.output = output
        self.loss = loss
        self.dtype = dtype
        self.negative_slope, self.delta, self.quantile = float(negative_slope), float(delta), float(quantile)
        self.dropout = tuple(float(r) for r in rates)
        fan = list(zip(sizes[:-1], sizes[1:]))
        self.n_weights = sum(i * o for i, o in fan)
        w_offsets = np.cumsum([0] + [i * o for i, o in fan])[:-1]
        b_offsets = self.n_weights + np.cumsum([0] + [o for _, o in fan])[:-1]
        self.layers = np.array(
            [(w, i, o, b) for w, (i, o), b in zip(w_offsets, fan, b_offsets)], dtype=np.int64
        ).reshape(-1, 4)
        self.params = np.zeros(self.n_weights + sum(o for _, o in fan), dtype=dtype)
        self._scratch = threading.local()
        self._needs_z = any(ACTIVATIONS[a].needs_z for a in hidden)
        # the value the loss kernel reads: huber's delta, the quantile, or nothing
        self.loss_parameter = {"delta": self.delta, "quantile": self.quantile}.get(LOSSES[loss].parameter, 0.0)
        self._model = Model(
            self.layers,
            np.array([ACTIVATIONS[a].code for a in hidden], dtype=np.int64),
            np.array([self.negative_slope if a == "leaky_relu" else 0.0 for a in hidden], dtype=dtype),
            np.array([round(r * 2.0**32) for r in rates], dtype=np.int64),  # dropped: hash < p 2^32
            (1 / (1 - rates)).astype(dtype),
            (1 - rates).astype(dtype),
            LOSSES[loss].code,
            dtype.type(self.loss_parameter),
        )
        self._model_args = tuple(self._model)  # as the kernels take it (see fastbp.kernels.dense)
        # what the kernels compile in: this network's activations, loss and dropout only, or every branch with
        # FASTBP_KERNELS=shared (kernels.branches). Specialized kernels compile only what the network uses (a first
        # default fit: 9 s instead of 14.5 s with an empty cache); each new combination compiles once more.
        # Prediction takes the same set, so it reuses the forward pass training compiled.
        own = not shared_kernels()
        self._branches = Branches(self._model.activations, [self._model.loss], bool(any(rates > 0))) if own else ALL

    # -- parameters -----------------------------------------------------------------------------------------
    @property
    def coefs(self) -> list[np.ndarray]:
        """Views of each layer's weights, shape (fan_in, fan_out): writing to them writes ``params``."""
        return [self.params[w : w + i * o].reshape(i, o) for w, i, o, _ in self.layers]

    @property
    def intercepts(self) -> list[np.ndarray]:
        """Views of each layer's biases, shape (fan_out,)."""
        return [self.params[b : b + o] for _, _, o, b in self.layers]

    def copy(self, dtype: type | np.dtype | None = None) -> Network:
        """A network of the same layers with a copy of the parameters (converted to ``dtype`` if given)."""
        twin = Network(
            self.layer_sizes, self.hidden_activations, self.output, self.dtype if dtype is None else dtype,
            **self.options(),
        )  # fmt: skip
        twin.params[:] = self.params
        return twin

    def options(self) -> dict:
        """The keyword arguments beyond sizes, activations, output and dtype that rebuild this network."""
        return {
            "loss": self.loss,
            "negative_slope": self.negative_slope,
            "delta": self.delta,
            "quantile": self.quantile,
            "dropout": self.dropout,
        }

    def initialize(self, random_state: int | np.random.RandomState | None = None) -> Network:
        """Glorot-uniform weights and biases, drawn exactly as scikit-learn's MLP draws them.

        Layer by layer, weights then biases, from ``uniform(-r, r)`` with ``r = sqrt(6 / (fan_in + fan_out))``
        (``sqrt(2 / ...)`` after a logistic layer, as scikit-learn); a seed gives scikit-learn's weights.

        Parameters
        ----------
        random_state : int, RandomState or None
            Seed or generator (``sklearn.utils.check_random_state`` semantics).

        Returns
        -------
        self : Network
        """
        from sklearn.utils import check_random_state

        rs = check_random_state(random_state)
        coefs, intercepts = self.coefs, self.intercepts
        for l, (fan_in, fan_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
            activation = (
                self.hidden_activations[min(l, len(self.hidden_activations) - 1)] if self.hidden_activations else ""
            )
            bound = np.sqrt((2.0 if activation == "logistic" else 6.0) / (fan_in + fan_out))
            coefs[l][...] = rs.uniform(-bound, bound, (fan_in, fan_out))
            intercepts[l][...] = rs.uniform(-bound, bound, fan_out)
        return self

    def set_parameters(self, coefs: Sequence[np.ndarray], intercepts: Sequence[np.ndarray]) -> Network:
        """Copy per-layer weights (fan_in, fan_out) and biases (fan_out,) into ``params``, checking shapes."""
        if len(coefs) != len(self.layers) or len(intercepts) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} coefficient and intercept arrays")
        for target, source in zip(self.coefs + self.intercepts, list(coefs) + list(intercepts)):
            source = np.asarray(source)
            if source.shape != target.shape:
                raise ValueError(f"parameter of shape {source.shape} does not fit a layer of shape {target.shape}")
            target[...] = source
        return self

    # -- validation -----------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        """``params`` is public and assignable: the kernels index it by the layer table, so check it first.

        An array passes once: its shape and dtype cannot change while ``coefs``/``intercepts`` view it, so the
        next calls only compare identity (0.4 us of a 20 us one-row prediction otherwise).
        """
        p, shape = self.params, (self.n_weights + sum(self.layer_sizes[1:]),)
        if p is self.__dict__.get("_params_checked"):
            return
        if not writable(p, shape, self.dtype):
            raise ValueError(
                f"params must be a writeable C-contiguous {self.dtype} array of shape {shape}; assign values "
                "with params[:] = ... instead"
            )
        self._params_checked = p

    def _check_X(self, X) -> tuple[np.ndarray | tuple, int]:
        """(X as the kernels take it, number of rows): a C-contiguous array, or a CSR tuple for sparse X.

        Sparse X becomes CSR (a copy only if it was not CSR already); it is never densified. Checks
        ``params`` too: every compiled call goes through here.
        """
        self._check_params()
        sparse = scipy.sparse.issparse(X)
        X = X if sparse or type(X) is np.ndarray else np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.layer_sizes[0]:
            raise ValueError(f"X must have shape (n_samples, {self.layer_sizes[0]}), got {X.shape}")
        if X.dtype != self.dtype:
            raise TypeError(f"X has dtype {X.dtype} but the network is {self.dtype}: convert one of them")
        if not sparse:  # the conversions only when needed: ~0.5 us less on a one-row prediction
            return (X if X.flags.c_contiguous else np.ascontiguousarray(X)), X.shape[0]
        X = X.tocsr()
        try:  # the kernels index with these arrays unchecked: a malformed matrix must not reach them
            X.check_format(full_check=True)
        except ValueError as error:
            raise ValueError(f"invalid sparse X: {error}") from None
        parts = (np.ascontiguousarray(X.data), np.ascontiguousarray(X.indices), np.ascontiguousarray(X.indptr))
        return (*parts, np.int64(X.shape[1])), X.shape[0]

    def _check_targets(self, X, Y, sample_weight):
        X, n = self._check_X(X)
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        if Y.shape != (n, self.layer_sizes[-1]):
            raise ValueError(f"Y must have shape ({n}, {self.layer_sizes[-1]}), got {Y.shape}")
        Y = np.ascontiguousarray(Y, dtype=self.dtype)
        if sample_weight is None:
            sample_weight = np.empty(0, dtype=self.dtype)
        else:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=self.dtype)
            if sample_weight.shape != (n,):
                raise ValueError(f"sample_weight must have shape ({n},), got {sample_weight.shape}")
        return X, n, Y, sample_weight

    # -- compiled calls -------------------------------------------------------------------------------------
    def forward(self, X: np.ndarray) -> np.ndarray:
        """Network outputs (after the output activation) for every row of X.

        Parameters
        ----------
        X : ndarray or scipy.sparse matrix of shape (n_samples, layer_sizes[0]), in the network's dtype
            Sparse X (CSR or CSC) goes through a compiled sparse first layer; it is never densified.

        Returns
        -------
        ndarray of shape (n_samples, layer_sizes[-1])
        """
        X, n = self._check_X(X)
        branches, params, model = self._branches, self.params, self._model_args
        return self._in_chunks(
            X, n, len(self.layer_sizes) - 1,
            lambda rows, acts, capacity: network_forward(branches, rows, params, model, acts, capacity),
        )  # fmt: skip

    def hidden(self, X: np.ndarray, layer: int = -1) -> np.ndarray:
        """A hidden layer's activations for every row of X (features learned by the network).

        Parameters
        ----------
        X : ndarray or scipy.sparse matrix of shape (n_samples, layer_sizes[0]), in the network's dtype
        layer : int, default=-1
            Which hidden layer, counted from 0 (the first) or from the end (-1 is the last).

        Returns
        -------
        ndarray of shape (n_samples, layer_sizes[layer + 1]), in the network's dtype
        """
        n_hidden = len(self.layer_sizes) - 2
        if n_hidden == 0:
            raise ValueError("this network has no hidden layer")
        if not isinstance(layer, (int, np.integer)) or not -n_hidden <= layer < n_hidden:
            raise ValueError(f"layer must be an integer from {-n_hidden} to {n_hidden - 1}, got {layer!r}")
        layer = int(layer) % n_hidden
        X, n = self._check_X(X)
        branches, params = self._branches, self.params
        model = tuple(self._model._replace(layers=self.layers[: layer + 1]))
        return self._in_chunks(
            X, n, layer + 1,
            lambda rows, acts, capacity: hidden_forward(branches, rows, params, model, acts, capacity, layer),
        )  # fmt: skip

    def _in_chunks(self, X, n: int, depth: int, forward) -> np.ndarray:
        """``forward(rows, acts, capacity)`` over X's rows, at most PREDICT_CHUNK_ROWS at a time: layer ``depth``'s
        outputs for every row.

        ``forward`` fills the scratch of the first ``depth`` layers and returns a view of it, so each chunk's
        outputs are copied out before the next call (or this thread's next prediction) overwrites them.
        """
        capacity = max(1, min(n, PREDICT_CHUNK_ROWS))  # no rows: one call on none
        acts = self._prediction_scratch(capacity * sum(self.layer_sizes[1 : depth + 1]))
        if n <= capacity:
            return forward(X, acts, capacity).copy()
        out = np.empty((n, self.layer_sizes[depth]), dtype=self.dtype)
        for start in range(0, n, capacity):
            stop = min(n, start + capacity)
            out[start:stop] = forward(_row_range(X, start, stop), acts, capacity)
        return out

    def _prediction_scratch(self, size: int) -> np.ndarray:
        """Activation scratch for predictions, one per thread, kept between calls.

        Reusing it saves fresh pages on every call (~1 ms of page faults for 10,000 rows); one per thread
        keeps concurrent predictions apart.
        """
        held = getattr(self._scratch, "acts", None)
        if held is None or held.size < size:
            held = self._scratch.acts = np.empty(size, dtype=self.dtype)
        return held

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_scratch"]  # per-thread buffers: not data, and threading.local does not pickle
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._scratch = threading.local()

    def loss_and_gradients(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        alpha: float = 0.0,
        dropout_seed: int | None = None,
    ) -> tuple[float, np.ndarray]:
        """Full-batch loss (with L2 penalty ``alpha ||W||^2 / (2 sum(w))``) and its gradient.

        Parameters
        ----------
        X : ndarray or scipy.sparse matrix of shape (n_samples, n_inputs), in the network's dtype
        Y : ndarray of shape (n_samples, n_outputs)
            Targets: one-hot rows (softmax), 0/1 indicators (logistic), values (identity, exp).
        sample_weight : ndarray of shape (n_samples,), optional
        alpha : float
            L2 strength on weights (not biases).
        dropout_seed : int, optional
            Apply the network's dropout with the masks of this seed (0 to 2**32 - 1), e.g. to check its
            gradient; by default no dropout (the full-batch objective, as lbfgs sees it).

        Returns
        -------
        loss : float
        gradient : ndarray of shape (n_params,)
            Same layout as ``params``.
        """
        X, n, Y, sample_weight = self._check_targets(X, Y, sample_weight)
        if sample_weight.size and not sample_weight.sum() > 0:
            raise ZeroDivisionError("Weights sum to zero, can't be normalized")
        grads = np.empty_like(self.params)
        shapes = self._workspace_shapes(n)
        scratch = (
            *(np.empty(shapes[k], self.dtype) for k in ("acts", "pre", "delta_a", "delta_b")),
            n,
            _blas_scratch(),
        )
        key = -1 if dropout_seed is None else _dropout_seed(dropout_seed)
        loss = _epoch.loss_and_gradient(
            self._branches,
            X,
            Y,
            sample_weight,
            self.params,
            grads,
            self._model_args,
            self.n_weights,
            self.dtype.type(alpha),
            scratch,
            key,
        )
        return float(loss), grads

    def _workspace_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """The shape of every buffer a ``train_epoch`` workspace for ``batch_size`` rows holds."""
        width, n_out = max(self.layer_sizes[1:]), self.layer_sizes[-1]
        return {
            "Y_batch": (batch_size, n_out),
            "weight_batch": (batch_size,),
            "acts": (batch_size * sum(self.layer_sizes[1:]),),
            "pre": (batch_size * sum(self.layer_sizes[1:-1]) if self._needs_z else 0,),
            "delta_a": (batch_size * width,),
            "delta_b": (batch_size * width,),
            "grads": self.params.shape,
        }

    def workspace(self, batch_size: int) -> Workspace:
        """Scratch buffers for ``train_epoch`` at this batch size (allocate once per fit, pass every epoch)."""
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        buffers = {name: np.empty(shape, self.dtype) for name, shape in self._workspace_shapes(batch_size).items()}
        return Workspace(batch_size=batch_size, **buffers)

    def _check_workspace(self, workspace: Workspace, batch_size: int) -> None:
        """Refuse a workspace whose buffers do not fit this network, dtype and batch size.

        The kernels write these buffers without bounds checks, so a workspace made by another network once
        corrupted the heap; this check runs once per epoch, before the compiled call.
        """
        capacity = getattr(workspace, "batch_size", None)
        fits = isinstance(workspace, Workspace) and isinstance(capacity, int) and capacity >= batch_size
        if fits:
            shapes = self._workspace_shapes(capacity)
            fits = all(writable(getattr(workspace, name), shape, self.dtype) for name, shape in shapes.items())
        if not fits:
            raise ValueError(
                f"this workspace does not fit: train_epoch needs one made by this network's "
                f"workspace(batch_size) with batch_size >= {batch_size} (layers {self.layer_sizes}, {self.dtype})"
            )

    def train_epoch(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        batch_size: int,
        optimizer: SGD | Adam,
        shuffle: bool = True,
        rng: np.random.Generator | np.random.RandomState | int | None = None,
        *,
        order: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
        alpha: float = 0.0,
        workspace: Workspace | None = None,
        learning_rates: np.ndarray | None = None,
        dropout_seed: int | None = None,
        threads: int | None = None,
    ) -> float:
        """One epoch of mini-batch training in one compiled call.

        Parameters
        ----------
        X : ndarray or scipy.sparse matrix of shape (n_samples, n_inputs), in the network's dtype
        Y : ndarray of shape (n_samples, n_outputs)
        batch_size : int
            Rows per step; the last batch holds the remainder.
        optimizer : SGD or Adam
            Its state is created on first use and updated in place.
        shuffle : bool
            Visit the rows in the order of ``rng.permutation(n_samples)``; otherwise in order, read in place.
        rng : numpy Generator, RandomState, int or None
            Source of the permutation when ``shuffle``.
        order : ndarray of int, optional
            The rows to visit, in this order, each at most once: a permutation of all rows, or of a subset
            (e.g. the training rows, without copying them out of X). Overrides ``shuffle`` and ``rng``.
        sample_weight : ndarray of shape (n_samples,), optional
        alpha : float
            L2 strength on weights.
        workspace : Workspace, optional
            From this network's :meth:`workspace`, for at least ``batch_size`` rows (checked: a workspace of
            another network or dtype raises ``ValueError``); allocated here if not given.
        learning_rates : ndarray of shape (n_batches,), optional
            One learning rate per mini-batch of this epoch (a schedule stepped inside the compiled epoch),
            instead of ``optimizer.learning_rate``; positive and finite.
        dropout_seed : int, optional
            The seed of this epoch's dropout masks (0 to 2**32 - 1; the same seed, the same masks). Drawn from
            ``rng`` if not given and the network has dropout.
        threads : int, optional
            How many threads each step is split over: 1 runs the serial step (BLAS uses its own threads);
            k >= 2 the parallel step over k parts (dense X, no dropout; BLAS at one thread during the epoch).
            Default: :func:`fastbp.threads.step_parts` decides (numba's threads, BLAS's threads, batch size).
            For a given value the result is the same in every run.

        Returns
        -------
        float
            The epoch's loss: the mean over batches of each batch's loss, weighted by batch rows (as
            scikit-learn's ``loss_curve_``), over the rows visited.

        Raises
        ------
        ZeroDivisionError
            If the sample weights of a mini-batch sum to zero (before the epoch starts).
        DivergenceError
            If a loss or parameter became inf or NaN; the parameters and optimizer state are restored to
            their values before the epoch.
        """
        X, n, Y, sample_weight = self._check_targets(X, Y, sample_weight)
        if n == 0:
            raise ValueError("X has no rows")
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        generator = _as_generator(rng)  # one stream for the permutation and the dropout seed, in that order
        if order is not None:
            order = np.ascontiguousarray(order, dtype=np.int64)
            if order.ndim != 1 or order.size == 0 or order.min() < 0 or order.max() >= n:
                raise ValueError(f"order must list rows of X (0 to {n - 1})")
            if np.bincount(order).max() != 1:
                raise ValueError("order must visit each row at most once")
        elif shuffle:
            order = generator.permutation(n).astype(np.int64)
        else:
            order = np.empty(0, dtype=np.int64)
        visited = order.size or n
        batch_size = min(batch_size, visited)
        if sample_weight.size:
            visited_weights = sample_weight[order] if order.size else sample_weight
            if not (np.add.reduceat(visited_weights, np.arange(0, visited, batch_size)) > 0).all():
                raise ZeroDivisionError("Weights sum to zero, can't be normalized")  # scikit-learn's words
        if workspace is None:
            workspace = self.workspace(batch_size)
        else:
            self._check_workspace(workspace, batch_size)
        optimizer.initialize(self.params)
        dt = self.dtype.type
        n_batches = -(-visited // batch_size)
        if learning_rates is None:
            learning_rates = np.empty(0, dtype=self.dtype)
        else:
            learning_rates = np.ascontiguousarray(learning_rates, dtype=self.dtype)
            if learning_rates.shape != (n_batches,) or not (np.isfinite(learning_rates) & (learning_rates > 0)).all():
                raise ValueError(f"learning_rates must hold {n_batches} positive finite rates, one per batch")
        if not isinstance(optimizer, tuple(OPTIMIZERS.values())):
            names = " or ".join(f"fastbp.{cls.__name__}" for cls in OPTIMIZERS.values())
            raise TypeError(f"optimizer must be {names}, got {type(optimizer).__name__}")
        (code, rate, *floats), (state_a, state_b), t = optimizer.kernel_settings()
        state = (state_a,) if state_a is state_b else (state_a, state_b)  # SGD passes its velocity twice
        backup = [a.copy() for a in (self.params, *state)]
        momentum, nesterov, beta_1, beta_2, epsilon = floats
        # plain, as the kernels take it
        settings = tuple(Step(code, dt(rate), dt(momentum), nesterov, dt(beta_1), dt(beta_2), dt(epsilon), dt(1)))
        if dropout_seed is not None:
            dropout_seed = _dropout_seed(dropout_seed)
        elif any(self.dropout):
            draw = generator.integers if isinstance(generator, np.random.Generator) else generator.randint
            dropout_seed = int(draw(2**32, dtype=np.int64))
        else:
            dropout_seed = -1
        dense, dropout = not isinstance(X, tuple), dropout_seed >= 0
        if threads is None:
            threads = step_parts(batch_size, dense, dropout, update_pass=not (code == SGD_CODE and momentum == 0))
        elif not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        elif threads > 1 and (not dense or dropout):
            threads = 1  # the parallel step takes dense input and no dropout
        threads = int(threads)
        scratch = (
            workspace.acts,
            workspace.pre,
            workspace.delta_a,
            workspace.delta_b,
            workspace.batch_size,
            _blas_scratch(threads),
        )
        try:
            with blas_single_threaded() if threads > 1 else contextlib.nullcontext():
                total, done, adam_t = _epoch.train_epoch(
                    self._branches.with_parallel(threads > 1), X, Y, sample_weight, order, batch_size, self.params,
                    workspace.grads, self._model_args, self.n_weights, dt(alpha), settings, learning_rates, t, state_a,
                    state_b, _gather_buffer(X, order, batch_size, workspace), workspace.Y_batch,
                    workspace.weight_batch, scratch, dropout_seed, threads,
                )  # fmt: skip
        except BaseException:  # e.g. KeyboardInterrupt raised as the call returns: keep the old state
            _restore((self.params, *state), backup)
            raise
        if done < visited or not np.isfinite(self.params).all():  # plain SGD without L2 tracks no weight norm
            _restore((self.params, *state), backup)
            hint = " (float32 overflows above 3.4e38: fit in float64 for such values)" if dt is np.float32 else ""
            raise DivergenceError(
                "the loss or the parameters became inf or NaN during this epoch; parameters were restored to "
                f"their values before it. Lower the learning rate or scale the inputs and targets{hint}."
            )
        if "t" in optimizer.counters:
            optimizer.t = int(adam_t)
        return total / visited


def _blas_scratch(threads: int = 1) -> np.ndarray:
    return np.empty(SCRATCH_BYTES if threads == 1 else PART_BYTES * threads, np.uint8)


def _dropout_seed(seed) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"dropout_seed must be an integer from 0 to 2**32 - 1, got {seed!r}")
    return int(seed)


def _restore(arrays, saved) -> None:
    for array, copy in zip(arrays, saved):
        array[...] = copy


def _row_range(X, start: int, stop: int):
    """Rows start:stop of a dense array or CSR tuple (a view; CSR offsets stay absolute)."""
    if isinstance(X, tuple):
        return X[0], X[1], X[2][start : stop + 1], X[3]
    return X[start:stop]


def _gather_buffer(X, order: np.ndarray, batch_size: int, workspace: Workspace):
    """The buffer the epoch kernel gathers shuffled batches into: dense rows, or CSR arrays sized this epoch."""
    if not isinstance(X, tuple):
        rows = workspace.batch_size if order.size else 1  # unshuffled epochs read X in place: a stub suffices
        held = workspace.X_batch
        if not (
            writable(held, dtype=X.dtype) and held.ndim == 2 and held.shape[0] >= rows and held.shape[1] == X.shape[1]
        ):
            held = workspace.X_batch = np.empty((rows, X.shape[1]), X.dtype)
        return held
    data, indices, indptr, _ = X
    need = 0
    if order.size:  # the largest number of stored values in any batch of this epoch's order
        row_counts = np.diff(indptr)[order]
        need = int(np.add.reduceat(row_counts, np.arange(0, order.size, batch_size)).max())
    held = workspace.sparse_batch
    sizes, dtypes = (need, need, workspace.batch_size + 1), (data.dtype, indices.dtype, indptr.dtype)
    if not (
        isinstance(held, tuple)
        and len(held) == 3
        and all(writable(a, dtype=t) and a.ndim == 1 and a.size >= k for a, k, t in zip(held, sizes, dtypes))
    ):
        held = (
            np.empty(need, data.dtype),
            np.empty(need, indices.dtype),
            np.empty(workspace.batch_size + 1, indptr.dtype),
        )
        workspace.sparse_batch = held
    return held


def _as_generator(rng) -> np.random.Generator | np.random.RandomState:
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    return np.random.default_rng(rng)

"""Training on a Dask cluster: exact distributed L-BFGS, and data-parallel SGD/Adam by model averaging.

``MLPClassifier.fit`` and ``MLPRegressor.fit`` come here when X is a ``dask.array.Array`` (a
``distributed.Client`` must be active). X stays where it lives, block by block on the workers; the targets are
gathered on the client (one label or value per row) and sent back as blocks aligned with X's.

``solver="lbfgs"`` is exact (the way Spark MLlib trains its perceptron). Every L-BFGS evaluation broadcasts the
flat parameter vector; each block computes the sum of its losses and gradients with fastbp's compiled kernels
(:meth:`fastbp.Network.loss_and_gradients`); the client adds the sums, adds the L2 term, and scipy steps. The
result is single-machine lbfgs on the same data up to the order of floating-point sums.

``solver="sgd"`` or ``"adam"`` is synchronous model averaging ("local SGD"), an approximation. Each round
every block trains ``average_every`` mini-batches of its own rows, starting from the same parameters and
optimizer state; the client averages parameters and optimizer state, weighted by the rows each block used.
An epoch ends when every block has used all its rows. With one block this is single-machine training; with
more, the blocks' steps are averaged instead of applied in sequence, so results differ from single-machine
training (measured in ``bench/dask_scaling.py``).

A failure anywhere (a worker dying with data that cannot be recomputed, divergence, bad input) raises on the
client; the estimator is fitted on a private clone and updated only when training has finished, so it is
never left half-updated.
"""

from __future__ import annotations

import copy
import time

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state

from fastbp._interrupt import deferred_interrupt
from fastbp.network import Network

DEFAULT_AVERAGE_EVERY = 8


def _get_client(client):
    if client is not None:
        return client
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        raise RuntimeError("fitting on a Dask array needs a running distributed.Client") from None


def _row_blocks(array, chunks, client):
    """Futures of the row blocks of a dask array (or a numpy array cut like X), in order."""
    import dask.array as da

    if not isinstance(array, da.Array):
        array = da.from_array(np.asarray(array), chunks=(chunks,) + tuple((s,) for s in np.shape(array)[1:]))
    array = array.rechunk((chunks,) + tuple((s,) for s in array.shape[1:]))
    return client.compute(list(array.to_delayed().ravel()))


def _block_loss_gradient(X, Y, weights, params, spec):
    """(weighted loss sum, weighted gradient sum without L2, weight sum) of one block, on a worker."""
    rows = X.shape[0]
    if rows == 0:
        return 0.0, np.zeros(params.size), 0.0
    net = Network(*spec[:4], **spec[4])
    net.params[:] = params
    loss, gradient = net.loss_and_gradients(X, Y, weights, alpha=0.0)
    total = float(rows if weights is None else np.sum(weights, dtype=np.float64))
    return loss * total, gradient.astype(np.float64) * total, total


def _local_steps(X, Y, weights, start, seed, state, spec, batch_size, average_every, alpha):
    """Train ``average_every`` mini-batches of this block from ``start``; return the new state and the loss sum."""
    params, optimizer = copy.deepcopy(state)
    order = np.arange(X.shape[0]) if seed is None else np.random.default_rng(seed).permutation(X.shape[0])
    rows = order[start : start + average_every * batch_size]
    net = Network(*spec[:4], **spec[4])
    net.params[:] = params
    # dropout masks: a seed of its own for each block and stretch of batches, fixed by the epoch's seeds
    dropout_seed = int(np.random.default_rng([seed or 0, start]).integers(2**32)) if any(net.dropout) else None
    loss = net.train_epoch(
        X, Y, batch_size, optimizer, order=rows, sample_weight=weights, alpha=alpha, dropout_seed=dropout_seed
    )
    return net.params, optimizer, loss * len(rows), len(rows)


def _average(results):
    """Row-weighted average of parameters and of every optimizer state array (Adam's step count: the most)."""
    rows = np.array([r[3] for r in results], dtype=np.float64)
    share = rows / rows.sum()
    params = sum(s * r[0].astype(np.float64) for s, r in zip(share, results))
    optimizer = copy.deepcopy(results[0][1])
    for name in ("velocity", "m", "v"):
        if getattr(optimizer, name, None) is not None:
            setattr(optimizer, name, sum(s * getattr(r[1], name).astype(np.float64) for s, r in zip(share, results)))
    if hasattr(optimizer, "t"):
        optimizer.t = max(r[1].t for r in results)
    return params, optimizer


def fit_dask(estimator, X, y, sample_weight=None, *, client=None, average_every: int = DEFAULT_AVERAGE_EVERY):
    """Fit a fastbp estimator on a Dask array (see the module docstring); returns the estimator.

    Parameters
    ----------
    estimator : fastbp.MLPClassifier or fastbp.MLPRegressor
    X : dask.array.Array of shape (n_samples, n_features)
        Stays on the workers; its row chunks are the units of work.
    y : dask or numpy array of shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : dask or numpy array of shape (n_samples,), optional
    client : distributed.Client, optional
        Defaults to the current client.
    average_every : int
        Mini-batches each block trains between two averagings (sgd and adam only).

    Returns
    -------
    estimator
    """
    import dask.array as da

    client = _get_client(client)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D dask array, got {X.ndim}D")
    if estimator.early_stopping:
        raise ValueError("early_stopping is not supported on Dask arrays; hold out a validation set yourself")
    if estimator.learning_rate == "cosine":
        raise ValueError("learning_rate='cosine' is not supported on Dask arrays (blocks step independently)")
    if int(average_every) < 1:
        raise ValueError(f"average_every must be >= 1, got {average_every}")
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    X = X.astype(dtype).rechunk({1: -1})
    if not bool(da.isfinite(X).all().compute()):
        raise ValueError("Input X contains NaN or infinity.")
    y_local = np.asarray(y.compute() if isinstance(y, da.Array) else y)
    if y_local.shape[0] != X.shape[0]:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: {[X.shape[0], len(y_local)]}")
    work = clone(estimator)
    if "_callback_fit_ctx" in estimator.__dict__:  # callbacks see the user's estimator; no data (it is on Dask)
        work._callbacks = (estimator, estimator._callback_fit_ctx, None, None)
    Y = _encode_targets(work, y_local, dtype)
    chunks = X.chunks[0]
    xs = client.compute(list(X.to_delayed().ravel()))
    ys = _row_blocks(Y, chunks, client)
    ws = [None] * len(xs) if sample_weight is None else _row_blocks(np.asarray(sample_weight, dtype), chunks, client)
    hidden = list(np.atleast_1d(work.hidden_layer_sizes))
    if min(hidden) <= 0:
        raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
    work.n_features_in_ = X.shape[1]
    work.n_outputs_ = Y.shape[1]
    work._check_layer_options(len(hidden))
    work._random_state = check_random_state(work.random_state)
    work._initialize([X.shape[1], *hidden, Y.shape[1]], dtype)
    net = work._network()
    spec = (net.layer_sizes, net.hidden_activations, net.output, net.dtype, net.options())
    if work.solver == "lbfgs":
        _fit_lbfgs(work, net, xs, ys, ws, spec, client)
    else:
        _fit_averaged(work, net, xs, ys, ws, chunks, spec, client, int(average_every))
    work.__dict__.pop("_callbacks", None)
    estimator.__dict__.update({k: v for k, v in work.__dict__.items() if k not in estimator.get_params()})
    return estimator


def _encode_targets(work, y, dtype) -> np.ndarray:
    if is_classifier(work):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        work._label_binarizer = LabelBinarizer().fit(y)
        work.classes_ = work._label_binarizer.classes_
        Y = work._label_binarizer.transform(y)
    else:
        Y = y.reshape(len(y), -1)
        if not np.isfinite(Y.astype(np.float64)).all():
            raise ValueError("Input y contains NaN or infinity.")
        if work.loss == "poisson" and (Y < 0).any():
            raise ValueError("Some value(s) of y are negative which is not allowed for Poisson regression.")
    return np.ascontiguousarray(Y, dtype=dtype)


def _fit_lbfgs(work, net, xs, ys, ws, spec, client):
    n_weights, alpha = net.n_weights, float(work.alpha)

    def loss_and_gradient(flat):
        params = client.scatter(flat.astype(net.dtype), broadcast=True)
        parts = client.gather(client.map(_block_loss_gradient, xs, ys, ws, params=params, spec=spec, pure=False))
        total = sum(p[2] for p in parts)
        weights = flat[:n_weights]
        loss = (sum(p[0] for p in parts) + 0.5 * alpha * float(weights @ weights)) / total
        gradient = sum(p[1] for p in parts)
        gradient[:n_weights] += alpha * weights
        return loss, gradient / total

    work._run_lbfgs(net, loss_and_gradient)


def _fit_averaged(work, net, xs, ys, ws, chunks, spec, client, average_every):
    n = sum(chunks)
    batch_size = work._batch_size(min(c for c in chunks if c > 0))
    optimizer = work._make_optimizer()
    optimizer.initialize(net.params)
    work._optimizer = optimizer
    work.n_iter_ = 0
    with deferred_interrupt() as interrupted:
        _averaged_epochs(work, net, xs, ys, ws, chunks, spec, client, average_every, batch_size, n, interrupted)


def _averaged_epochs(work, net, xs, ys, ws, chunks, spec, client, average_every, batch_size, n, interrupted):
    """The epoch loop of model-averaged training; the bookkeeping after each epoch is the estimator's."""
    for _ in range(work.max_iter):
        started = time.perf_counter()
        seeds = (
            [int(s) for s in work._random_state.randint(0, 2**31 - 1, len(xs))] if work.shuffle else [None] * len(xs)
        )
        position = [0] * len(xs)
        epoch_loss = 0.0
        learning_rate = work._optimizer.learning_rate
        subtask = work._subtask_begin("epoch")
        while any(p < c for p, c in zip(position, chunks)):
            active = [i for i, (p, c) in enumerate(zip(position, chunks)) if p < c]
            state = client.scatter((net.params, work._optimizer), broadcast=True)
            futures = [
                client.submit(
                    _local_steps,
                    xs[i],
                    ys[i],
                    ws[i],
                    position[i],
                    seeds[i],
                    state,
                    spec,
                    batch_size,
                    average_every,
                    float(work.alpha),
                    pure=False,
                )  # fmt: skip
                for i in active
            ]
            results = client.gather(futures)
            params, averaged = _average(results)
            net.params[:] = params
            averaged.learning_rate = work._optimizer.learning_rate  # schedules live on the client
            work._optimizer = _cast_state(averaged, net.dtype)
            for i, result in zip(active, results):
                position[i] += result[3]
                epoch_loss += result[2]
        if work._epoch_done(
            (epoch_loss / n, n, time.perf_counter() - started, learning_rate), None, subtask, interrupted
        ):
            break


def _cast_state(optimizer, dtype):
    for name in ("velocity", "m", "v"):
        if getattr(optimizer, name, None) is not None:
            setattr(optimizer, name, np.ascontiguousarray(getattr(optimizer, name), dtype=dtype))
    return optimizer

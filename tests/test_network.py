"""Network and its kernels against finite differences and the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ACTIVATIONS, OUTPUTS, make_problem, reference_twin, rel_error, tolerance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastbp
from fastbp.reference import ReferenceAdam, ReferenceSGD
from fastbp.reference import train_epoch as reference_train_epoch


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("hidden", ACTIVATIONS)
@pytest.mark.parametrize("weighted,alpha", [(False, 0.0), (True, 0.3)])
def test_gradient_matches_finite_differences(output, hidden, weighted, alpha):
    net, X, Y, w = make_problem((3, 5, 4, 3), hidden, output, n=7, seed=1, weighted=weighted)
    loss, grad = net.loss_and_gradients(X, Y, w, alpha)
    numeric = np.empty_like(grad)
    h = 1e-6
    for i in range(net.params.size):
        saved = net.params[i]
        net.params[i] = saved + h
        up = net.loss_and_gradients(X, Y, w, alpha)[0]
        net.params[i] = saved - h
        down = net.loss_and_gradients(X, Y, w, alpha)[0]
        net.params[i] = saved
        numeric[i] = (up - down) / (2 * h)
    assert rel_error(grad, numeric) < 1e-6
    assert loss == pytest.approx(reference_twin(net).loss_and_gradients(X, Y, w, alpha)[0], rel=1e-12)


shapes = st.tuples(
    st.integers(1, 6),  # input features (1 included)
    st.lists(st.sampled_from([1, 2, 7, 33, 300]), min_size=0, max_size=3),  # hidden widths (1 and wide)
    st.integers(1, 4),  # outputs
    st.integers(1, 23),  # rows (1 included)
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=shapes, output=st.sampled_from(OUTPUTS), hidden=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 99))
def test_forward_and_gradients_match_reference(dtype, shape, output, hidden, seed):
    n_in, widths, n_out, n = shape
    if output == "log_loss":  # softmax
        n_out = max(n_out, 2)
    net, X, Y, w = make_problem((n_in, *widths, n_out), hidden, output, n, dtype, seed, weighted=seed % 2 == 1)
    ref = reference_twin(net)
    out = net.forward(X)
    assert out.dtype == dtype
    assert rel_error(out, ref.forward(X)[-1]) < tolerance(dtype)
    loss, grad = net.loss_and_gradients(X, Y, w, alpha=0.01)
    ref_loss, grad_W, grad_b = ref.loss_and_gradients(X, Y, w, alpha=0.01)
    assert grad.dtype == dtype
    assert loss == pytest.approx(float(ref_loss), rel=tolerance(dtype), abs=tolerance(dtype))
    expected = np.concatenate([g.ravel() for g in grad_W + grad_b])
    assert rel_error(grad, expected) < tolerance(dtype)


OPTIMIZERS = {
    "sgd": (lambda: fastbp.SGD(0.05, momentum=0.0), lambda: ReferenceSGD(0.05, momentum=0.0)),
    "momentum": (lambda: fastbp.SGD(0.05, 0.9, nesterov=False), lambda: ReferenceSGD(0.05, 0.9, nesterov=False)),
    "nesterov": (lambda: fastbp.SGD(0.05, 0.8, nesterov=True), lambda: ReferenceSGD(0.05, 0.8, nesterov=True)),
    "adam": (lambda: fastbp.Adam(0.01), lambda: ReferenceAdam(0.01)),
}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=shapes,
    batch_size=st.integers(1, 9),
    output=st.sampled_from(OUTPUTS),
    hidden=st.sampled_from(ACTIVATIONS),
    seed=st.integers(0, 99),
)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_epochs_match_reference_batch_by_batch(dtype, name, shape, batch_size, output, hidden, seed):
    """Whole-epoch kernel == reference stepping batch by batch in the same order (partial last batch too).

    Within the tolerance, or within 100x of how far the reference itself moves when its starting weights are
    nudged by a few roundings: some trajectories amplify rounding ~1000x an epoch (seen: 300 logistic units,
    Nesterov, huber, batch 1: 2e-14, 2e-11, 1.5e-9 relative after epochs 1-3, the same before and after the
    parallel step), and no summation order can be held to 1e-10 there.
    """
    n_in, widths, n_out, n = shape
    if output == "log_loss":  # softmax
        n_out = max(n_out, 2)
    net, X, Y, w = make_problem((n_in, *widths, n_out), hidden, output, n, dtype, seed, weighted=seed % 3 == 0)
    ref, nudged = reference_twin(net), reference_twin(net)
    for W in nudged.coefs:
        W *= 1 + 4 * np.finfo(dtype).eps
    make_fast, make_ref = OPTIMIZERS[name]
    opt, ref_opt, nudged_opt = make_fast(), make_ref(), make_ref()
    rng = np.random.default_rng(seed)
    for _ in range(3):
        order = rng.permutation(n)
        with np.errstate(all="ignore"):
            ref_loss = reference_train_epoch(ref, X, Y, batch_size, ref_opt, order, w, alpha=0.05)
            nudged_loss = reference_train_epoch(nudged, X, Y, batch_size, nudged_opt, order, w, alpha=0.05)
        ref_finite = np.isfinite(ref_loss) and all(np.isfinite(p).all() for p in ref.params)
        if not ref_finite:  # e.g. exp output over 300 units: both must see the divergence
            with pytest.raises(fastbp.DivergenceError):
                net.train_epoch(X, Y, batch_size, opt, order=order, sample_weight=w, alpha=0.05)
            return
        loss = net.train_epoch(X, Y, batch_size, opt, order=order, sample_weight=w, alpha=0.05)
        if ref_loss > 1e6:  # exploding but finite (seen: 300 logistic units, Nesterov, loss 2e19): each step
            # amplifies rounding, so float32 runs drift apart by more than the tolerance; same order, stop here
            assert loss == pytest.approx(ref_loss, rel=1e-2)
            return
        spread = abs(nudged_loss - ref_loss) if np.isfinite(nudged_loss) else 0.0
        assert loss == pytest.approx(ref_loss, rel=tolerance(dtype), abs=tolerance(dtype) + 100 * spread)
    expected = np.concatenate([p.ravel() for p in ref.coefs + ref.intercepts])
    nudged_params = np.concatenate([p.ravel() for p in nudged.coefs + nudged.intercepts])
    assert net.params.dtype == dtype
    assert rel_error(net.params, expected) < 10 * tolerance(dtype) + 100 * rel_error(nudged_params, expected)


def test_unshuffled_epoch_reads_rows_in_order(dtype):
    net, X, Y, _ = make_problem((5, 6, 3), "relu", "softmax", 17, dtype)
    twin = fastbp.Network((5, 6, 3), "relu", "softmax", dtype=dtype)
    twin.params[:] = net.params
    net.train_epoch(X, Y, 4, fastbp.Adam(), shuffle=False)
    twin.train_epoch(X, Y, 4, fastbp.Adam(), order=np.arange(17))
    np.testing.assert_array_equal(net.params, twin.params)


def test_read_only_input_trains_without_copy():
    net, X, Y, _ = make_problem((5, 6, 3), "relu", "softmax", 17)
    X.setflags(write=False)
    before = X.copy()
    net.train_epoch(X, Y, 4, fastbp.SGD(), shuffle=False)
    net.train_epoch(X, Y, 4, fastbp.SGD(), shuffle=True, rng=0)
    np.testing.assert_array_equal(X, before)


def test_divergence_raises_and_restores_parameters():
    net, X, Y, _ = make_problem((4, 8, 2), "relu", "identity", 40)
    X *= 1e3
    before = net.params.copy()
    opt = fastbp.SGD(learning_rate=1e6, momentum=0.0)
    with pytest.raises(fastbp.DivergenceError, match="inf or NaN"):
        for _ in range(5):
            before = net.params.copy()
            net.train_epoch(X, Y, 8, opt, shuffle=False)
    np.testing.assert_array_equal(net.params, before)
    assert np.isfinite(net.params).all()


def test_same_rng_gives_identical_parameters():
    results = []
    for _ in range(2):
        net, X, Y, _ = make_problem((6, 9, 3), "tanh", "softmax", 50)
        net.train_epoch(X, Y, 7, fastbp.Adam(), rng=np.random.default_rng(3))
        results.append(net.params.copy())
    np.testing.assert_array_equal(*results)


def test_initialization_draws_like_scikit_learn():
    """Layer by layer, weights then biases, uniform(+-sqrt(6 / (fan_in + fan_out))), 2 instead of 6 for logistic."""
    for activation, factor in [("relu", 6.0), ("logistic", 2.0)]:
        net = fastbp.Network((4, 5, 3), activation, "softmax").initialize(random_state=np.random.RandomState(7))
        expected = np.random.RandomState(7)
        for (fan_in, fan_out), W, b in zip([(4, 5), (5, 3)], net.coefs, net.intercepts):
            bound = np.sqrt(factor / (fan_in + fan_out))
            np.testing.assert_array_equal(W, expected.uniform(-bound, bound, (fan_in, fan_out)))
            np.testing.assert_array_equal(b, expected.uniform(-bound, bound, fan_out))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fastbp.Network((3,)), "at least two"),
        (lambda: fastbp.Network((3, 0, 2)), "at least two positive"),
        (lambda: fastbp.Network((3, 4, 2), "swish"), "unknown activation"),
        (lambda: fastbp.Network((3, 4, 2), ["relu", "tanh"]), "need 1 activations"),
        (lambda: fastbp.Network((3, 4, 2), output="sigmoid"), "unknown output"),
        (lambda: fastbp.Network((3, 2), dtype=np.int32), "float32 or float64"),
    ],
)
def test_bad_construction_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("sparse", [False, True])
def test_forward_in_chunks_and_of_no_rows(dtype, sparse, monkeypatch):
    """Above PREDICT_CHUNK_ROWS rows, forward and hidden run chunk by chunk (the last one not full) and match
    the reference; no rows give an empty output (range() refused the zero chunk size before)."""
    import scipy.sparse

    net, X, _, _ = make_problem((5, 7, 6, 3), "tanh", "softmax", 11, dtype)
    layers = reference_twin(net).forward(X)  # X, then every layer's outputs: hidden 0, hidden 1, output
    monkeypatch.setattr(fastbp.network, "PREDICT_CHUNK_ROWS", 4)
    as_input = scipy.sparse.csr_matrix if sparse else np.ascontiguousarray
    cases = [(net.forward, layers[3]), (lambda X: net.hidden(X, 0), layers[1]), (lambda X: net.hidden(X, 1), layers[2])]
    for call, expected in cases:
        assert rel_error(call(as_input(X)), expected) < tolerance(dtype)
        assert rel_error(call(as_input(X[:3])), expected[:3]) < tolerance(dtype)  # one call
        empty = call(as_input(X[:0]))
        assert empty.shape == (0, expected.shape[1]) and empty.dtype == dtype


def test_bad_inputs_are_refused():
    net, X, Y, _ = make_problem((3, 4, 2), "relu", "softmax", 10)
    with pytest.raises(ValueError, match="shape"):
        net.forward(X[:, :2])
    with pytest.raises(TypeError, match="dtype"):
        net.forward(X.astype(np.float32))
    with pytest.raises(ValueError, match="Y must have shape"):
        net.loss_and_gradients(X, Y[:5])
    with pytest.raises(ValueError, match="batch_size"):
        net.train_epoch(X, Y, 0, fastbp.SGD())
    with pytest.raises(ValueError, match="at most once"):
        net.train_epoch(X, Y, 3, fastbp.SGD(), order=np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="rows of X"):
        net.train_epoch(X, Y, 3, fastbp.SGD(), order=np.array([0, 10]))
    with pytest.raises(ValueError, match="sample_weight"):
        net.train_epoch(X, Y, 3, fastbp.SGD(), sample_weight=np.ones(3))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("shuffle", [False, True])
def test_sparse_input_matches_dense(dtype, name, shuffle):
    import scipy.sparse

    rng = np.random.default_rng(5)
    X = (rng.normal(size=(37, 9)) * (rng.random((37, 9)) < 0.25)).astype(dtype)
    X[3] = 0  # an empty row
    net, _, Y, w = make_problem((9, 6, 4), "tanh", "softmax", 37, dtype, weighted=True)
    twin = fastbp.Network((9, 6, 4), "tanh", "softmax", dtype=dtype)
    twin.params[:] = net.params
    make_fast, _ = OPTIMIZERS[name]
    opt, twin_opt = make_fast(), make_fast()
    for epoch in range(2):
        loss = net.train_epoch(X, Y, 5, opt, shuffle, rng=epoch, sample_weight=w, alpha=0.1)
        csr = scipy.sparse.csr_matrix(X)
        twin_loss = twin.train_epoch(csr, Y, 5, twin_opt, shuffle, rng=epoch, sample_weight=w, alpha=0.1)
        assert twin_loss == pytest.approx(loss, rel=tolerance(dtype))
    assert rel_error(twin.params, net.params) < 10 * tolerance(dtype)
    assert rel_error(twin.forward(scipy.sparse.csc_matrix(X)), net.forward(X)) < tolerance(dtype)


def test_workspace_reused_across_unshuffled_and_shuffled_epochs():
    net, X, Y, _ = make_problem((5, 6, 3), "relu", "softmax", 23)
    twin = fastbp.Network((5, 6, 3), "relu", "softmax")
    twin.params[:] = net.params
    shared = net.workspace(4)
    opt, twin_opt = fastbp.Adam(), fastbp.Adam()
    for shuffle in (False, True, False):
        net.train_epoch(X, Y, 4, opt, shuffle, rng=1, workspace=shared)
        twin.train_epoch(X, Y, 4, twin_opt, shuffle, rng=1)
    np.testing.assert_array_equal(net.params, twin.params)


def test_sparse_workspace_reused_with_a_larger_batch():
    """Regression: CSR gather buffers must fit the workspace's capacity, not the first call's batch size."""
    import scipy.sparse

    net, X, Y, _ = make_problem((6, 5, 3), "relu", "softmax", 40)
    X[1:] = 0  # one stored row: every batch size needs the same value buffers, only the row offsets grow
    twin = fastbp.Network((6, 5, 3), "relu", "softmax")
    twin.params[:] = net.params
    shared = net.workspace(16)
    opt, twin_opt = fastbp.SGD(0.1), fastbp.SGD(0.1)
    for batch_size in (4, 16):
        net.train_epoch(scipy.sparse.csr_matrix(X), Y, batch_size, opt, rng=batch_size, workspace=shared)
        twin.train_epoch(X, Y, batch_size, twin_opt, rng=batch_size)
    np.testing.assert_allclose(net.params, twin.params, rtol=1e-12, atol=1e-14)


def test_order_over_a_subset_trains_on_those_rows_in_place(dtype):
    """Training on order = some rows of X equals training on a copy of those rows (how early stopping works)."""
    net, X, Y, w = make_problem((5, 7, 3), "tanh", "softmax", 40, dtype, weighted=True)
    twin = fastbp.Network((5, 7, 3), "tanh", "softmax", dtype=dtype)
    twin.params[:] = net.params
    subset = np.random.default_rng(0).permutation(40)[:29]
    opt, twin_opt = fastbp.Adam(0.01), fastbp.Adam(0.01)
    loss = net.train_epoch(X, Y, 6, opt, order=subset, sample_weight=w, alpha=0.1)
    twin_loss = twin.train_epoch(X[subset], Y[subset], 6, twin_opt, shuffle=False, sample_weight=w[subset], alpha=0.1)
    assert loss == pytest.approx(twin_loss, rel=tolerance(dtype))
    assert rel_error(net.params, twin.params) < tolerance(dtype)


@pytest.mark.parametrize("shuffle", [False, True])
def test_workspace_of_another_network_is_refused(shuffle):
    """Regression: a 784-256-128-10 workspace passed to a 784-32-100 network corrupted the heap."""
    big = fastbp.Network((30, 20, 12, 4), dtype=np.float32).initialize(0)
    small = fastbp.Network((30, 6, 25), dtype=np.float32).initialize(0)
    X = np.random.default_rng(0).normal(size=(40, 30)).astype(np.float32)
    Y = np.eye(25, dtype=np.float32)[np.arange(40) % 25]
    before = small.params.copy()
    for workspace in (big.workspace(16), small.workspace(4), fastbp.Network((30, 6, 25)).workspace(16)):
        with pytest.raises(ValueError, match="workspace does not fit"):
            small.train_epoch(X, Y, 16, fastbp.Adam(), shuffle, rng=0, workspace=workspace)
    np.testing.assert_array_equal(small.params, before)
    tampered = small.workspace(16)
    tampered.acts = tampered.acts[:10]
    with pytest.raises(ValueError, match="workspace does not fit"):
        small.train_epoch(X, Y, 16, fastbp.Adam(), shuffle, rng=0, workspace=tampered)
    # a gather buffer left by another network is replaced, not written past its end
    reused = small.workspace(16)
    reused.X_batch = np.empty((16, 3), np.float32)
    reused.sparse_batch = (np.empty(1, np.float32), np.empty(1, np.int32), np.empty(2, np.int32))
    twin = fastbp.Network((30, 6, 25), dtype=np.float32)
    twin.params[:] = small.params
    assert small.train_epoch(X, Y, 16, fastbp.Adam(), shuffle, rng=0, workspace=reused) == twin.train_epoch(
        X, Y, 16, fastbp.Adam(), shuffle, rng=0
    )
    np.testing.assert_array_equal(small.params, twin.params)


def test_reassigned_params_and_optimizer_state_are_checked():
    net, X, Y, _ = make_problem((5, 4, 3), "relu", "softmax", 12)
    adam = fastbp.Adam()
    adam.m, adam.v = np.zeros(net.params.size), np.zeros(3)  # state of another size: reset, never written past
    net.train_epoch(X, Y, 4, adam, rng=0)
    assert adam.v.shape == net.params.shape and adam.t == 3
    net.params = np.zeros(7)
    for call in (lambda: net.forward(X), lambda: net.train_epoch(X, Y, 4, fastbp.SGD(), rng=0)):
        with pytest.raises(ValueError, match="params must be"):
            call()


def test_malformed_sparse_input_is_refused():
    import scipy.sparse

    net, X, Y, _ = make_problem((5, 4, 3), "relu", "softmax", 3)
    bad = scipy.sparse.csr_matrix((np.ones(2), np.array([0, 99]), np.array([0, 1, 2, 2])), shape=(3, 5))
    for call in (lambda: net.forward(bad), lambda: net.train_epoch(bad, Y, 2, fastbp.SGD(), rng=0)):
        with pytest.raises(ValueError, match="invalid sparse X"):
            call()

"""Beyond scikit-learn's MLP: activations, per-layer activations, dropout, robust and quantile losses.

The gradient checks and the reference comparisons of every activation x loss pair run in test_network.py
(parametrised by the registries); here: dropout against the NumPy reference with the same masks, dropout's
statistics and determinism, the estimators' new options, and what each loss predicts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from conftest import make_problem, reference_twin, rel_error, tolerance
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastbp
from fastbp import MLPClassifier, MLPRegressor
from fastbp.kernels.activations import ACTIVATIONS
from fastbp.kernels.dropout import dropout_forward
from fastbp.kernels.losses import LOSSES
from fastbp.reference import ReferenceAdam, ReferenceSGD, batch_key, dropout_mask
from fastbp.reference import train_epoch as reference_train_epoch


@pytest.mark.parametrize("hidden", ["relu", "tanh", "gelu", "softplus"])
@pytest.mark.parametrize("loss", ["log_loss", "huber"])
def test_dropout_gradient_matches_finite_differences_and_reference(hidden, loss):
    """With a fixed mask key the dropped network is a deterministic function: its gradient is checkable."""
    net, X, Y, w = make_problem((4, 7, 6, 3), hidden, loss, n=9, seed=2, weighted=True, dropout=[0.3, 0.5])
    key = 12345
    value, grad = net.loss_and_gradients(X, Y, w, 0.2, dropout_seed=key)
    numeric = np.empty_like(grad)
    h = 1e-6
    for i in range(net.params.size):
        saved = net.params[i]
        net.params[i] = saved + h
        up = net.loss_and_gradients(X, Y, w, 0.2, dropout_seed=key)[0]
        net.params[i] = saved - h
        down = net.loss_and_gradients(X, Y, w, 0.2, dropout_seed=key)[0]
        net.params[i] = saved
        numeric[i] = (up - down) / (2 * h)
    assert rel_error(grad, numeric) < 1e-6
    ref_loss, grad_W, grad_b = reference_twin(net).loss_and_gradients(X, Y, w, 0.2, dropout_key=key)
    assert value == pytest.approx(ref_loss, rel=1e-12)
    assert rel_error(grad, np.concatenate([g.ravel() for g in grad_W + grad_b])) < 1e-10
    assert value != pytest.approx(net.loss_and_gradients(X, Y, w, 0.2)[0], rel=1e-6)  # the masks did something


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_dropout_epochs_match_reference_with_the_same_masks(dtype, optimizer, batch_size):
    """Whole compiled epochs with dropout == the reference stepping batch by batch with the same masks."""
    net, X, Y, w = make_problem((3, 9, 1, 33, 2), ["silu", "relu", "elu"], "log_loss", 23, dtype, seed=4,
                                dropout=[0.25, 0.0, 0.6])  # fmt: skip
    ref = reference_twin(net)
    if optimizer == "sgd":
        opt, ref_opt = fastbp.SGD(0.05, 0.9), ReferenceSGD(0.05, 0.9)
    else:
        opt, ref_opt = fastbp.Adam(0.01), ReferenceAdam(0.01)
    rng = np.random.default_rng(0)
    for seed in (11, 2**32 - 1, 0):
        order = rng.permutation(len(X))
        loss = net.train_epoch(X, Y, batch_size, opt, order=order, alpha=0.01, dropout_seed=seed)
        ref_loss = reference_train_epoch(ref, X, Y, batch_size, ref_opt, order, None, alpha=0.01, dropout_seed=seed)
        assert loss == pytest.approx(ref_loss, rel=tolerance(dtype))
    expected = np.concatenate([p.ravel() for p in ref.coefs + ref.intercepts])
    assert net.params.dtype == dtype
    assert rel_error(net.params, expected) < 10 * tolerance(dtype)


def test_dropout_drops_the_expected_fraction_and_scales_the_rest(dtype):
    rate = 0.3
    A = np.ones((200, 500), dtype)
    dropout_forward(A, round(rate * 2**32), dtype(1 / (1 - rate)), 987654321)
    dropped = (A == 0).mean()
    # 100,000 units: the binomial standard deviation of the fraction is 0.0014; 0.01 is 7 of them
    assert abs(dropped - rate) < 0.01
    np.testing.assert_array_equal(A[A != 0], dtype(1 / (1 - rate)))
    assert A.dtype == dtype
    # masks of different layers and batches are independent: agreement p^2 + (1-p)^2, not 1
    masks = [dropout_mask(batch_key(5, b), layer, (200, 500), rate) for b in (0, 1) for layer in (0, 1)]
    for other in masks[1:]:
        assert abs((masks[0] == other).mean() - (rate**2 + (1 - rate) ** 2)) < 0.01
    # the kernel's mask is the reference's (key of layer 0 in batch key 987654321 is not the raw key: compare
    # through dropout_mask's definition on one layer instead)
    from fastbp.kernels.dropout import layer_key

    for layer in range(8):  # layer 3's key product passes 2^63 in int64: it must wrap as the reference's uint64
        B = np.ones((3, 4), dtype)
        dropout_forward(B, round(rate * 2**32), dtype(1), layer_key(2**32 - 1, layer))
        np.testing.assert_array_equal(B != 0, dropout_mask(2**32 - 1, layer, (3, 4), rate))


def test_dropout_is_off_in_prediction_and_validation_scores():
    X = np.random.default_rng(0).normal(size=(150, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clf = MLPClassifier((16, 8), dropout=0.5, max_iter=5, random_state=0, early_stopping=True, n_iter_no_change=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X[:100], y[:100], X_val=X[100:], y_val=y[100:])
    ref = reference_twin(clf._net)
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], ref.forward(X)[-1][:, 0], rtol=1e-12)
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_allclose(clf.hidden_features(X, 0), ref.forward(X)[1], rtol=1e-12)
    # the kept (best) epoch's validation score is the accuracy of the network without dropout
    assert clf.best_validation_score_ == clf.score(X[100:], y[100:])


def test_one_random_stream_for_the_permutation_and_the_dropout_seed():
    """With an int rng, the epoch's order and its dropout seed come from one generator, one after the other
    (two generators seeded alike gave correlated draws)."""
    net, X, Y, _ = make_problem((3, 5, 2), "relu", "log_loss", 11, dropout=0.4)
    ref = reference_twin(net)
    generator = np.random.default_rng(7)
    order = generator.permutation(len(X))
    seed = int(generator.integers(2**32, dtype=np.int64))
    loss = net.train_epoch(X, Y, 4, fastbp.SGD(0.1, 0.0), rng=7)
    assert loss == pytest.approx(reference_train_epoch(ref, X, Y, 4, ReferenceSGD(0.1, 0.0), order, dropout_seed=seed))
    np.testing.assert_allclose(net.params, np.concatenate([p.ravel() for p in ref.coefs + ref.intercepts]))


SCRIPT = textwrap.dedent(
    """
    import hashlib, numpy as np, fastbp
    X = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    clf = fastbp.MLPClassifier((12, 7), activation=["gelu", "leaky_relu"], dropout=[0.2, 0.4], max_iter=4,
                               random_state=3).fit(X, y)
    print(hashlib.sha256(b"".join(c.tobytes() for c in clf.coefs_ + clf.intercepts_)).hexdigest())
    """
)


def test_same_seed_gives_the_same_weights_in_other_processes_and_thread_counts():
    digests = set()
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1
    # and another seed gives other masks, so other weights
    X = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    kwargs = dict(activation=["gelu", "leaky_relu"], dropout=[0.2, 0.4], max_iter=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier((12, 7), random_state=3, **kwargs).fit(X, y)
        b = MLPClassifier((12, 7), random_state=3, **kwargs).fit(X, y)
        c = MLPClassifier((12, 7), random_state=4, **kwargs).fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_without_dropout_the_random_stream_is_scikit_learns():
    """dropout=0 draws nothing: the same weights as before dropout existed (scikit-learn's batch order)."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    X = np.random.default_rng(1).normal(size=(150, 4))
    y = (X[:, 0] > 0).astype(int)
    kwargs = dict(hidden_layer_sizes=(6,), max_iter=3, random_state=0, solver="sgd", batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPClassifier(**kwargs).fit(X, y), SkMLP(**kwargs).fit(X, y)
    np.testing.assert_allclose(ours.coefs_[0], theirs.coefs_[0], rtol=1e-6, atol=1e-9)


def test_per_layer_activations_reach_the_network_and_predictions():
    X = np.random.default_rng(2).normal(size=(80, 3))
    y = X @ [1.0, -2.0, 0.5]
    reg = MLPRegressor(
        hidden_layer_sizes=(5, 4, 3), activation=["tanh", "gelu", "leaky_relu"], negative_slope=0.2, max_iter=20,
        random_state=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    assert reg._net.hidden_activations == ("tanh", "gelu", "leaky_relu")
    ref = reference_twin(reg._net)
    assert ref.negative_slope == 0.2
    np.testing.assert_allclose(reg.predict(X), ref.forward(X)[-1][:, 0], rtol=1e-12)


@pytest.mark.parametrize(
    "estimator, message",
    [
        (MLPClassifier((4, 3), activation=["relu"]), "activation lists 1 values but the network has 2"),
        (MLPClassifier((4,), activation=["swish"]), "unknown activation 'swish'"),
        (MLPClassifier((4, 3), dropout=[0.1, 0.2, 0.3]), "dropout lists 3 values"),
        (MLPClassifier((4,), dropout=[1.0]), r"dropout rates must be in \[0, 1\)"),
        (MLPClassifier((4,), dropout=0.2, solver="lbfgs"), "dropout .* needs solver='sgd' or 'adam'"),
        (MLPRegressor(loss="quantile"), "loss='quantile' needs the quantile"),
        (MLPRegressor(loss="quantile", quantile=1.0), "quantile"),
        (MLPRegressor(loss="huber", delta=0.0), "delta"),
        (MLPClassifier(activation="leaky_relu", negative_slope=-0.1), "negative_slope"),
        (MLPClassifier(activation="softmax"), "activation"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(estimator, message):
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match=message):
        estimator.fit(X, y)


def test_network_refuses_a_loss_of_another_output():
    with pytest.raises(ValueError, match="the 'softmax' output takes the loss 'log_loss', not 'huber'"):
        fastbp.Network((3, 2), "relu", "softmax", loss="huber")
    with pytest.raises(ValueError, match="unknown activation"):
        fastbp.Network((3, 4, 2), "swish")


def _noisy_line(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 1))
    noise = rng.exponential(1.0, n)  # skewed: mean 1, median log 2, quantiles differ from both
    return X, 2 * X[:, 0] + noise


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_quantile_loss_predicts_the_quantile(q):
    X, y = _noisy_line()
    reg = MLPRegressor(
        hidden_layer_sizes=(16,), loss="quantile", quantile=q, learning_rate_init=0.01, max_iter=60, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    below = (y <= reg.predict(X)).mean()
    assert abs(below - q) < 0.03  # a fitted pinball loss puts a fraction q of the targets below the fit


def test_absolute_error_predicts_the_median_and_huber_resists_outliers():
    X, y = _noisy_line(seed=1)
    kwargs = dict(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=60, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        median = MLPRegressor(loss="absolute_error", **kwargs).fit(X, y)
        assert abs((y <= median.predict(X)).mean() - 0.5) < 0.03
        outliers = y.copy()
        outliers[::20] += 50.0  # 5% of the targets far off
        clean = 2 * X[:, 0] + np.log(2)
        huber = MLPRegressor(loss="huber", delta=1.0, **kwargs).fit(X, outliers)
        squared = MLPRegressor(loss="squared_error", **kwargs).fit(X, outliers)
    assert np.abs(huber.predict(X) - clean).mean() < 0.5 * np.abs(squared.predict(X) - clean).mean()


@pytest.mark.parametrize("loss", ["absolute_error", "huber", "quantile"])
def test_robust_losses_are_summed_over_outputs(loss):
    X = np.random.default_rng(3).normal(size=(50, 4))
    Y = np.c_[X[:, 0], -X[:, 1]]
    reg = MLPRegressor(hidden_layer_sizes=(6,), loss=loss, quantile=0.7, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y)
    per_element = LOSSES[loss].reference_loss
    ref_loss = per_element(Y, reg.predict(X), reg._net.loss_parameter).sum(axis=1).mean()
    weights = reg._net.params[: reg._net.n_weights]
    expected = ref_loss + 0.5 * reg.alpha * weights @ weights / len(X)
    assert reg._net.loss_and_gradients(X, Y, alpha=reg.alpha)[0] == pytest.approx(expected, rel=1e-12)
    assert reg.predict(X).shape == Y.shape


def test_every_activation_loss_and_optimizer_is_a_choice_everywhere():
    """Names come from the registries: the estimators and the CLI accept every one (model files: see
    test_persistence's round trips over the registries' names)."""
    from fastbp import cli

    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    choices = {action.dest: action.choices for action in train._actions}
    activation = next(action for action in train._actions if action.dest == "activation")
    assert activation.metavar.split("|") == list(ACTIVATIONS)
    assert [activation.type(name) for name in ACTIVATIONS] == list(ACTIVATIONS)
    assert set(choices["loss"]) == {n for n, e in LOSSES.items() if e.output in ("identity", "exp")}
    constraints = MLPRegressor._parameter_constraints
    assert constraints["loss"][0].options == set(choices["loss"])
    assert MLPClassifier._parameter_constraints["activation"][0].options == set(ACTIVATIONS)
    from fastbp.optimizers import OPTIMIZERS

    assert set(choices["solver"]) == set(OPTIMIZERS) == {"sgd", "adam"}
    assert MLPClassifier._parameter_constraints["solver"][0].options == {"lbfgs", *OPTIMIZERS}


torch = None
try:  # PyTorch is optional: where it is installed, each activation and loss equals torch's
    import torch
    import torch.nn.functional as F
except ImportError:
    pass

TORCH_ACTIVATIONS = {
    "identity": lambda z: z,
    "logistic": torch.sigmoid if torch else None,
    "tanh": torch.tanh if torch else None,
    "relu": F.relu if torch else None,
    "leaky_relu": (lambda z: F.leaky_relu(z, 0.01)) if torch else None,
    "elu": F.elu if torch else None,
    "softplus": F.softplus if torch else None,
    "gelu": F.gelu if torch else None,
    "silu": F.silu if torch else None,
}


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activations_and_derivatives_equal_pytorchs(name):
    """The kernels' forward and backward of each activation against torch.autograd, float64."""
    assert set(TORCH_ACTIVATIONS) == set(ACTIVATIONS)
    net, X, Y, _ = make_problem((3, 40, 1), name, "squared_error", n=25, seed=5)
    X = X * 3  # reach every region: large negative, near 0, large positive
    loss, grad = net.loss_and_gradients(X, Y)
    W1, b1, W2, b2 = (
        torch.tensor(a.copy(), requires_grad=True)
        for a in (*net.coefs[:1], *net.intercepts[:1], *net.coefs[1:], *net.intercepts[1:])
    )  # noqa: E501
    hidden = TORCH_ACTIVATIONS[name](torch.tensor(X) @ W1 + b1)
    out = hidden @ W2 + b2
    torch_loss = 0.5 * ((out - torch.tensor(Y)) ** 2).sum() / len(X)
    torch_loss.backward()
    np.testing.assert_allclose(net.hidden(X, 0), hidden.detach().numpy(), rtol=1e-6, atol=1e-12)
    assert loss == pytest.approx(torch_loss.item(), rel=1e-6)
    expected = np.concatenate([t.grad.numpy().ravel() for t in (W1, W2, b1, b2)])
    assert rel_error(grad, expected) < 1e-6


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("loss", ["squared_error", "absolute_error", "huber", "quantile", "poisson", "log_loss"])
def test_losses_equal_pytorchs_and_one_training_step_matches(loss):
    net, X, Y, _ = make_problem((4, 6, 2), "gelu", loss, n=30, seed=6)
    params = [torch.tensor(a.copy(), requires_grad=True) for a in (*net.coefs, *net.intercepts)]
    W1, W2, b1, b2 = params
    z = F.gelu(torch.tensor(X) @ W1 + b1) @ W2 + b2
    y = torch.tensor(Y)
    per_sample = {
        "squared_error": lambda: 0.5 * ((z - y) ** 2).sum(1),
        "absolute_error": lambda: F.l1_loss(z, y, reduction="none").sum(1),
        "huber": lambda: F.huber_loss(z, y, reduction="none", delta=0.7).sum(1),
        "quantile": lambda: torch.maximum(0.3 * (y - z), (0.3 - 1) * (y - z)).sum(1),
        "poisson": lambda: (
            F.poisson_nll_loss(z, y, log_input=True, full=False, reduction="none").sum(1)
            + (torch.special.xlogy(y, y) - y).sum(1)
        ),
        "log_loss": lambda: F.cross_entropy(z, y, reduction="none"),
    }[loss]()
    torch_loss = per_sample.mean()
    torch_loss.backward()
    value, grad = net.loss_and_gradients(X, Y)
    assert value == pytest.approx(torch_loss.item(), rel=1e-6)
    assert rel_error(grad, np.concatenate([p.grad.numpy().ravel() for p in params])) < 1e-6
    # one Adam step of a small network equals torch.optim.Adam's. scikit-learn's Adam (fastbp's) adds epsilon
    # to sqrt(v), torch to sqrt(v / (1 - beta_2^t)): the same step at t = 1 with torch's eps = 1e-8 / sqrt(0.001)
    opt = torch.optim.Adam(params, lr=0.01, eps=1e-8 / np.sqrt(1 - 0.999))
    opt.step()
    net.train_epoch(X, Y, len(X), fastbp.Adam(0.01), shuffle=False)
    np.testing.assert_allclose(net.params, np.concatenate([p.detach().numpy().ravel() for p in params]), rtol=1e-6)


# The estimator checks with every new option at a non-default value in at least one setting.
_DROPOUT_WEIGHTS = (
    "dropout masks are drawn per row of a batch: a row repeated twice gets two masks, a row of weight 2 one, "
    "so the two fits see different noise"
)


def _expected_failures(estimator):
    if not np.any(estimator.dropout):
        return {}
    return {f"check_sample_weight_equivalence_on_{kind}_data": _DROPOUT_WEIGHTS for kind in ("dense", "sparse")}


@parametrize_with_checks(
    [
        MLPClassifier(random_state=0, activation=["gelu"], dropout=0.1),
        MLPClassifier(random_state=0, activation="leaky_relu", negative_slope=0.2, solver="sgd", max_iter=50),
        MLPRegressor(random_state=0, loss="huber", delta=0.5, activation="silu", dropout=[0.2]),
        MLPRegressor(random_state=0, loss="quantile", quantile=0.5, activation="elu"),
        MLPRegressor(random_state=0, loss="absolute_error", activation="softplus"),
    ],
    expected_failed_checks=_expected_failures,
)
def test_scikit_learn_estimator_checks_with_the_new_options(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_warm_start_follows_changed_options_from_the_same_weights():
    """set_params between fits (e.g. dropout off to fine-tune) must reach the network, from the same weights."""
    X = np.random.default_rng(5).normal(size=(60, 4))
    y = np.arange(60) % 2
    clf = MLPClassifier((6,), dropout=0.3, activation="tanh", max_iter=2, random_state=0, warm_start=True,
                        shuffle=False, batch_size=60, alpha=0.0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        twin = fastbp.Network((4, 6, 1), "gelu", "logistic").set_parameters(clf.coefs_, clf.intercepts_)
        clf.set_params(dropout=0.0, activation="gelu", max_iter=1)
        clf.fit(X, y)
    assert clf._net.dropout == (0.0,) and clf._net.hidden_activations == ("gelu",)
    twin.train_epoch(X, y.reshape(-1, 1).astype(float), 60, fastbp.Adam(), shuffle=False)  # fit: a fresh Adam
    np.testing.assert_array_equal(clf._net.params, twin.params)

"""Training you can watch and steer: history_, validation data, class weights, hidden features, and two
scikit-learn behaviours (divergence under early stopping, stratified-split messages)."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp.reference import ReferenceNetwork

rng = np.random.default_rng(0)
X = rng.normal(size=(300, 6))
y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0, "yes", "no")
y3 = (X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0).astype(int)  # imbalanced, three classes


def quiet(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(*args, **kwargs)


# -- hidden features ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True])
def test_hidden_features_are_the_reference_activations(dtype, sparse):
    model = quiet(fastbp.MLPClassifier((7, 5, 4), activation="tanh", max_iter=5, random_state=0), X.astype(dtype), y3)
    reference = ReferenceNetwork(
        [c.astype(np.float64) for c in model.coefs_], [b.astype(np.float64) for b in model.intercepts_],
        ["tanh"] * 3, "softmax",
    )  # fmt: skip
    expected = reference.forward(X.astype(dtype).astype(np.float64))
    data = scipy.sparse.csr_matrix(X.astype(dtype)) if sparse else X.astype(dtype)
    for layer, index in [(0, 1), (1, 2), (2, 3), (-1, 3), (-3, 1)]:
        features = model.hidden_features(data, layer=layer)
        assert features.dtype == dtype and features.shape == expected[index].shape
        np.testing.assert_allclose(features, expected[index], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    with pytest.raises(ValueError, match="layer must be"):
        model.hidden_features(X, layer=3)


def test_hidden_features_feed_a_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    network = quiet(fastbp.MLPClassifier((16,), max_iter=200, random_state=0), X, y3)
    pipeline = make_pipeline(FunctionTransformer(network.hidden_features), LogisticRegression()).fit(X, y3)
    direct = LogisticRegression().fit(network.hidden_features(X), y3)
    np.testing.assert_array_equal(pipeline.predict(X), direct.predict(network.hidden_features(X)))
    assert pipeline.score(X, y3) > 0.8


# -- history_ -------------------------------------------------------------------------------------------------
def test_history_records_every_epoch_with_its_validation_loss():
    X_val, y_val = X[:80] + 0.2, y[:80]
    model = fastbp.MLPClassifier((8,), early_stopping=True, max_iter=12, n_iter_no_change=100, random_state=0)
    quiet(model, X, y, X_val=X_val, y_val=y_val)
    history = model.history_
    assert [r["iteration"] for r in history] == list(range(1, 13))
    assert [r["loss"] for r in history] == model.loss_curve_
    assert [r["validation_score"] for r in history] == model.validation_scores_
    assert [r["validation_loss"] for r in history] == model.validation_loss_curve_
    assert all(r["learning_rate"] == 1e-3 and r["seconds"] > 0 and r["samples_per_second"] > 0 for r in history)
    # the kept weights are the best epoch's: the reference's loss of them on X_val is that epoch's record
    best = int(np.argmax(model.validation_scores_))
    reference = ReferenceNetwork(model.coefs_, model.intercepts_, ["relu"], "logistic")
    loss = reference.loss_and_gradients(X_val, (y_val == "yes").astype(float)[:, None], alpha=model.alpha)[0]
    assert model.validation_loss_curve_[best] == pytest.approx(loss, rel=1e-10)


def test_history_without_validation_and_for_lbfgs_survives_save_and_pickle(tmp_path):
    for solver in ("sgd", "lbfgs"):
        model = quiet(
            fastbp.MLPRegressor(hidden_layer_sizes=(5,), solver=solver, max_iter=6, random_state=0), X, X[:, 0]
        )
        assert len(model.history_) == model.n_iter_ >= 1
        assert "validation_loss" not in model.history_[0]
        if solver == "sgd":
            assert model.validation_loss_curve_ is None and model.history_[-1]["loss"] == model.loss_
        fastbp.save(model, tmp_path / "m.fastbp")
        assert fastbp.load(tmp_path / "m.fastbp").history_ == model.history_
        assert pickle.loads(pickle.dumps(model)).history_ == model.history_


def test_learning_rate_in_history_follows_the_schedule():
    model = quiet(fastbp.MLPClassifier((5,), solver="sgd", learning_rate="invscaling", learning_rate_init=0.1,
                                       max_iter=4, n_iter_no_change=100, random_state=0), X, y)  # fmt: skip
    rates = [r["learning_rate"] for r in model.history_]
    assert rates[0] == 0.1 and rates[1] == pytest.approx(0.1 / (300 + 1) ** 0.5)


# -- X_val / y_val --------------------------------------------------------------------------------------------
def test_validation_data_messages_are_histgradientboostings():
    from sklearn.ensemble import HistGradientBoostingClassifier

    for kwargs in ({"X_val": X[:10]}, {"y_val": y[:10]}):
        with pytest.raises(ValueError) as expected:
            HistGradientBoostingClassifier(early_stopping=True).fit(X, y, **kwargs)
        with pytest.raises(ValueError) as got:
            fastbp.MLPClassifier(early_stopping=True).fit(X, y, **kwargs)
        assert str(got.value) == str(expected.value)
    with pytest.raises(ValueError, match="early_stopping is False"):
        fastbp.MLPClassifier().fit(X, y, X_val=X[:10], y_val=y[:10])
    with pytest.raises(ValueError, match="lbfgs"):
        fastbp.MLPClassifier(solver="lbfgs", early_stopping=True).fit(X, y, X_val=X[:10], y_val=y[:10])
    assert "class_weight" in fastbp.MLPClassifier.__doc__  # the docstring stays the class's first statement
    with pytest.raises(ValueError, match="not seen in y"):
        fastbp.MLPClassifier(early_stopping=True).fit(X, y, X_val=X[:3], y_val=["yes", "no", "maybe"])


@pytest.mark.parametrize("Model, target", [(fastbp.MLPClassifier, y), (fastbp.MLPRegressor, X[:, 0] * 3)])
def test_early_stopping_scores_the_given_validation_data(Model, target):
    X_val, y_val = X[:60] + 0.1, target[:60]
    weights = np.linspace(0.5, 2.0, 60)
    model = quiet(Model(hidden_layer_sizes=(8,), early_stopping=True, max_iter=30, random_state=0), X, target,
                  X_val=X_val, y_val=y_val, sample_weight_val=weights)  # fmt: skip
    assert model.t_ == model.n_iter_ * 300  # every training row trained on: nothing was split off
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.score(X_val, y_val, sample_weight=weights) == pytest.approx(model.best_validation_score_)


def test_validation_data_routes_through_a_pipeline():
    import sklearn
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    with sklearn.config_context(enable_metadata_routing=True):
        model = fastbp.MLPClassifier((8,), early_stopping=True, max_iter=20, random_state=0)
        model.set_fit_request(X_val=True, y_val=True)
        pipeline = Pipeline([("scale", StandardScaler()), ("mlp", model)], transform_input=["X_val"])
        quiet(pipeline, X * 10, y, X_val=X[:50] * 10, y_val=y[:50])
        scaled = pipeline["scale"].transform(X[:50] * 10)
        assert pipeline["mlp"].score(scaled, y[:50]) == pytest.approx(pipeline["mlp"].best_validation_score_)


# -- class_weight ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("class_weight", ["balanced", {0: 1.0, 1: 5.0, 2: 0.5}])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_class_weight_equals_scikit_learns_sample_weights(class_weight, solver):
    from sklearn.utils.class_weight import compute_sample_weight

    base = np.linspace(0.5, 1.5, 300)
    kw = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=8, random_state=0)
    weighted = quiet(fastbp.MLPClassifier(class_weight=class_weight, **kw), X, y3, sample_weight=base)
    reference = quiet(fastbp.MLPClassifier(**kw), X, y3, sample_weight=base * compute_sample_weight(class_weight, y3))
    for a, b in zip(weighted.coefs_, reference.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    balanced = quiet(fastbp.MLPClassifier((16,), class_weight="balanced", max_iter=300, random_state=0), X, y3)
    plain = quiet(fastbp.MLPClassifier((16,), max_iter=300, random_state=0), X, y3)
    rare = np.argmin(np.bincount(y3))
    assert (balanced.predict(X) == rare).sum() >= (plain.predict(X) == rare).sum()


def test_class_weight_for_multilabel_takes_one_dict_per_label():
    from sklearn.utils.class_weight import compute_sample_weight

    Y = np.c_[X[:, 0] > 0, X[:, 1] > 1].astype(int)
    class_weight = [{0: 1.0, 1: 2.0}, {0: 1.0, 1: 10.0}]
    kw = dict(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    weighted = quiet(fastbp.MLPClassifier(class_weight=class_weight, **kw), X, Y)
    reference = quiet(fastbp.MLPClassifier(**kw), X, Y, sample_weight=compute_sample_weight(class_weight, Y))
    np.testing.assert_allclose(weighted.coefs_[0], reference.coefs_[0], rtol=1e-12)


def test_balanced_class_weight_is_refused_by_partial_fit_and_dicts_save(tmp_path):
    with pytest.raises(ValueError, match="partial_fit"):
        fastbp.MLPClassifier(class_weight="balanced").partial_fit(X, y3, classes=[0, 1, 2])
    model = quiet(fastbp.MLPClassifier((4,), class_weight={0: 1.0, 1: 2.0, 2: 3.0}, max_iter=3), X, y3)
    fastbp.save(model, tmp_path / "m.fastbp")
    assert fastbp.load(tmp_path / "m.fastbp").class_weight == {0: 1.0, 1: 2.0, 2: 3.0}


# -- two scikit-learn behaviours ------------------------------------------------------------------------------
def test_divergence_under_early_stopping_keeps_the_best_epoch():
    """scikit-learn #29504: with early stopping a diverging fit keeps its best validation weights."""
    target = X[:, 0] * 1e3
    kw = dict(hidden_layer_sizes=(20,), solver="sgd", learning_rate_init=0.5, momentum=0.9, max_iter=30)
    with pytest.raises(fastbp.DivergenceError):
        fastbp.MLPRegressor(random_state=0, **kw).fit(X, target)
    with pytest.warns(ConvergenceWarning, match="diverged"):
        model = fastbp.MLPRegressor(early_stopping=True, random_state=0, **kw).fit(X, target)
    assert all(np.isfinite(c).all() for c in model.coefs_) and np.isfinite(model.predict(X)).all()


def test_stratified_split_errors_name_the_classes_as_scikit_learn():
    from sklearn.neural_network import MLPClassifier

    small, labels = X[:4], [0, 0, 0, 1]
    with pytest.raises(ValueError) as expected:
        MLPClassifier(early_stopping=True).fit(small, labels)
    with pytest.raises(ValueError) as got:
        fastbp.MLPClassifier(early_stopping=True).fit(small, labels)
    assert str(got.value) == str(expected.value) and "['True']" in str(got.value)


# -- callbacks ------------------------------------------------------------------------------------------------
callback = pytest.importorskip("sklearn.callback")


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_scoring_monitor_sees_every_epoch_as_a_refit_would(solver):
    """One subtask per epoch (lbfgs: per iteration); the score logged for epoch k is the score of the model a
    fit with max_iter=k ends with."""
    monitor = callback.ScoringMonitor(scoring="accuracy")
    kw = dict(hidden_layer_sizes=(6,), solver=solver, learning_rate_init=0.01, random_state=0, tol=0)
    quiet(fastbp.MLPClassifier(max_iter=4, **kw).set_callbacks(monitor), X, y)
    rows = monitor.get_logs().data
    name = "lbfgs-iteration" if solver == "lbfgs" else "epoch"
    epochs = [r for r in rows if r["task_name"] == name]
    assert len(epochs) == 4
    for k, row in enumerate(epochs, start=1):
        refit = quiet(fastbp.MLPClassifier(max_iter=k, **kw), X, y)
        assert row["accuracy"] == refit.score(X, y)


class StopAfter:
    """A FitCallback that asks to stop after a number of epochs."""

    def __init__(self, epochs):
        self.epochs, self.seen = epochs, 0

    def setup(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        if context.task_name in ("epoch", "lbfgs-iteration"):
            self.seen += 1
            return self.seen >= self.epochs
        return False

    def teardown(self, estimator, context):
        pass


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_a_callback_that_asks_to_stop_ends_training_consistently(solver):
    model = fastbp.MLPClassifier((6,), solver=solver, max_iter=50, random_state=0).set_callbacks(StopAfter(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # stopping on request is not a convergence failure
        model.fit(X, y)
    assert model.n_iter_ == 3 and len(model.history_) == 3
    same = quiet(fastbp.MLPClassifier((6,), solver=solver, max_iter=3, random_state=0), X, y)
    np.testing.assert_array_equal(model.coefs_[0], same.coefs_[0])
    assert not hasattr(model, "_callback_fit_ctx") and not hasattr(model, "_callbacks")


def test_progress_bar_on_its_own_and_propagated_from_a_pipeline():
    pytest.importorskip("rich")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = quiet(fastbp.MLPClassifier((6,), max_iter=3).set_callbacks(callback.ProgressBar()), X, y)
    assert model.n_iter_ == 3
    pipeline = make_pipeline(StandardScaler(), fastbp.MLPClassifier((6,), max_iter=3, random_state=0))
    quiet(pipeline.set_callbacks(callback.ProgressBar()), X, y)
    assert pipeline[-1].n_iter_ == 3 and not hasattr(pipeline[-1], "_callback_fit_ctx")
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(fastbp.MLPClassifier((5,), max_iter=3), {"alpha": [1e-4, 1e-3]}, cv=2)
    quiet(search.set_callbacks(callback.ProgressBar(max_propagation_depth=None)), X, y)
    assert search.best_estimator_.n_iter_ == 3


# -- cosine schedule with warm-up -----------------------------------------------------------------------------
def _cosine_reference(lr, total, warmup):
    """The schedule written out step by step, as PyTorch's LinearLR + CosineAnnealingLR define it."""
    rates = []
    for step in range(total):
        if step < warmup:
            rates.append(lr * (1 / warmup + (1 - 1 / warmup) * step / max(warmup - 1, 1)))
        else:
            rates.append(lr * (1 + np.cos(np.pi * (step - warmup) / (total - warmup))) / 2)
    return np.array(rates)


def test_cosine_schedule_steps_every_mini_batch():
    model = fastbp.MLPRegressor(learning_rate="cosine", warmup_fraction=0.2, learning_rate_init=0.01, max_iter=5)
    steps = 300 // 32 + 1  # batch_size 32: 10 mini-batches per epoch
    model.set_params(batch_size=32)
    rates = np.concatenate([model._step_rates(epoch, steps) for epoch in range(5)])
    np.testing.assert_allclose(rates, _cosine_reference(0.01, 50, 10), rtol=1e-12)
    quiet(model.set_params(hidden_layer_sizes=(5,), random_state=0, n_iter_no_change=100), X, X[:, 0])
    epoch_means = [r["learning_rate"] for r in model.history_]
    np.testing.assert_allclose(epoch_means, rates.reshape(5, 10).mean(axis=1), rtol=1e-12)


@pytest.mark.parametrize("optimizer", [fastbp.SGD(0.1, 0.9, True), fastbp.Adam(0.01)], ids=["sgd", "adam"])
def test_per_batch_rates_inside_the_epoch_equal_one_call_per_batch(optimizer):
    """The compiled epoch applies rate k to batch k: the same as training batch by batch from Python."""
    import copy

    net = fastbp.Network((6, 5, 1), "tanh", "identity").initialize(0)
    twin = fastbp.Network((6, 5, 1), "tanh", "identity")
    twin.params[:] = net.params
    Y = X[:, :1]
    rates = np.linspace(0.02, 0.001, 10)
    first, second = copy.deepcopy(optimizer), copy.deepcopy(optimizer)
    net.train_epoch(X, Y, 32, first, shuffle=False, learning_rates=rates)
    for k, start in enumerate(range(0, 300, 32)):
        second.learning_rate = rates[k]
        twin.train_epoch(X[start : start + 32], Y[start : start + 32], 32, second, shuffle=False)
    np.testing.assert_array_equal(net.params, twin.params)
    with pytest.raises(ValueError, match="one per batch"):
        net.train_epoch(X, Y, 32, first, shuffle=False, learning_rates=rates[:5])


def test_cosine_schedule_matches_pytorch():
    torch = pytest.importorskip("torch")
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.01)
    warmup, total = 10, 50
    scheduler = torch.optim.lr_scheduler.SequentialLR(
        optimizer,
        [
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup - 1),
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup),
        ],
        milestones=[warmup],
    )
    expected = []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    model = fastbp.MLPRegressor(learning_rate="cosine", warmup_fraction=0.2, learning_rate_init=0.01, max_iter=5)
    rates = np.concatenate([model._step_rates(epoch, 10) for epoch in range(5)])
    np.testing.assert_allclose(rates, expected, rtol=1e-9)


def test_cosine_is_refused_by_partial_fit_and_adaptive_reaches_adam():
    with pytest.raises(ValueError, match="cosine"):
        fastbp.MLPRegressor(learning_rate="cosine").partial_fit(X, X[:, 0])
    model = quiet(fastbp.MLPRegressor(hidden_layer_sizes=(4,), learning_rate="adaptive", n_iter_no_change=2,
                                      tol=10.0, max_iter=20, random_state=0), X, X[:, 0])  # fmt: skip
    rates = [r["learning_rate"] for r in model.history_]
    assert rates[0] == 1e-3 and min(rates) < 1e-3  # every epoch "stalls" at tol=10: the rate is divided


def test_the_readme_history_plot_script_runs(tmp_path):
    pytest.importorskip("matplotlib")
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "docs" / "plot_history.py"
    out = subprocess.run([sys.executable, script, tmp_path / "h.png"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "best validation accuracy" in out.stdout

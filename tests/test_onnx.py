"""ONNX export: onnxruntime's outputs against fastbp's own predictions, for everything fastbp fits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp.kernels.activations import ACTIVATIONS
from fastbp.kernels.losses import LOSSES
from fastbp.onnx_export import ONNX_ACTIVATIONS

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

rng = np.random.default_rng(0)
X64 = rng.normal(size=(70, 4))
TARGETS = {
    "multiclass int": (fastbp.MLPClassifier, np.arange(70) % 3),
    "multiclass str": (fastbp.MLPClassifier, np.array(["ant", "bee", "cat"])[np.arange(70) % 3]),
    "binary": (fastbp.MLPClassifier, np.where(X64[:, 0] > 0, 5, -5)),
    "binary bool": (fastbp.MLPClassifier, X64[:, 1] > 0),
    "multilabel": (fastbp.MLPClassifier, (X64[:, :3] > 0).astype(int)),
    "one class": (fastbp.MLPClassifier, np.full(70, "only")),
    "regression": (fastbp.MLPRegressor, X64[:, 0] * 2 + 1),
    "multi-output regression": (fastbp.MLPRegressor, X64[:, :3] * [1, -2, 3]),
    "poisson": (fastbp.MLPRegressor, rng.poisson(2.0, 70).astype(float)),
}
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def _fit(kind, activation, dtype):
    Model, y = TARGETS[kind]
    params = dict(hidden_layer_sizes=(6, 5), activation=activation, max_iter=15, random_state=0)
    if kind == "poisson":
        params["loss"] = "poisson"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Model(**params).fit(X64.astype(dtype), y)


def _run(proto, X):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X})))


def _check(model, X, outputs, tolerance):
    if is_classifier(model):
        assert set(outputs) == {"label", "probabilities"}
        np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(X), rtol=tolerance, atol=tolerance)
        expected = model.predict(X)
        assert outputs["label"].shape == expected.shape
        np.testing.assert_array_equal(outputs["label"].astype(expected.dtype), expected)
    else:
        assert set(outputs) == {"variable"}
        expected = model.predict(X).reshape(len(X), -1)
        np.testing.assert_allclose(outputs["variable"], expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("kind", list(TARGETS))
def test_onnxruntime_predicts_what_fastbp_predicts(kind, activation, dtype):
    model = _fit(kind, activation, dtype)
    X = X64.astype(dtype)
    # onnxruntime's Erf is float32 only, so a float64 gelu model's export computes erf in float32
    tolerance = 1e-6 if activation == "gelu" and dtype == np.float64 else TOLERANCE[dtype]
    _check(model, X, _run(fastbp.to_onnx(model, X[:1]), X), tolerance)


def test_a_float32_model_on_float64_input_computes_in_float64():
    model = _fit("multiclass int", "tanh", np.float32)
    outputs = _run(fastbp.to_onnx(model, X64[:1]), X64)
    assert outputs["probabilities"].dtype == np.float64
    _check(model, X64, outputs, 1e-12)


def test_every_activation_and_output_fastbp_trains_has_an_onnx_operator():
    """A new activation or output in the kernels' registry must come with its export."""
    assert set(ONNX_ACTIVATIONS) == set(ACTIVATIONS)
    assert {entry.output for entry in LOSSES.values()} <= {"softmax", "logistic", "identity", "exp"}  # _emit's


def test_unexportable_models_and_arguments_are_refused():
    model = _fit("multiclass int", "relu", np.float64)
    with pytest.raises(ValueError, match="shape"):
        fastbp.to_onnx(model, X64[:, :2])
    with pytest.raises(ValueError, match="opset"):
        fastbp.to_onnx(model, X64, target_opset=11)
    with pytest.raises(TypeError, match="fastbp"):
        fastbp.to_onnx(object(), X64)
    dates = np.array(["2026-01-01", "2026-06-01"], dtype="datetime64[D]")[np.arange(70) % 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dated = fastbp.MLPClassifier((3,), max_iter=2).fit(X64, dates)
    with pytest.raises(ValueError, match="datetime64"):
        fastbp.to_onnx(dated, X64)


@pytest.mark.parametrize("kind", ["multiclass str", "binary", "multi-output regression"])
def test_skl2onnx_converts_fastbp_models_and_pipelines(kind):
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fastbp.register_skl2onnx()
    X = X64.astype(np.float32)
    Model, y = TARGETS[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = Model(hidden_layer_sizes=(6,), max_iter=15, random_state=0).fit(X, y)
        pipeline = make_pipeline(StandardScaler(), Model(hidden_layer_sizes=(6,), max_iter=15, random_state=0))
        pipeline.fit(X, y)
    options = {"zipmap": False} if Model is fastbp.MLPClassifier else None
    for estimator in (model, pipeline):
        proto = skl2onnx.to_onnx(estimator, X[:1], options=options)
        outputs = _run(proto, X)
        _check(estimator, X, outputs, 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_per_layer_activations_slope_and_robust_losses_export(dtype):
    X = X64.astype(dtype)
    model = fastbp.MLPRegressor(
        hidden_layer_sizes=(6, 5, 4), activation=["leaky_relu", "silu", "elu"], negative_slope=0.3,
        loss="quantile", quantile=0.8, max_iter=15, random_state=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, X64[:, 0] - X64[:, 2])
    _check(model, X, _run(fastbp.to_onnx(model, X[:1]), X), TOLERANCE[dtype])

"""ONNX export: ``fastbp.to_onnx`` and a converter registered with skl2onnx.

A fitted estimator becomes MatMul, Add and one activation node per layer, then the output activation and, for
classifiers, the label: what skl2onnx emits for scikit-learn's MLPs with ``zipmap=False``. Outputs are named
as skl2onnx names them: ``label`` and ``probabilities`` (a tensor) for classifiers, ``variable`` for
regressors. One builder (:func:`_emit`) writes the graph for both entry points through a two-method interface,
so ``fastbp.to_onnx`` and ``skl2onnx.to_onnx`` (also on a Pipeline holding a fastbp estimator) give the same
nodes.

Every hidden activation fastbp can train has a builder in :data:`ONNX_ACTIVATIONS` (a test checks it against
the kernels' registry, so a new activation cannot ship without its export): one ONNX operator where ONNX has
it, a few elementwise nodes otherwise (gelu from ``Erf``, which every opset from 13 has; silu as
``x * Sigmoid(x)``).

Needs the optional packages ``onnx`` (and ``skl2onnx`` for the registration): ``pip install fastbp[onnx]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _constant(graph, name, value, dtype):
    return graph.constant(name, np.array(value, dtype))


def _gelu(graph, h, i, net, dtype):
    """``h Phi(h) = h (1 + erf(h / sqrt 2)) / 2``. onnxruntime has Erf for float32 only: a float64 model
    computes that one function in float32 (relative error ~1e-7 in its outputs; everything else in float64)."""
    scaled = graph.node("Mul", [h, _constant(graph, f"inv_sqrt2_{i}", 1 / np.sqrt(2), dtype)], f"gelu_in_{i}")
    if dtype == np.float64:
        scaled = graph.node("Cast", [scaled], f"gelu_to_float_{i}", to=_tensor_type(np.dtype(np.float32)))
    erf = graph.node("Erf", [scaled], f"gelu_erf_{i}")
    if dtype == np.float64:
        erf = graph.node("Cast", [erf], f"gelu_to_double_{i}", to=_tensor_type(np.dtype(np.float64)))
    one_plus = graph.node("Add", [erf, _constant(graph, f"one_{i}", 1, dtype)], f"gelu_add_{i}")
    half_h = graph.node("Mul", [h, _constant(graph, f"half_{i}", 0.5, dtype)], f"gelu_half_{i}")
    return graph.node("Mul", [half_h, one_plus], f"gelu_{i}")


def _positive_or(graph, h, i, negative, name, dtype):
    """``h`` where h > 0, else ``negative``: Where/Greater, which onnxruntime has in float64 too (its
    LeakyRelu, Elu and Softplus are float32 only)."""
    zero = _constant(graph, f"{name}_zero_{i}", 0, dtype)
    return graph.node("Where", [graph.node("Greater", [h, zero], f"{name}_positive_{i}"), h, negative], f"{name}_{i}")


def _leaky_relu(graph, h, i, net, dtype):
    slope = _constant(graph, f"slope_{i}", net.negative_slope, dtype)
    return _positive_or(graph, h, i, graph.node("Mul", [h, slope], f"leaky_relu_negative_{i}"), "leaky_relu", dtype)


def _elu(graph, h, i, net, dtype):  # exp(min(h, 0)) - 1 where h <= 0
    zero, one = _constant(graph, f"elu_min_zero_{i}", 0, dtype), _constant(graph, f"elu_one_{i}", 1, dtype)
    exp = graph.node("Exp", [graph.node("Min", [h, zero], f"elu_min_{i}")], f"elu_exp_{i}")
    return _positive_or(graph, h, i, graph.node("Sub", [exp, one], f"elu_negative_{i}"), "elu", dtype)


def _softplus(graph, h, i, net, dtype):  # relu(h) + log(1 + exp(-|h|)), without overflow
    one = _constant(graph, f"softplus_one_{i}", 1, dtype)
    decay = graph.node("Exp", [graph.node("Neg", [graph.node("Abs", [h], f"softplus_abs_{i}")], f"softplus_neg_{i}")],
                       f"softplus_exp_{i}")  # fmt: skip
    log = graph.node("Log", [graph.node("Add", [one, decay], f"softplus_add_{i}")], f"softplus_log_{i}")
    return graph.node("Add", [graph.node("Relu", [h], f"softplus_relu_{i}"), log], f"softplus_{i}")


# name -> builder(graph, h, layer index, network, dtype) -> the value holding f(h)
ONNX_ACTIVATIONS: dict[str, Any] = {
    "identity": lambda graph, h, i, net, dtype: h,
    "logistic": lambda graph, h, i, net, dtype: graph.node("Sigmoid", [h], f"sigmoid_{i}"),
    "tanh": lambda graph, h, i, net, dtype: graph.node("Tanh", [h], f"tanh_{i}"),
    "relu": lambda graph, h, i, net, dtype: graph.node("Relu", [h], f"relu_{i}"),
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "softplus": _softplus,
    "gelu": _gelu,
    "silu": lambda graph, h, i, net, dtype: graph.node(
        "Mul", [h, graph.node("Sigmoid", [h], f"silu_sigmoid_{i}")], f"silu_{i}"
    ),
}
_OUTPUT_ACTIVATIONS: dict[str, str | None] = {"identity": None, "logistic": "Sigmoid", "exp": "Exp"}
DEFAULT_OPSET = 17
_MIN_OPSET = 13  # Softmax normalizes along one axis from opset 13 on


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastbp[onnx]'") from None
    return onnx


def _tensor_type(dtype: np.dtype) -> int:
    """The ONNX element type of a numpy dtype fastbp exports (features, probabilities and labels)."""
    onnx = _onnx()
    kinds = {"f": {4: onnx.TensorProto.FLOAT, 8: onnx.TensorProto.DOUBLE}, "i": {8: onnx.TensorProto.INT64}}
    if dtype.kind in "US":
        return onnx.TensorProto.STRING
    if dtype.kind == "b":
        return onnx.TensorProto.BOOL
    return kinds[dtype.kind][dtype.itemsize]


def _labels(classes: np.ndarray) -> np.ndarray:
    """Class labels as an ONNX-representable array: int64, float64, bool or str; anything else is refused."""
    if classes.dtype.kind in "iu":
        return classes.astype(np.int64)
    if classes.dtype.kind == "f":
        return classes.astype(np.float64)
    if classes.dtype.kind == "b":
        return classes
    if classes.dtype.kind in "US" or (classes.dtype == object and all(isinstance(c, str) for c in classes)):
        return classes.astype(str)
    raise ValueError(f"ONNX has no tensor type for class labels of dtype {classes.dtype}; relabel y to export")


def _compute_dtype(model, input_dtype) -> np.dtype:
    """float64 if either the input or the weights are float64, as ``predict`` computes."""
    return np.result_type(input_dtype, model.coefs_[0].dtype)


def _emit(graph, model, input_name: str, input_dtype: np.dtype) -> dict[str, str]:
    """Add the model's nodes to ``graph``; returns {output: name of the value holding it}.

    ``graph`` has ``constant(hint, array) -> name`` and ``node(op, inputs, hint, **attributes) -> name``.
    Computation runs in :func:`_compute_dtype`.
    """
    onnx = _onnx()
    state = model._fitted_state()
    net = model._network(state)
    dtype = _compute_dtype(model, input_dtype)
    h = input_name
    if np.dtype(input_dtype) != dtype:
        h = graph.node("Cast", [h], "cast_input", to=_tensor_type(dtype))
    for i, (W, b) in enumerate(zip(net.coefs, net.intercepts)):
        h = graph.node("MatMul", [h, graph.constant(f"coef_{i}", W.astype(dtype))], f"matmul_{i}")
        h = graph.node("Add", [h, graph.constant(f"intercept_{i}", b.astype(dtype))], f"add_{i}")
        if i < len(net.hidden_activations):
            h = ONNX_ACTIVATIONS[net.hidden_activations[i]](graph, h, i, net, dtype)
        elif net.output == "softmax":
            h = graph.node("Softmax", [h], "softmax", axis=1)
        elif _OUTPUT_ACTIVATIONS[net.output] is not None:
            op = _OUTPUT_ACTIVATIONS[net.output]
            h = graph.node(op, [h], f"{op.lower()}_{i}")
    if "classes_" not in state:
        return {"variable": h}
    binarizer = state["_label_binarizer"]
    if binarizer.y_type_ == "multilabel-indicator":
        half = graph.constant("half", np.array(0.5, dtype))
        label = graph.node(
            "Cast", [graph.node("Greater", [h, half], "greater")], "label_int", to=onnx.TensorProto.INT64
        )
        return {"label": label, "probabilities": h}
    if binarizer.y_type_ == "binary":  # one logistic output p: probabilities [1 - p, p]
        one = graph.constant("one", np.array(1, dtype))
        h = graph.node("Concat", [graph.node("Sub", [one, h], "negative"), h], "probabilities", axis=1)
    classes = _labels(np.asarray(binarizer.classes_))
    if classes.size == 1:  # one class seen in fit: predicted whatever the probabilities say
        classes = np.repeat(classes, 2)
    index = graph.node("ArgMax", [h], "argmax", axis=1, keepdims=0)
    label = graph.node("Gather", [graph.constant("classes", classes), index], "label_gather", axis=0)
    return {"label": label, "probabilities": h}


class _ModelGraph:
    """The builder interface over a plain list of onnx nodes and initializers."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: list = []
        self._used: set[str] = {"X", "label", "probabilities", "variable"}  # the graph's own inputs and outputs

    def _name(self, hint: str) -> str:
        name, k = hint, 0
        while name in self._used:
            k += 1
            name = f"{hint}_{k}"
        self._used.add(name)
        return name

    def constant(self, hint: str, array: np.ndarray) -> str:
        onnx = _onnx()
        name = self._name(hint)
        if array.dtype.kind in "US":
            tensor = onnx.helper.make_tensor(name, onnx.TensorProto.STRING, array.shape, [s.encode() for s in array])
        else:
            tensor = onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
        self.initializers.append(tensor)
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attributes) -> str:
        output = self._name(hint)
        self.nodes.append(_onnx().helper.make_node(op, inputs, [output], name=self._name(f"{op}_node"), **attributes))
        return output


def to_onnx(model, X_sample, *, target_opset: int | None = None):
    """Export a fitted fastbp estimator as an ONNX model.

    Parameters
    ----------
    model : fastbp.MLPClassifier or fastbp.MLPRegressor
        Fitted.
    X_sample : array-like of shape (n_samples, n_features)
        Fixes the input's element type (float32 or float64) and checks the feature count; not stored.
    target_opset : int, optional
        ONNX opset of the default domain (13 or later); default 17, which onnxruntime and most tools support.

    Returns
    -------
    onnx.ModelProto
        Input ``X`` of shape (None, n_features). Classifiers output ``label`` (shape (None,), or (None,
        n_classes) of 0/1 for multilabel) and ``probabilities`` (None, n_classes), a tensor (no ZipMap);
        regressors output ``variable`` (None, n_outputs). Computed in float64 if X or the weights are float64,
        as ``predict`` does. Multilabel labels are dense even if the model was fitted on a sparse y.

    Examples
    --------
    >>> import onnxruntime  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession(fastbp.to_onnx(model, X[:1]).SerializeToString())  # doctest: +SKIP
    >>> labels, probabilities = session.run(None, {"X": X})  # doctest: +SKIP
    """
    onnx = _onnx()
    import fastbp

    if not isinstance(model, (fastbp.MLPClassifier, fastbp.MLPRegressor)):
        raise TypeError(f"to_onnx takes a fastbp MLPClassifier or MLPRegressor, got {type(model).__name__}")
    model._check_fitted()
    opset = DEFAULT_OPSET if target_opset is None else int(target_opset)
    if opset < _MIN_OPSET:
        raise ValueError(f"target_opset must be {_MIN_OPSET} or later (Softmax over one axis), got {opset}")
    X_sample = np.asarray(X_sample)
    if X_sample.ndim != 2 or X_sample.shape[1] != model.n_features_in_:
        raise ValueError(f"X_sample must have shape (n, {model.n_features_in_}), got {X_sample.shape}")
    input_dtype = X_sample.dtype if X_sample.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    graph = _ModelGraph()
    outputs = _emit(graph, model, "X", input_dtype)
    declared = []
    for name, value in outputs.items():  # final names as skl2onnx gives them
        graph.nodes.append(onnx.helper.make_node("Identity", [value], [name], name=graph._name(f"{name}_out")))
        declared.append(_value_info(name, model, _compute_dtype(model, input_dtype)))
    features = onnx.helper.make_tensor_value_info("X", _tensor_type(input_dtype), [None, model.n_features_in_])
    body = onnx.helper.make_graph(
        graph.nodes, f"fastbp_{type(model).__name__}", [features], declared, graph.initializers
    )
    proto = onnx.helper.make_model(
        body,
        opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="fastbp",
        producer_version=fastbp.__version__,
    )
    onnx.checker.check_model(proto)
    return proto


def _value_info(name: str, model, dtype: np.dtype) -> Any:
    """The declared type and shape of output ``name``."""
    onnx = _onnx()
    outputs = model.n_outputs_
    if name == "label":
        if model._label_binarizer.y_type_ == "multilabel-indicator":
            return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, [None, outputs])
        return onnx.helper.make_tensor_value_info(name, _tensor_type(_labels(np.asarray(model.classes_)).dtype), [None])
    width = 2 if name == "probabilities" and outputs == 1 else outputs
    return onnx.helper.make_tensor_value_info(name, _tensor_type(dtype), [None, width])


# -- skl2onnx ---------------------------------------------------------------------------------------------------
class _ContainerGraph:
    """The builder interface over skl2onnx's scope and container."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def constant(self, hint: str, array: np.ndarray) -> str:
        name = self.scope.get_unique_variable_name(hint)
        content = [s.encode() for s in array.ravel()] if array.dtype.kind in "US" else array.ravel()
        self.container.add_initializer(name, _tensor_type(array.dtype), list(array.shape), content)
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attributes) -> str:
        output = self.scope.get_unique_variable_name(hint)
        self.container.add_node(op, inputs, output, name=self.scope.get_unique_operator_name(op), **attributes)
        return output


def _skl2onnx_shapes(operator) -> None:
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    model = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    double_input = isinstance(operator.inputs[0].type, DoubleTensorType)
    dtype = _compute_dtype(model, np.float64 if double_input else np.float32)
    real = DoubleTensorType if dtype == np.float64 else FloatTensorType
    if not hasattr(model, "classes_"):
        operator.outputs[0].type = real([n, model.n_outputs_])
        return
    if model._label_binarizer.y_type_ == "multilabel-indicator":
        operator.outputs[0].type = Int64TensorType([n, model.n_outputs_])
    else:
        kind = _labels(np.asarray(model.classes_)).dtype.kind
        label_type = {"i": Int64TensorType, "f": DoubleTensorType, "b": BooleanTensorType}.get(kind, StringTensorType)
        operator.outputs[0].type = label_type([n])
    operator.outputs[1].type = real([n, max(2, model.n_outputs_)])


def _skl2onnx_convert(scope, operator, container) -> None:
    from skl2onnx.common.data_types import DoubleTensorType

    model = operator.raw_operator
    input_dtype = np.dtype(np.float64 if isinstance(operator.inputs[0].type, DoubleTensorType) else np.float32)
    outputs = _emit(_ContainerGraph(scope, container), model, operator.inputs[0].full_name, input_dtype)
    names = ["label", "probabilities"] if "label" in outputs else ["variable"]
    for variable, name in zip(operator.outputs, names):
        container.add_node(
            "Identity", [outputs[name]], variable.full_name, name=scope.get_unique_operator_name("Identity")
        )


def register_skl2onnx() -> None:
    """Teach skl2onnx to convert fastbp's estimators (``skl2onnx.to_onnx`` on a model or a Pipeline).

    Call once per process before converting; classifiers accept skl2onnx's ``zipmap`` option as its own
    classifiers do (``options={id(model): {"zipmap": False}}`` gives the probabilities tensor).
    """
    try:
        from skl2onnx import update_registered_converter
    except ImportError:
        raise ImportError("registering with skl2onnx needs skl2onnx: pip install 'fastbp[onnx]'") from None
    import fastbp

    options = {"zipmap": [True, False, "columns"], "nocl": [True, False]}
    update_registered_converter(
        fastbp.MLPClassifier, "FastbpMLPClassifier", _skl2onnx_shapes, _skl2onnx_convert, options=options
    )
    update_registered_converter(fastbp.MLPRegressor, "FastbpMLPRegressor", _skl2onnx_shapes, _skl2onnx_convert)

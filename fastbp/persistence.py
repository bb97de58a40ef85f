"""``fastbp.save`` / ``fastbp.load``: model files that never execute code when loaded.

A model file is a zip of ``.npy`` arrays (numpy's own format, read with ``allow_pickle=False``) plus one JSON
document (``metadata.json``): the estimator class, its parameters, the fitted attributes that are not arrays,
the dtype, fastbp's version and the format version. Loading reads only the member names it expects, checks
every declared array size against the file before reading it, and validates every field (layer shapes chain
up, dtypes are float32/float64, values are finite, names are known activations, the version is not newer);
anything wrong raises :class:`ModelFileError` and nothing else. Pickle and joblib keep working as usual, but
only ``load`` is safe for files from other people.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from typing import Any

import numpy as np

FORMAT_VERSION = 1
_MAX_METADATA_BYTES = 1 << 20
_MAX_ARRAY_BYTES = 1 << 32
_ACTIVATIONS = {"identity", "logistic", "tanh", "relu"}
_OUTPUTS = {"MLPClassifier": {"softmax", "logistic"}, "MLPRegressor": {"identity", "exp"}}
_FITTED_SCALARS = ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_", "loss_")
_FITTED_OPTIONAL = ("best_loss_", "loss_curve_", "validation_scores_", "best_validation_score_")


_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError, KeyError)
_READ_ERRORS += (TypeError, AttributeError, OverflowError, UnicodeDecodeError, RecursionError, MemoryError)


class ModelFileError(ValueError):
    """A model file is damaged, not a fastbp model, or from a newer format; nothing was loaded."""


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}  # inf / nan, which strict JSON cannot hold
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"float"} and value["float"] in ("inf", "-inf", "nan"):
        return float(value["float"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def save(estimator, path: str | os.PathLike) -> None:
    """Write a fitted fastbp estimator to ``path`` in the safe format.

    Parameters
    ----------
    estimator : fastbp.MLPClassifier or fastbp.MLPRegressor
        Fitted.
    path : str or path-like
        The file to write (conventionally ``*.fastbp``).
    """
    from sklearn.utils.validation import check_is_fitted

    import fastbp

    name = type(estimator).__name__
    if name not in _OUTPUTS or not isinstance(estimator, (fastbp.MLPClassifier, fastbp.MLPRegressor)):
        raise TypeError(f"fastbp.save takes a fastbp MLPClassifier or MLPRegressor, got {name}")
    check_is_fitted(estimator)
    params = estimator.get_params()
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None  # a RandomState object is not data; the fitted weights are saved
    params["hidden_layer_sizes"] = list(np.atleast_1d(params["hidden_layer_sizes"]).tolist())
    coefs, intercepts = estimator.coefs_, estimator.intercepts_
    meta: dict[str, Any] = {
        "format": "fastbp-model",
        "format_version": FORMAT_VERSION,
        "fastbp_version": fastbp.__version__,
        "class": name,
        "params": _json_safe(params),
        "dtype": np.result_type(*coefs).name,
        "n_weight_layers": len(coefs),
        "fitted": {
            k: _json_safe(getattr(estimator, k)) for k in _FITTED_SCALARS + _FITTED_OPTIONAL if hasattr(estimator, k)
        },
    }
    arrays = {f"coef_{i}": np.ascontiguousarray(c) for i, c in enumerate(coefs)}
    arrays |= {f"intercept_{i}": np.ascontiguousarray(b) for i, b in enumerate(intercepts)}
    if hasattr(estimator, "feature_names_in_"):
        arrays["feature_names_in"] = np.asarray(estimator.feature_names_in_, dtype=str)
    if name == "MLPClassifier":
        classes = np.asarray(estimator.classes_)
        if classes.dtype.kind not in "biuUf":
            classes = classes.astype(str)
        arrays["classes"] = classes
        meta["label_type"] = estimator._label_binarizer.y_type_
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps(meta, allow_nan=False))
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            archive.writestr(f"{key}.npy", buffer.getvalue())


def _read_array(archive: zipfile.ZipFile, key: str) -> np.ndarray:
    member = f"{key}.npy"
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise ModelFileError(f"missing array {key!r}") from None
    if info.file_size > _MAX_ARRAY_BYTES:
        raise ModelFileError(f"array {key!r} declares {info.file_size} bytes")
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)  # the header only, no data
        if dtype.hasobject:
            raise ModelFileError(f"array {key!r} holds Python objects, which are never loaded")
        declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if declared > info.file_size:
            raise ModelFileError(f"array {key!r} declares {declared} bytes in a {info.file_size}-byte member")
    with archive.open(info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def load(path: str | os.PathLike):
    """Read a model written by :func:`save`, checking every field; never executes code from the file.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    fastbp.MLPClassifier or fastbp.MLPRegressor
        Fitted, ready for ``predict``; its optimizer state is not saved, so ``partial_fit`` or a warm start
        after loading begins a fresh optimizer from the loaded weights.

    Raises
    ------
    ModelFileError
        On anything wrong with the file (and only this exception, for any content).
    """
    try:
        return _load(path)
    except ModelFileError:
        raise
    except _READ_ERRORS as error:
        raise ModelFileError(f"not a readable fastbp model file: {type(error).__name__}: {error}") from None


def _load(path):
    import fastbp

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("metadata.json") if "metadata.json" in archive.namelist() else None
        if info is None or info.file_size > _MAX_METADATA_BYTES:
            raise ModelFileError("no metadata.json (or an oversized one): not a fastbp model file")
        meta = json.loads(archive.read(info).decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != "fastbp-model":
            raise ModelFileError("not a fastbp model file")
        version = meta.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise ModelFileError(f"invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"this file has model format {version}, written by fastbp {meta.get('fastbp_version')}; this "
                f"fastbp ({fastbp.__version__}) reads up to format {FORMAT_VERSION}: upgrade fastbp"
            )
        name = meta.get("class")
        if name not in _OUTPUTS:
            raise ModelFileError(f"unknown model class {name!r}")
        n_layers = meta.get("n_weight_layers")
        if not isinstance(n_layers, int) or not 1 <= n_layers <= 1000:
            raise ModelFileError(f"invalid number of layers {n_layers!r}")
        expected = {f"coef_{i}.npy" for i in range(n_layers)} | {f"intercept_{i}.npy" for i in range(n_layers)}
        expected |= {"metadata.json", "feature_names_in.npy"} | ({"classes.npy"} if name == "MLPClassifier" else set())
        unexpected = set(archive.namelist()) - expected
        if unexpected:
            raise ModelFileError(f"unexpected members {sorted(unexpected)[:5]}")
        coefs = [_read_array(archive, f"coef_{i}") for i in range(n_layers)]
        intercepts = [_read_array(archive, f"intercept_{i}") for i in range(n_layers)]
        names = _read_array(archive, "feature_names_in") if "feature_names_in.npy" in archive.namelist() else None
        classes = _read_array(archive, "classes") if name == "MLPClassifier" else None
    estimator_type = getattr(fastbp, name)
    params = meta.get("params")
    if not isinstance(params, dict) or set(params) != set(estimator_type().get_params()):
        raise ModelFileError("parameters do not match the estimator's")
    params = {k: _from_json(v) for k, v in params.items()}
    params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    estimator = estimator_type(**params)
    try:
        estimator._validate_params()
    except ValueError as error:
        raise ModelFileError(f"invalid parameter: {error}") from None
    _check_weights(meta, params, coefs, intercepts, name)
    fitted = meta.get("fitted")
    if not isinstance(fitted, dict) or not set(_FITTED_SCALARS) <= set(fitted):
        raise ModelFileError("missing fitted attributes")
    if fitted["out_activation_"] not in _OUTPUTS[name]:
        raise ModelFileError(f"output activation {fitted['out_activation_']!r} is not one of {name}'s")
    sizes = [c.shape[0] for c in coefs] + [coefs[-1].shape[1]]
    if fitted["n_features_in_"] != sizes[0] or fitted["n_outputs_"] != sizes[-1] or fitted["n_layers_"] != len(sizes):
        raise ModelFileError("n_features_in_, n_outputs_ or n_layers_ disagree with the weights")
    for key in _FITTED_SCALARS + _FITTED_OPTIONAL:
        if key in fitted:
            setattr(estimator, key, _from_json(fitted[key]))
    if names is not None:
        if names.dtype.kind != "U" or names.shape != (sizes[0],):
            raise ModelFileError("feature_names_in does not match the number of features")
        estimator.feature_names_in_ = names.astype(object)
    if name == "MLPClassifier":
        _restore_labels(estimator, classes, meta.get("label_type"), sizes[-1])
    estimator.coefs_, estimator.intercepts_ = coefs, intercepts
    estimator._network()  # builds the flat buffer, checks the shapes once more
    return estimator


def _check_weights(meta, params, coefs, intercepts, name):
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"dtype must be float32 or float64, got {dtype!r}")
    if params["activation"] not in _ACTIVATIONS:
        raise ModelFileError(f"unknown activation {params['activation']!r}")
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        if W.dtype != dtype or b.dtype != dtype or W.ndim != 2 or b.ndim != 1 or b.shape[0] != W.shape[1]:
            raise ModelFileError(f"layer {i}: weights {W.shape} {W.dtype} and biases {b.shape} {b.dtype} do not fit")
        if i and W.shape[0] != coefs[i - 1].shape[1]:
            raise ModelFileError(f"layer {i} takes {W.shape[0]} inputs but layer {i - 1} gives {coefs[i - 1].shape[1]}")
        if min(W.shape) < 1 or not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ModelFileError(f"layer {i}: empty or non-finite weights")
    hidden = [W.shape[1] for W in coefs[:-1]]
    if hidden != list(params["hidden_layer_sizes"]):
        raise ModelFileError(f"hidden_layer_sizes {params['hidden_layer_sizes']} disagree with the weights {hidden}")


def _restore_labels(estimator, classes, label_type, n_outputs):
    from sklearn.preprocessing import LabelBinarizer

    if (
        classes is None
        or classes.ndim != 1
        or classes.dtype.kind not in "biuUf"
        or len(np.unique(classes)) != len(classes)
    ):
        raise ModelFileError("classes must be a 1-D array of distinct numbers or strings")
    expected_outputs = {"binary": 1, "multiclass": len(classes), "multilabel-indicator": len(classes)}
    if label_type not in expected_outputs or expected_outputs[label_type] != n_outputs:
        raise ModelFileError(f"label type {label_type!r} with {len(classes)} classes does not fit {n_outputs} outputs")
    binarizer = LabelBinarizer()
    binarizer.fit(np.eye(len(classes), dtype=int) if label_type == "multilabel-indicator" else classes)
    estimator._label_binarizer = binarizer
    estimator.classes_ = binarizer.classes_

"""``fastbp.save`` / ``fastbp.load``: model files that never execute code when loaded.

A model file is a zip of ``.npy`` arrays (numpy's own format, read with ``allow_pickle=False``) plus one JSON
document (``metadata.json``): the estimator class, its parameters, the fitted attributes that are not arrays,
the training state that ``warm_start`` and ``partial_fit`` continue from, the dtype, fastbp's version and the
format version. A loaded model predicts, and continues training, exactly as the pickled one does.

Loading validates ``metadata.json`` first (every field's type and range), derives from it the exact shape and
dtype of every array member, and checks each member's header against that before reading any of its data, so
a small file cannot make ``load`` decompress more than the model it describes. Anything wrong with the file
raises :class:`ModelFileError` and nothing else; a missing path raises ``FileNotFoundError``. Pickle and joblib
keep working as usual, but only ``load`` is safe for files from other people.

``save`` encodes everything before it touches the disk, writes a temporary file in the target's folder and
renames it over the target, so a failed save never damages the file that was there.

Format versions: 1 (fastbp 0.1.0: no training state, parameters as plain JSON) still loads; 2 adds exact
parameter types, label kinds and the training state.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import secrets
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fastbp.kernels.activations import ACTIVATIONS
from fastbp.kernels.losses import LOSSES
from fastbp.optimizers import OPTIMIZERS

FORMAT_VERSION = 3  # 3: activations beyond scikit-learn's, per-layer lists, dropout, robust and quantile losses
_MAX_METADATA_BYTES = 1 << 20
_MAX_MODEL_BYTES = 1 << 32  # all weight-sized arrays together
_MAX_LABEL_BYTES = 1 << 26  # classes or feature names
_OUTPUTS = {"MLPClassifier": {"softmax", "logistic"}, "MLPRegressor": {"identity", "exp"}}
_SIZES = ("n_layers_", "n_outputs_", "n_features_in_")
_COUNTS = ("n_iter_", "t_")
_CURVES = ("loss_curve_", "validation_scores_", "validation_loss_curve_")
_HISTORY_KEYS = {
    "iteration",
    "loss",
    "learning_rate",
    "seconds",
    "samples_per_second",
    "validation_loss",
    "validation_score",
}
_SCORES = ("loss_", "best_loss_", "best_validation_score_")
# the parameters every model file holds; later ones (class_weight, warmup_fraction, negative_slope, dropout,
# quantile, delta) default when absent
_ORIGINAL_PARAMS = (
    "hidden_layer_sizes", "activation", "solver", "alpha", "batch_size", "learning_rate", "learning_rate_init",
    "power_t", "max_iter", "shuffle", "random_state", "tol", "verbose", "warm_start", "momentum",
    "nesterovs_momentum", "early_stopping", "validation_fraction", "beta_1", "beta_2", "epsilon",
    "n_iter_no_change", "max_fun",
)  # fmt: skip
_DECODED_FITTED = (*_SIZES, *_COUNTS, *_CURVES, *_SCORES, "history_")
_LABEL_KINDS = "biuUfMm"  # bool, integers, strings, floats, datetime64, timedelta64: all plain npy dtypes

_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError, KeyError)
_READ_ERRORS += (TypeError, AttributeError, OverflowError, UnicodeDecodeError, RecursionError, MemoryError)
_READ_ERRORS += (NotImplementedError, RuntimeError)  # zipfile: unsupported compression, encrypted members


class ModelFileError(ValueError):
    """A model file is damaged, not a fastbp model, or from a newer format; nothing was loaded."""


# -- values <-> JSON ----------------------------------------------------------------------------------------
def _encode(value, where: str):
    """A JSON value that :func:`_decode` turns back into ``value`` with its exact type, or TypeError."""
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":  # first: np.float64 is also a float
        return {"numpy": value.dtype.str, "value": _encode(value.item(), where)}
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.ndim == 1:
        return {"ndarray": value.dtype.str, "value": [_encode(v, where) for v in value.tolist()]}
    if isinstance(value, dict):
        return {"dict": [[_encode(k, where), _encode(v, where)] for k, v in value.items()]}
    if isinstance(value, np.random.RandomState):
        _, keys, pos, has_gauss, cached = value.get_state(legacy=True)
        return {"RandomState": {"keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": cached}}
    raise TypeError(
        f"fastbp.save cannot store {where} = {value!r} (a {type(value).__name__}): use plain numbers, strings, "
        "tuples or a RandomState, or pickle the model"
    )


def _numpy_dtype(code) -> np.dtype:
    dtype = np.dtype(code) if isinstance(code, str) and len(code) <= 4 else None
    if dtype is None or dtype.kind not in "biuf":
        raise ModelFileError(f"invalid number type {code!r}")
    return dtype


def _decode(value, version: int):
    """The inverse of :func:`_encode`; anything it did not write raises ModelFileError."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [_decode(v, version) for v in value]
    if not isinstance(value, dict) or len(value) not in (1, 2):
        raise ModelFileError(f"invalid value {value!r:.80}")
    if set(value) == {"float"} and value["float"] in ("inf", "-inf", "nan"):
        return float(value["float"])
    if version < 2:
        raise ModelFileError(f"invalid value {value!r:.80}")
    if set(value) == {"tuple"} and isinstance(value["tuple"], list):
        return tuple(_decode(v, version) for v in value["tuple"])
    if set(value) == {"numpy", "value"} and isinstance(value["value"], (bool, int, float, dict)):
        return _numpy_dtype(value["numpy"]).type(_decode(value["value"], version))
    if set(value) == {"ndarray", "value"} and isinstance(value["value"], list) and len(value["value"]) <= 10_000:
        return np.array([_decode(v, version) for v in value["value"]], dtype=_numpy_dtype(value["ndarray"]))
    if set(value) == {"dict"} and isinstance(value["dict"], list) and len(value["dict"]) <= 100_000:
        pairs = [_decode(pair, version) for pair in value["dict"]]
        _require(all(isinstance(p, list) and len(p) == 2 for p in pairs), "invalid mapping")
        return {k: v for k, v in pairs}
    if set(value) == {"RandomState"} and isinstance(value["RandomState"], dict):
        state = value["RandomState"]
        keys = np.array(state.get("keys"), dtype=np.int64)
        if keys.shape != (624,) or keys.min() < 0 or keys.max() >= 2**32:
            raise ModelFileError("invalid RandomState")
        generator = np.random.RandomState()
        generator.set_state(
            ("MT19937", keys.astype(np.uint32), int(state["pos"]), int(state["has_gauss"]), float(state["gauss"]))
        )
        return generator
    raise ModelFileError(f"invalid value {value!r:.80}")


# -- save -----------------------------------------------------------------------------------------------------
def _write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a new file beside ``path``, then rename it over ``path``.

    The rename is atomic, so ``path`` holds either its old content or the complete new one, whatever fails
    (an exception in ``write``, a full disk, a crash). The new file gets the permissions a plain ``open``
    would give it.

    Parameters
    ----------
    path : str or path-like
        The file to (re)place; its folder must exist.
    write : callable
        Writes the content to the binary file object it is given.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save(estimator, path: str | os.PathLike) -> None:
    """Write a fitted fastbp estimator to ``path`` in the safe format.

    Parameters
    ----------
    estimator : fastbp.MLPClassifier or fastbp.MLPRegressor
        Fitted.
    path : str or path-like
        The file to write (conventionally ``*.fastbp``). Replaced atomically: if saving fails, a file that
        was already there is left as it was.

    Raises
    ------
    TypeError
        If ``estimator`` is not a fastbp estimator, or a parameter or class label has a type the format cannot
        hold exactly (the message names it); nothing is written.
    """
    meta, arrays = _encode_model(estimator)
    document = json.dumps(meta, allow_nan=False)

    def write(file):
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("metadata.json", document)
            for key, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, array, allow_pickle=False)
                archive.writestr(f"{key}.npy", buffer.getvalue())

    _write_atomically(path, write)


def _encode_model(estimator) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, arrays) of a fitted estimator; raises before anything is written."""
    from sklearn.utils.validation import check_is_fitted

    import fastbp

    name = type(estimator).__name__
    if name not in _OUTPUTS or not isinstance(estimator, (fastbp.MLPClassifier, fastbp.MLPRegressor)):
        raise TypeError(f"fastbp.save takes a fastbp MLPClassifier or MLPRegressor, got {name}")
    check_is_fitted(estimator)
    state = estimator._fitted_state()  # one snapshot, even if another thread is fitting
    net = estimator._network(state)
    fitted = {k: state[k] for k in _SIZES + _COUNTS + _CURVES + _SCORES + ("out_activation_", "history_") if k in state}
    meta: dict[str, Any] = {
        "format": "fastbp-model",
        "format_version": FORMAT_VERSION,
        "fastbp_version": fastbp.__version__,
        "class": name,
        "params": {k: _encode(v, k) for k, v in estimator.get_params().items()},
        "dtype": net.dtype.name,
        "n_weight_layers": len(net.layers),
        "fitted": {k: _encode(v, k) for k, v in fitted.items()},
    }
    arrays = {f"coef_{i}": np.ascontiguousarray(c) for i, c in enumerate(net.coefs)}
    arrays |= {f"intercept_{i}": np.ascontiguousarray(b) for i, b in enumerate(net.intercepts)}
    if "feature_names_in_" in state:
        arrays["feature_names_in"] = np.asarray(state["feature_names_in_"], dtype=str)
    if name == "MLPClassifier":
        binarizer = state["_label_binarizer"]
        classes = np.asarray(binarizer.classes_)
        meta["labels"] = {"type": binarizer.y_type_, "sparse": bool(binarizer.sparse_input_), "object": False}
        if classes.dtype == object:
            if not all(isinstance(c, str) for c in classes):
                kinds = sorted({type(c).__name__ for c in classes})
                raise TypeError(
                    f"fastbp.save cannot store class labels of Python types {kinds}: use labels of one numeric, "
                    "string or datetime dtype, or pickle the model"
                )
            classes, meta["labels"]["object"] = classes.astype(str), True
        if classes.dtype.kind not in _LABEL_KINDS:
            raise TypeError(f"fastbp.save cannot store class labels of dtype {classes.dtype}")
        arrays["classes"] = classes
    meta["training"] = {"no_improvement_count": _encode(state.get("_no_improvement_count", 0), "training state")}
    optimizer = state.get("_optimizer")
    if optimizer is not None and all(getattr(optimizer, name) is not None for name in optimizer.state):
        meta["training"]["optimizer"] = {
            "kind": optimizer.name,
            **{k: _plain(getattr(optimizer, k)) for k in optimizer.hyperparameters},
            **{k: int(getattr(optimizer, k)) for k in optimizer.counters},
        }
        arrays |= {f"optimizer_{name}": getattr(optimizer, name) for name in optimizer.state}
    best = state.get("_best_params")
    if isinstance(best, np.ndarray) and best.shape == net.params.shape:
        arrays["best_params"] = best.astype(net.dtype, copy=False)
    return meta, arrays


# -- load -----------------------------------------------------------------------------------------------------
def load(path: str | os.PathLike):
    """Read a model written by :func:`save`, checking every field; never executes code from the file.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    fastbp.MLPClassifier or fastbp.MLPRegressor
        Fitted, predicting as the saved model did; ``warm_start`` and ``partial_fit`` continue from the saved
        training state (format 2; a format-1 file starts a fresh optimizer from the loaded weights).

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        If ``path`` cannot be opened.
    ModelFileError
        On anything wrong with the file's content (and only this exception, for any content).
    """
    with _model_archive(path) as archive:
        return _load(archive)


@contextlib.contextmanager
def _model_archive(path: str | os.PathLike) -> Iterator[zipfile.ZipFile]:
    """The model file as a zip archive; ``open`` errors pass through, anything wrong inside is ModelFileError."""
    with open(path, "rb") as file:
        try:
            with zipfile.ZipFile(file) as archive:
                yield archive
        except ModelFileError:
            raise
        except _READ_ERRORS as error:
            raise ModelFileError(f"not a readable fastbp model file: {type(error).__name__}: {error}") from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ModelFileError(message)


def _is_int(value, low: int, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_float(value, finite: bool = True) -> bool:
    return isinstance(value, float) and (math.isfinite(value) or not finite)


def _read_metadata(archive: zipfile.ZipFile) -> dict:
    import fastbp

    info = archive.getinfo("metadata.json") if "metadata.json" in archive.namelist() else None
    _require(info is not None and info.file_size <= _MAX_METADATA_BYTES, "no metadata.json (or an oversized one)")
    meta = json.loads(archive.read(info).decode("utf-8"))
    _require(isinstance(meta, dict) and meta.get("format") == "fastbp-model", "not a fastbp model file")
    version = meta.get("format_version")
    _require(_is_int(version, 1), f"invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"this file has model format {version}, written by fastbp {meta.get('fastbp_version')}; this "
            f"fastbp ({fastbp.__version__}) reads up to format {FORMAT_VERSION}: upgrade fastbp"
        )
    _require(meta.get("class") in _OUTPUTS, f"unknown model class {meta.get('class')!r}")
    _require(
        meta.get("dtype") in ("float32", "float64"), f"dtype must be float32 or float64, not {meta.get('dtype')!r}"
    )
    _require(_is_int(meta.get("n_weight_layers"), 1, 1000), f"invalid number of layers {meta.get('n_weight_layers')!r}")
    _require(isinstance(meta.get("params"), dict), "missing parameters")
    _require(isinstance(meta.get("fitted"), dict), "missing fitted attributes")
    return meta


def _make_estimator(meta: dict):
    """The estimator with the file's parameters, each decoded exactly and validated by scikit-learn's rules."""
    import fastbp

    estimator_type, version = getattr(fastbp, meta["class"]), meta["format_version"]
    unknown = set(meta["params"]) - set(estimator_type().get_params())
    _require(not unknown, f"parameters {sorted(unknown)[:5]} are not the estimator's")
    _require(set(_ORIGINAL_PARAMS) <= set(meta["params"]), "parameters are missing")  # newer ones take defaults
    params = {k: _decode(v, version) for k, v in meta["params"].items()}
    if version == 1:
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    estimator = estimator_type(**params)
    try:
        estimator._validate_params()
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"invalid parameter: {error}") from None
    activation = params["activation"]
    names = [activation] if isinstance(activation, str) else list(activation)
    _require(all(isinstance(a, str) and a in ACTIVATIONS for a in names), f"unknown activation {activation!r}")
    n_hidden = len(np.atleast_1d(params["hidden_layer_sizes"]))
    for key in ("activation", "dropout"):
        value = params.get(key, 0.0)
        if not isinstance(value, str) and np.ndim(value) != 0:
            _require(len(value) == n_hidden, f"{key} must list one value per hidden layer ({n_hidden})")
    if meta["class"] == "MLPRegressor":
        loss = params.get("loss")
        _require(loss != "quantile" or params.get("quantile") is not None, "loss='quantile' without quantile")
        output = meta["fitted"].get("out_activation_")
        _require(LOSSES[loss].output == output, f"output {output!r} does not go with loss {loss!r}")
    return estimator


def _fitted_attributes(meta: dict) -> dict:
    """The fitted scalars and curves, each checked for type and range."""
    name, version, raw = meta["class"], meta["format_version"], meta["fitted"]
    fitted = {
        k: _decode(v, version) for k, v in raw.items() if k in (*_SIZES, *_COUNTS, *_CURVES, *_SCORES, "history_")
    }
    _require(set(raw) <= set(fitted) | {"out_activation_"}, f"unknown fitted attributes {sorted(set(raw))[:5]}")
    _require(raw.get("out_activation_") in _OUTPUTS[name], f"output {raw.get('out_activation_')!r} is not {name}'s")
    fitted["out_activation_"] = raw["out_activation_"]
    for key in _SIZES:
        _require(_is_int(fitted.get(key), 1, 1 << 31), f"{key} must be a positive integer")
    _require(fitted["n_layers_"] == meta["n_weight_layers"] + 1, "n_layers_ disagrees with the number of layers")
    for key in _COUNTS:
        _require(_is_int(fitted.get(key), 0), f"{key} must be a non-negative integer")
    if "loss_" in fitted:
        _require(_is_float(fitted["loss_"]) and fitted["loss_"] >= 0, "loss_ must be a finite number >= 0")
    if fitted.get("best_loss_") is not None:
        _require(_is_float(fitted["best_loss_"], finite=False) and fitted["best_loss_"] >= 0, "invalid best_loss_")
    if fitted.get("best_validation_score_") is not None:
        _require(_is_float(fitted["best_validation_score_"], finite=False), "invalid best_validation_score_")
    history = fitted.setdefault("history_", [])
    _require(
        isinstance(history, list)
        and all(
            isinstance(r, dict)
            and set(r) <= _HISTORY_KEYS
            and all(_is_int(v, 0) if k == "iteration" else _is_float(v, finite=False) for k, v in r.items())
            for r in history
        ),
        "history_ must be a list of epoch records",
    )
    for key in _CURVES:
        curve = fitted.get(key)
        _require(
            curve is None or (isinstance(curve, list) and all(_is_float(v, finite=False) for v in curve)),
            f"{key} must be a list of numbers",
        )
    return fitted


def _training_state(meta: dict) -> dict:
    """Format 2's training state: the no-improvement count and the optimizer's settings."""
    training = meta.get("training", {"no_improvement_count": 0})
    _require(isinstance(training, dict) and set(training) <= {"no_improvement_count", "optimizer"}, "invalid training")
    _require(_is_int(training.get("no_improvement_count"), 0), "invalid no_improvement_count")
    optimizer = training.get("optimizer")
    if optimizer is not None:
        _require(isinstance(optimizer, dict) and optimizer.get("kind") in OPTIMIZERS, "invalid optimizer")
        kind = OPTIMIZERS[optimizer["kind"]]
        _require(set(optimizer) == {"kind", *kind.hyperparameters, *kind.counters}, f"invalid {kind.__name__}")
        for name, valid in kind.hyperparameters.items():
            _require(valid(optimizer[name]), f"invalid {kind.__name__} {name}")
        for name in kind.counters:
            _require(_is_int(optimizer[name], 0), f"invalid {kind.__name__} {name}")
    return training


def _read_array(archive: zipfile.ZipFile, key: str, shapes: list[tuple], dtype: np.dtype | str) -> np.ndarray:
    """Member ``key.npy``, refused unless its header declares one of ``shapes`` and ``dtype`` (a dtype, or a
    string of allowed dtype kinds) and its size is exactly that; no data is read before these checks pass."""
    member = f"{key}.npy"
    _require(member in archive.namelist(), f"missing array {key!r}")
    info = archive.getinfo(member)
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        _require(version in ((1, 0), (2, 0)), f"array {key!r}: unknown npy version")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, found = read_header(stream)  # the header only, no data
        _require(not found.hasobject, f"array {key!r} holds Python objects, which are never loaded")
        kind_ok = found.kind in dtype if isinstance(dtype, str) else found == dtype
        _require(
            kind_ok and shape in shapes and not fortran, f"array {key!r}: {found} {shape} is not what it should be"
        )
        size = math.prod(shape) * found.itemsize
        _require(info.file_size == stream.tell() + size, f"array {key!r} does not hold {shape} {found}")
        if isinstance(dtype, str):
            _require(size <= _MAX_LABEL_BYTES, f"array {key!r} is too large")
        array = np.empty(shape, found)
        target, filled = memoryview(array.reshape(-1).view(np.uint8)), 0
        while filled < size:
            count = stream.readinto(target[filled:])
            _require(count > 0, f"array {key!r} is truncated")
            filled += count
        return array


def read_metadata(path: str | os.PathLike) -> dict:
    """The validated ``metadata.json`` of a model file (class, versions, parameters, fitted figures).

    Raises
    ------
    ModelFileError
        If the file is not a readable fastbp model file.
    """
    with _model_archive(path) as archive:
        return _read_metadata(archive)


def _load(archive: zipfile.ZipFile):
    meta = _read_metadata(archive)
    estimator = _make_estimator(meta)
    fitted = _fitted_attributes(meta)
    training = _training_state(meta)
    name, dtype, n_layers = meta["class"], np.dtype(meta["dtype"]), meta["n_weight_layers"]
    hidden = np.atleast_1d(estimator.hidden_layer_sizes).tolist()
    _require(all(_is_int(h, 1, 1 << 31) for h in hidden), f"invalid hidden_layer_sizes {hidden!r:.80}")
    sizes = [fitted["n_features_in_"], *hidden, fitted["n_outputs_"]]
    _require(len(sizes) == n_layers + 1, f"hidden_layer_sizes {hidden} disagree with {n_layers} weight layers")
    n_params = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    _require(n_params * dtype.itemsize * 4 <= _MAX_MODEL_BYTES, f"the model declares {n_params} parameters")
    labels = meta.get("labels") if meta["format_version"] > 1 else {"type": meta.get("label_type")}
    kind = (training.get("optimizer") or {}).get("kind")
    optimizer_arrays = OPTIMIZERS[kind].state if kind else ()
    expected = {f"coef_{i}.npy" for i in range(n_layers)} | {f"intercept_{i}.npy" for i in range(n_layers)}
    expected |= {"metadata.json", "feature_names_in.npy", "best_params.npy"}
    expected |= {f"optimizer_{a}.npy" for a in optimizer_arrays}
    expected |= {"classes.npy"} if name == "MLPClassifier" else set()
    unexpected = set(archive.namelist()) - expected
    _require(not unexpected, f"unexpected members {sorted(unexpected)[:5]}")
    coefs = [_read_array(archive, f"coef_{i}", [(i_, o)], dtype) for i, (i_, o) in enumerate(zip(sizes, sizes[1:]))]
    intercepts = [_read_array(archive, f"intercept_{i}", [(o,)], dtype) for i, o in enumerate(sizes[1:])]
    names = None
    if "feature_names_in.npy" in archive.namelist():
        names = _read_array(archive, "feature_names_in", [(sizes[0],)], "U")
    classes = None
    if name == "MLPClassifier":
        _require(isinstance(labels, dict), "missing label description")
        n_classes = [(1,), (2,)] if labels.get("type") == "binary" else [(sizes[-1],)]
        classes = _read_array(archive, "classes", n_classes, _LABEL_KINDS)
    best = None
    if "best_params.npy" in archive.namelist():
        best = _read_array(archive, "best_params", [(n_params,)], dtype)
    state = [_read_array(archive, f"optimizer_{a}", [(n_params,)], dtype) for a in optimizer_arrays]
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        _require(np.isfinite(W).all() and np.isfinite(b).all(), f"layer {i}: non-finite weights")
    for key, value in fitted.items():
        setattr(estimator, key, value)
    if names is not None:
        estimator.feature_names_in_ = names.astype(object)
    if name == "MLPClassifier":
        _restore_labels(estimator, classes, labels, sizes[-1])
    estimator.coefs_, estimator.intercepts_ = coefs, intercepts
    net = estimator._network()  # builds the flat buffer, checks the shapes once more
    estimator._best_params = net.params.copy() if best is None else best
    estimator._no_improvement_count = training["no_improvement_count"]
    estimator._optimizer = _restore_optimizer(training.get("optimizer"), state)
    return estimator


def _plain(value) -> float | bool:
    """An optimizer hyperparameter as JSON keeps it: a bool stays a bool, every number becomes a float."""
    return bool(value) if isinstance(value, (bool, np.bool_)) else float(value)


def _restore_optimizer(settings: dict | None, state: list[np.ndarray]):
    if settings is None:
        return None
    kind = OPTIMIZERS[settings["kind"]]
    return kind(**{k: v for k, v in settings.items() if k != "kind"}, **dict(zip(kind.state, state)))


def _restore_labels(estimator, classes: np.ndarray, labels: dict, n_outputs: int) -> None:
    from sklearn.preprocessing import LabelBinarizer

    label_type = labels.get("type")
    _require(len(np.unique(classes)) == len(classes), "classes must be distinct")
    expected_outputs = {"binary": 1, "multiclass": len(classes), "multilabel-indicator": len(classes)}
    _require(
        label_type in expected_outputs and expected_outputs[label_type] == n_outputs,
        f"label type {label_type!r} with {len(classes)} classes does not fit {n_outputs} outputs",
    )
    sparse, as_object = labels.get("sparse", False), labels.get("object", False)
    _require(isinstance(sparse, bool) and isinstance(as_object, bool), "invalid label flags")
    _require(not as_object or classes.dtype.kind == "U", "object labels must be stored as strings")
    binarizer = LabelBinarizer()  # fitted attributes set directly: fit() would re-derive them from data
    binarizer.classes_ = classes.astype(object) if as_object else classes
    binarizer.y_type_ = label_type
    binarizer.sparse_input_ = sparse
    estimator._label_binarizer = binarizer
    estimator.classes_ = binarizer.classes_

"""fastbp.save / fastbp.load: round trips, and every kind of bad file gets ModelFileError, nothing else."""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp import ModelFileError

rng = np.random.default_rng(0)
X = rng.normal(size=(60, 5)).astype(np.float32)
TARGETS = {
    "multiclass": (fastbp.MLPClassifier, np.arange(60) % 3),
    "binary strings": (fastbp.MLPClassifier, np.where(X[:, 0] > 0, "yes", "no")),
    "multilabel": (fastbp.MLPClassifier, (X[:, :2] > 0).astype(int)),
    "regression": (fastbp.MLPRegressor, X[:, 0] * 2.0),
    "multi-output": (fastbp.MLPRegressor, X[:, :3]),
}


def fitted(kind, **params):
    Model, y = TARGETS[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Model(hidden_layer_sizes=(6, 4), max_iter=3, random_state=0, **params).fit(X, y)


@pytest.mark.parametrize("kind", list(TARGETS))
def test_round_trip_predicts_identically(tmp_path, kind):
    model = fitted(kind, early_stopping=kind == "multiclass", n_iter_no_change=np.inf)
    path = tmp_path / "model.fastbp"
    fastbp.save(model, path)
    loaded = fastbp.load(path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
        np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.loss_curve_ == model.loss_curve_ and loaded.n_iter_ == model.n_iter_
    assert loaded.coefs_[0].dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        loaded.set_params(early_stopping=False).partial_fit(X, TARGETS[kind][1])  # usable for more training


def test_pickle_still_works():
    model = fitted("multiclass")
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))


def test_save_refuses_other_objects(tmp_path):
    from sklearn.neural_network import MLPClassifier

    with pytest.raises(TypeError, match="fastbp"):
        fastbp.save(MLPClassifier(), tmp_path / "m")


@pytest.fixture(scope="module")
def good_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("model") / "good.fastbp"
    fastbp.save(fitted("multiclass"), path)
    return path.read_bytes()


def members(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rebuild(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy(array, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def edit_meta(parts, change):
    meta = json.loads(parts["metadata.json"])
    change(meta)
    return {**parts, "metadata.json": json.dumps(meta).encode()}


class Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def huge_header() -> bytes:
    header = npy(np.zeros((2, 2), np.float32))
    return header.replace(b"(2, 2)", b"(99999999, 99999999)".ljust(6))[: len(header)]


BAD = {
    "newer format": lambda p: edit_meta(p, lambda m: m.update(format_version=99)),
    "not fastbp": lambda p: edit_meta(p, lambda m: m.update(format="other")),
    "unknown class": lambda p: edit_meta(p, lambda m: m.update({"class": "os.system"})),
    "unknown activation": lambda p: edit_meta(p, lambda m: m["params"].update(activation="swish")),
    "bad output": lambda p: edit_meta(p, lambda m: m["fitted"].update(out_activation_="exp")),
    "wrong hidden sizes": lambda p: edit_meta(p, lambda m: m["params"].update(hidden_layer_sizes=[7, 4])),
    "too many layers": lambda p: edit_meta(p, lambda m: m.update(n_weight_layers=10**9)),
    "bad dtype": lambda p: edit_meta(p, lambda m: m.update(dtype="int8")),
    "metadata not json": lambda p: {**p, "metadata.json": b"\xff{"},
    "no metadata": lambda p: {k: v for k, v in p.items() if k != "metadata.json"},
    "missing array": lambda p: {k: v for k, v in p.items() if k != "coef_1.npy"},
    "wrong shape": lambda p: {**p, "coef_1.npy": npy(np.zeros((5, 4), np.float32))},
    "wrong dtype": lambda p: {**p, "coef_0.npy": npy(np.zeros((5, 6), np.float64))},
    "non-finite": lambda p: {**p, "intercept_0.npy": npy(np.full(6, np.nan, np.float32))},
    "pickle payload": lambda p: {**p, "classes.npy": npy(np.array([Evil()], dtype=object), allow_pickle=True)},
    "huge declared size": lambda p: {**p, "coef_0.npy": huge_header()},
    "path trick": lambda p: {**p, "../../evil.npy": npy(np.zeros(1))},
    "classes mismatch": lambda p: {**p, "classes.npy": npy(np.arange(5))},
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_raise_model_file_error(tmp_path, good_file, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.fastbp"
    path.write_bytes(rebuild(BAD[case](members(good_file))))
    with pytest.raises(ModelFileError):
        fastbp.load(path)
    assert not (tmp_path / "PWNED").exists()


def test_newer_format_says_so(tmp_path, good_file):
    path = tmp_path / "new.fastbp"
    path.write_bytes(rebuild(BAD["newer format"](members(good_file))))
    with pytest.raises(ModelFileError, match="upgrade fastbp"):
        fastbp.load(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_load_or_raise_model_file_error(tmp_path, good_file, data):
    """Truncations and flipped bytes anywhere: a valid model or ModelFileError, never a crash or a hang."""
    blob = bytearray(good_file)
    if data.draw(st.booleans(), label="truncate"):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1), label="length")]
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        if blob:
            at = data.draw(st.integers(0, len(blob) - 1), label="at")
            blob[at] ^= data.draw(st.integers(1, 255), label="mask")
    path = tmp_path / "fuzzed.fastbp"
    path.write_bytes(bytes(blob))
    try:
        model = fastbp.load(path)
    except ModelFileError:
        return
    assert model.predict_proba(X).shape == (60, 3)  # a flip in, say, zip padding may leave a valid model


def test_skops_loads_with_only_fastbp_types_trusted(tmp_path):
    sio = pytest.importorskip("skops.io")
    model = fitted("multiclass")
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert all(t.startswith(("fastbp.", "sklearn.", "numpy.", "builtins.")) for t in untrusted), untrusted
    loaded = sio.load(path, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_feature_names_survive_fit_predict_and_save(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastbp.MLPClassifier((6,), max_iter=3, random_state=0).fit(frame, TARGETS["multiclass"][1])
    assert list(model.feature_names_in_) == list(frame.columns)
    path = tmp_path / "named.fastbp"
    fastbp.save(model, path)
    loaded = fastbp.load(path)
    assert list(loaded.feature_names_in_) == list(frame.columns)
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame.rename(columns={"f0": "other"}))


# -- exact round trips: what pickle gives back, load gives back -------------------------------------------------
def _same(a, b) -> bool:
    """Equal values of the same types, recursively (arrays: same dtype, shape and values)."""
    import scipy.sparse

    if type(a) is not type(b):
        return False
    if scipy.sparse.issparse(a):
        return a.dtype == b.dtype and a.shape == b.shape and (a != b).nnz == 0
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, np.random.RandomState):
        return all(_same(x, y) for x, y in zip(a.get_state(), b.get_state()))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b or (a != a and b != b)


def _labels(kind):
    import scipy.sparse

    cycle = np.arange(60) % 3
    return {
        "int": cycle,
        "bool": X[:, 0] > 0,
        "float": cycle + 2.0,
        "str": np.array(["a", "bb", "c"])[cycle],
        "object str": np.array(["a", "bb", "c"], dtype=object)[cycle],
        "datetime64": np.array(["2026-01-01", "2026-02-01", "2026-03-01"], dtype="datetime64[D]")[cycle],
        "timedelta64": np.array([1, 2, 3], dtype="timedelta64[s]")[cycle],
        "multilabel": (X[:, :2] > 0).astype(int),
        "sparse multilabel": scipy.sparse.csr_matrix((X[:, :2] > 0).astype(int)),
    }[kind]


LABEL_KINDS = [
    "int",
    "bool",
    "float",
    "str",
    "object str",
    "datetime64",
    "timedelta64",
    "multilabel",
    "sparse multilabel",
]
PARAMS = {
    "numpy scalars": dict(random_state=np.int64(3), alpha=np.float32(1e-3), max_iter=np.int32(3), tol=np.float64(0)),
    "RandomState": dict(random_state=np.random.RandomState(5)),
    "list sizes": dict(hidden_layer_sizes=[4, 3]),
    "array sizes": dict(hidden_layer_sizes=np.array([4, 3])),
    "int size": dict(hidden_layer_sizes=4),
    "infinite patience": dict(n_iter_no_change=np.inf, early_stopping=True),
    "beyond scikit-learn": dict(
        hidden_layer_sizes=(4, 3), activation=["gelu", "leaky_relu"], negative_slope=0.2, dropout=[0.3, 0.0]
    ),
}


def _fit(model, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _compare_with_pickle(model, tmp_path):
    path = tmp_path / "model.fastbp"
    fastbp.save(model, path)
    loaded, pickled = fastbp.load(path), pickle.loads(pickle.dumps(model))
    assert _same(loaded.get_params(), pickled.get_params())
    for method in ("predict", "predict_proba"):
        if hasattr(model, method):
            assert _same(getattr(loaded, method)(X), getattr(pickled, method)(X)), method
    return loaded, pickled


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_every_label_type_round_trips_as_pickle_does(tmp_path, kind):
    """Sparse multilabel predictions came back dense and datetime labels as strings."""
    _compare_with_pickle(_fit(fastbp.MLPClassifier((4,), max_iter=3, random_state=0), _labels(kind)), tmp_path)


@pytest.mark.parametrize("case", list(PARAMS))
@pytest.mark.parametrize("Model", [fastbp.MLPClassifier, fastbp.MLPRegressor])
def test_every_parameter_type_round_trips_as_pickle_does(tmp_path, case, Model):
    """numpy scalar parameters were saved as None or as Python values."""
    params = {"hidden_layer_sizes": (4,), "max_iter": 3, "random_state": 0, **PARAMS[case]}
    y = _labels("int") if Model is fastbp.MLPClassifier else X[:, 0]
    _compare_with_pickle(_fit(Model(**params), y), tmp_path)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_a_loaded_model_continues_training_exactly_as_a_pickled_one(tmp_path, solver, early_stopping, how):
    """After load, warm_start fit and partial_fit crashed ('_no_improvement_count') or restarted the optimizer."""
    if how == "partial_fit" and early_stopping:
        pytest.skip("partial_fit refuses early_stopping=True")
    y = _labels("int")
    params = dict(
        hidden_layer_sizes=(5,), solver=solver, max_iter=4, n_iter_no_change=2, tol=0.5, random_state=0
    )  # tol=0.5: epochs stop improving at once, so the no-improvement count matters
    model = _fit(fastbp.MLPClassifier(early_stopping=early_stopping, **params), y)
    loaded, pickled = _compare_with_pickle(model, tmp_path)
    for estimator in (loaded, pickled):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if how == "warm_start":
                estimator.set_params(warm_start=True).fit(X, y)
            else:
                estimator.partial_fit(X, y)
                estimator.partial_fit(X, y)
    for a, b in zip(loaded.coefs_ + loaded.intercepts_, pickled.coefs_ + pickled.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert loaded.n_iter_ == pickled.n_iter_ and _same(loaded.loss_curve_, pickled.loss_curve_)


def test_unsavable_values_are_refused_by_name_and_the_old_file_survives(tmp_path):
    from fractions import Fraction

    path = tmp_path / "model.fastbp"
    model = fitted("multiclass")
    fastbp.save(model, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="tol"):
        fastbp.save(model.set_params(tol=Fraction(1, 10)), path)
    objects = fitted("multiclass")  # scikit-learn only fits object labels that are strings; refuse anything else
    objects._label_binarizer.classes_ = np.array([1, 2, 3], dtype=object)
    with pytest.raises(TypeError, match="class labels"):
        fastbp.save(objects, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.fastbp"]


def test_a_save_that_fails_while_writing_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.fastbp"
    fastbp.save(fitted("regression"), path)
    before = path.read_bytes()
    calls = []

    def failing_write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    real = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        fastbp.save(fitted("multiclass"), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.fastbp"]
    monkeypatch.undo()
    assert fastbp.load(path).predict(X).shape == (60,)


def test_a_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastbp.load(tmp_path / "nothing.fastbp")


def test_a_compressed_bomb_is_refused_before_decompressing(tmp_path, good_file):
    """A 256 MB array of zeros in a small file: refused from its header, without reading its data."""
    import tracemalloc

    path = tmp_path / "bomb.fastbp"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members(good_file).items():
            if name != "coef_0.npy":
                archive.writestr(name, data)
        with archive.open("coef_0.npy", "w", force_zip64=True) as member:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<f4", "fortran_order": False, "shape": (8192, 8192)}
            )
            member.write(header.getvalue())
            zeros = bytes(1 << 24)
            for _ in range(16):
                member.write(zeros)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(ModelFileError, match="coef_0"):
        fastbp.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 24


FIELDS = {
    "string t_": lambda m: m["fitted"].update(t_="600"),
    "negative n_iter_": lambda m: m["fitted"].update(n_iter_=-3),
    "dict loss_": lambda m: m["fitted"].update(loss_={"a": 1}),
    "boolean format version": lambda m: m.update(format_version=True),
    "boolean n_features_in_": lambda m: m["fitted"].update(n_features_in_=True),
    "string loss curve": lambda m: m["fitted"].update(loss_curve_=["x"]),
    "negative no-improvement count": lambda m: m["training"].update(no_improvement_count=-1),
    "unknown fitted attribute": lambda m: m["fitted"].update(coefs_=1),
    "huge hidden size": lambda m: m["params"].update(hidden_layer_sizes={"tuple": [10**9, 4]}),
    "bad Adam t": lambda m: m["training"]["optimizer"].update(t=-1),
    "bad numpy tag": lambda m: m["params"].update(alpha={"numpy": "O", "value": 1}),
    "bad RandomState": lambda m: m["params"].update(random_state={"RandomState": {"keys": [1]}}),
    "unknown activation": lambda m: m["params"].update(activation="swish"),
    "unknown activation in a list": lambda m: m["params"].update(activation=["relu", "swish"]),
    "activation list of the wrong length": lambda m: m["params"].update(activation=["relu"]),
    "dropout list of the wrong length": lambda m: m["params"].update(dropout=[0.1, 0.1, 0.1]),
    "dropout rate 1": lambda m: m["params"].update(dropout=1.0),
}


@pytest.mark.parametrize("case", list(FIELDS))
def test_every_field_is_validated(tmp_path, good_file, case):
    path = tmp_path / "bad.fastbp"
    path.write_bytes(rebuild(edit_meta(members(good_file), FIELDS[case])))
    with pytest.raises(ModelFileError):
        fastbp.load(path)


def test_format_1_files_still_load_and_train(tmp_path, good_file):
    def as_version_1(meta):
        meta.update(format_version=1, label_type=meta.pop("labels")["type"])
        del meta["training"], meta["fitted"]["history_"], meta["fitted"]["validation_loss_curve_"]
        for later in ("class_weight", "warmup_fraction", "negative_slope", "dropout"):  # not in fastbp 0.1.0
            del meta["params"][later]
        meta["params"]["hidden_layer_sizes"] = meta["params"]["hidden_layer_sizes"]["tuple"]

    parts = edit_meta(members(good_file), as_version_1)
    parts = {k: v for k, v in parts.items() if not k.startswith(("optimizer_", "best_params"))}
    path = tmp_path / "v1.fastbp"
    path.write_bytes(rebuild(parts))
    model = fastbp.load(path)
    assert model.hidden_layer_sizes == (6, 4) and model._optimizer is None
    assert model.class_weight is None and model.warmup_fraction == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.set_params(warm_start=True, early_stopping=False).fit(X, TARGETS["multiclass"][1])
        model.partial_fit(X, TARGETS["multiclass"][1])
    assert model.n_iter_ == 1


@pytest.mark.parametrize(
    "params", [dict(loss="quantile", quantile=0.8), dict(loss="huber", delta=0.3), dict(loss="absolute_error")]
)
def test_regression_losses_round_trip_as_pickle_does(tmp_path, params):
    model = _fit(fastbp.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0, **params), X[:, 0])
    loaded, _ = _compare_with_pickle(model, tmp_path)
    assert loaded._network().loss == params["loss"]


def test_format_2_files_load_with_the_later_options_at_their_defaults(tmp_path, good_file):
    def as_version_2(meta):
        meta.update(format_version=2)
        for later in ("negative_slope", "dropout"):
            del meta["params"][later]

    path = tmp_path / "v2.fastbp"
    path.write_bytes(rebuild(edit_meta(members(good_file), as_version_2)))
    model = fastbp.load(path)
    assert model.dropout == 0.0 and model.negative_slope == 0.01
    original = tmp_path / "good.fastbp"
    original.write_bytes(good_file)
    np.testing.assert_array_equal(model.predict_proba(X), fastbp.load(original).predict_proba(X))


def test_a_regressor_file_whose_output_does_not_fit_its_loss_is_refused(tmp_path):
    model = _fit(fastbp.MLPRegressor(hidden_layer_sizes=(4,), loss="huber", max_iter=2, random_state=0), X[:, 0])
    fastbp.save(model, tmp_path / "good.fastbp")
    path = tmp_path / "bad.fastbp"
    parts = members((tmp_path / "good.fastbp").read_bytes())
    path.write_bytes(rebuild(edit_meta(parts, lambda m: m["fitted"].update(out_activation_="exp"))))
    with pytest.raises(ModelFileError, match="does not go with loss"):
        fastbp.load(path)

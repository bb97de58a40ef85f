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

"""``fastbp`` as a user runs it: a subprocess on a small synthetic set."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "fastbp", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


TRAIN_SMALL = ["train", "--data", "synthetic", "--samples", "600", "--epochs", "3", "--hidden", "8"]


def test_train_on_synthetic_data_reports_epochs_accuracy_and_confusion(tmp_path):
    model = tmp_path / "model.fastbp"
    out = run(
        "train", "--data", "synthetic", "--samples", "3000", "--epochs", "2", "--hidden", "32", "--save", str(model)
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("data: synthetic") and "3000 training" in lines[0]
    assert lines[1].startswith("kernels ready in") and lines[2].startswith("Iteration 1,")  # compiled apart
    assert sum(line.startswith("Iteration") and "samples/s" in line for line in lines) == 2
    assert any(line.startswith("trained 2 epochs") for line in lines)
    summary = next(line for line in lines if line.startswith("test accuracy"))
    assert float(summary.rsplit(" ", 1)[1]) > 0.3  # ten classes: chance is 0.1
    assert sum(1 for line in lines if line.startswith("  ")) == 10  # the confusion matrix rows
    import fastbp

    clf = fastbp.load(model)  # the safe format, not a pickle
    assert clf.n_iter_ == 2 and clf.coefs_[0].shape == (784, 32)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["train", "--epochs", "0"], 2, "must be > 0"),
        (["train", "--hidden", "10,x"], 2, "expected sizes"),
        (["train", "--solver", "newton"], 2, "invalid choice"),
        (["train", "--learning-rate", "nan"], 2, "finite number > 0"),
        (["train", "--seed", "-1"], 2, "from 0 to"),
        (["train", "--data", "synthetic", "--samples", "5", "--epochs", "1"], 2, "--samples 5 is too few"),
        ([*TRAIN_SMALL, "--save", "/no/such/dir/m.fastbp"], 1, "cannot write"),
        (["train", "--data", "table.txt"], 2, "expected one of"),
        (["train", "--test-fraction", "1"], 2, "from 0 up to"),
        ([*TRAIN_SMALL, "--plot", "/no/such/dir/c.png"], 1, "cannot write"),
        ([*TRAIN_SMALL, "--save", "/"], 1, "is a folder"),
        (["train", "--activation", "swish"], 2, "unknown activation 'swish'"),
        (["train", "--hidden", "8,4", "--activation", "gelu,relu,tanh"], 2, "3 names for 2 hidden layers"),
        (["train", "--dropout", "1"], 2, "from 0 up to"),
        (["train", "--loss", "quantile"], 2, "--loss quantile and --quantile go together"),
        (["train", "--quantile", "0.5"], 2, "--loss quantile and --quantile go together"),
        ([*TRAIN_SMALL, "--loss", "huber"], 2, "--loss is for regression"),
        (["compile", "--dtype", "float16"], 2, "invalid choice"),
        (["compile", "--loss", "log_loss"], 2, "invalid choice"),
    ],
)
def test_user_mistakes_get_exit_codes_and_one_line(args, code, message):
    out = run(*args)
    assert out.returncode == code
    assert message in out.stderr and "Traceback" not in out.stderr and "validation_fraction" not in out.stderr
    assert "Iteration" not in out.stdout  # found before training, not after


def test_without_early_stopping_the_saved_model_is_the_last_epoch(tmp_path):
    """The command always trained with early stopping and saved the best epoch's weights, not the last."""
    import warnings

    import numpy as np

    import fastbp
    from fastbp import MLPClassifier
    from fastbp.cli import hold_out
    from fastbp.datasets import make_mnist_like

    model_path = tmp_path / "model.fastbp"
    out = run(*TRAIN_SMALL, "--save", str(model_path))
    assert out.returncode == 0, out.stderr
    assert sum("validation score" in line for line in out.stdout.splitlines()) == 3
    saved = fastbp.load(model_path)
    assert type(saved) is MLPClassifier and saved.n_iter_ == 3 and not saved.early_stopping
    X, y = make_mnist_like(70000, random_state=0, dtype=np.float32)
    X, y = X[:600], y[:600]
    rows, _ = hold_out(y, 0, 600, classify=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = MLPClassifier((8,), batch_size=128, max_iter=3, n_iter_no_change=4, random_state=0).fit(
            X[rows], y[rows]
        )
    for a, b in zip(saved.coefs_ + saved.intercepts_, plain.coefs_ + plain.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_ctrl_c_says_so_and_exits_130_with_the_model_saved(tmp_path):
    import os
    import signal
    import time

    model_path = tmp_path / "model.fastbp"
    args = ["train", "--data", "synthetic", "--samples", "20000", "--hidden", "1024", "--batch-size", "16"]
    child = subprocess.Popen(
        [sys.executable, "-m", "fastbp", *args, "--epochs", "100", "--save", str(model_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            if line.startswith("Iteration"):
                break
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "interrupted by Ctrl-C" in out and model_path.exists()


def test_help_has_examples():
    out = run("train", "--help")
    assert out.returncode == 0 and "examples:" in out.stdout


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    out = run("train", "--data", "synthetic", "--samples", "600", "--epochs", "2", "--hidden", "8", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _write_tables(folder):
    """A CSV with a text target, one with a float target, and the same classification data as Parquet and .npz."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    species = np.where(X[:, 0] + X[:, 1] > 0, "setosa", "virginica")
    price = X @ [3.0, -2.0, 1.0]
    header = "length,width,depth"
    np.savetxt(folder / "numbers.csv", X, delimiter=",", header=header, comments="", fmt="%.6f")
    X = np.loadtxt(folder / "numbers.csv", delimiter=",", skiprows=1)  # the values as the files hold them
    rows = (folder / "numbers.csv").read_text().splitlines()
    (folder / "flowers.csv").write_text(
        "\n".join([rows[0] + ",species"] + [f"{r},{s}" for r, s in zip(rows[1:], species)]) + "\n"
    )
    (folder / "houses.csv").write_text(
        "\n".join([rows[0] + ",price"] + [f"{r},{p:.6f}" for r, p in zip(rows[1:], price)]) + "\n"
    )
    (folder / "text_feature.csv").write_text("colour,size\nred,1.0\nblue,2.0\n" * 20)
    np.savez(folder / "flowers.npz", X=X, y=species)
    return X, species, price


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")  # arrays, not frames
def test_train_predict_and_info_on_a_users_tables(tmp_path):
    import numpy as np

    import fastbp

    X, species, price = _write_tables(tmp_path)
    model = tmp_path / "flowers.fastbp"
    out = run("train", "--data", tmp_path / "flowers.csv", "--epochs", "20", "--hidden", "16", "--learning-rate",
              "0.01", "--save", model)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "classification of 'species'" in out.stdout and "320 training and 80 test rows" in out.stdout
    accuracy = float(next(line for line in out.stdout.splitlines() if line.startswith("test accuracy")).split()[-1])
    assert accuracy > 0.85
    loaded = fastbp.load(model)
    assert list(loaded.feature_names_in_) == ["length", "width", "depth"]
    predictions = tmp_path / "predictions.csv"
    out = run("predict", model, tmp_path / "flowers.csv", "--output", predictions)  # the target column is ignored
    assert out.returncode == 0, out.stderr
    lines = predictions.read_text().split()
    assert lines[0].strip('"') == "prediction" and len(lines) == 401
    expected = loaded.predict(X.astype(np.float32))
    assert [line.strip('"') for line in lines[1:]] == list(expected)
    out = run("predict", model, tmp_path / "numbers.csv", "--proba")  # to stdout, no target column
    assert out.returncode == 0, out.stderr
    proba = np.loadtxt(out.stdout.splitlines()[1:], delimiter=",")
    np.testing.assert_allclose(proba, loaded.predict_proba(X.astype(np.float32)), rtol=1e-6)
    out = run("info", model)
    assert out.returncode == 0, out.stderr
    assert "MLPClassifier" in out.stdout and "3 -> 16 (relu) -> 1 (logistic, binary_log_loss)" in out.stdout
    assert "classes: 2: setosa virginica" in out.stdout and "length, width, depth" in out.stdout


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")  # arrays, not frames
def test_regression_on_a_table_and_other_formats(tmp_path):
    pytest.importorskip("pyarrow")
    import numpy as np
    import pyarrow
    import pyarrow.csv
    import pyarrow.parquet

    import fastbp

    X, species, price = _write_tables(tmp_path)
    pyarrow.parquet.write_table(pyarrow.csv.read_csv(tmp_path / "houses.csv"), tmp_path / "houses.parquet")
    model = tmp_path / "houses.fastbp"
    out = run("train", "--data", tmp_path / "houses.parquet", "--target", "price", "--epochs", "30", "--hidden",
              "16", "--learning-rate", "0.01", "--dtype", "float64", "--save", model)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "regression of 'price'" in out.stdout
    r2 = float(next(line for line in out.stdout.splitlines() if line.startswith("test R^2")).split()[2].rstrip(","))
    assert r2 > 0.9
    out = run("predict", model, tmp_path / "houses.csv")
    assert out.returncode == 0, out.stderr
    predicted = np.array([float(v) for v in out.stdout.split()[1:]])
    np.testing.assert_allclose(predicted, fastbp.load(model).predict(X), rtol=1e-6)
    out = run("train", "--data", tmp_path / "flowers.npz", "--epochs", "2", "--hidden", "4")
    assert out.returncode == 0 and "classification of 'y'" in out.stdout, out.stderr


def test_table_mistakes_say_what_is_wrong(tmp_path):
    _write_tables(tmp_path)
    model = tmp_path / "houses.fastbp"
    assert run("train", "--data", tmp_path / "houses.csv", "--epochs", "1", "--save", model).returncode == 0
    cases = [
        (["train", "--data", tmp_path / "text_feature.csv", "--target", "size"], 1, "'colour' is not numeric"),
        (["train", "--data", tmp_path / "houses.csv", "--target", "cost"], 2, "'cost' is not a column"),
        (["train", "--data", tmp_path / "missing.csv"], 1, "no such file"),
        (["predict", model, tmp_path / "text_feature.csv"], 1, "has no column 'length'"),
        (["predict", model, tmp_path / "houses.csv", "--proba"], 2, "needs a classifier"),
        (["info", tmp_path / "houses.csv"], 1, "not a readable fastbp model"),
    ]
    for args, code, message in cases:
        out = run(*args)
        assert out.returncode == code and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def test_quantile_regression_with_dropout_and_a_new_activation_from_the_command_line(tmp_path):
    import fastbp

    _write_tables(tmp_path)
    model = tmp_path / "houses.fastbp"
    out = run("train", "--data", tmp_path / "houses.csv", "--target", "price", "--epochs", "3", "--hidden", "8,4",
              "--activation", "silu,gelu", "--dropout", "0.2", "--loss", "quantile", "--quantile", "0.9",
              "--save", model)  # fmt: skip
    assert out.returncode == 0, out.stderr
    fitted = fastbp.load(model)
    assert (fitted.loss, fitted.quantile, fitted.activation, fitted.dropout) == ("quantile", 0.9, ("silu", "gelu"), 0.2)
    info = run("info", model)
    assert "8 (silu) -> 4 (gelu) -> 1 (identity, quantile)" in info.stdout, info.stdout

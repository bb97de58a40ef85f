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
    model = tmp_path / "model.pkl"
    out = run(
        "train", "--data", "synthetic", "--samples", "3000", "--epochs", "2", "--hidden", "32", "--save", str(model)
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("data: synthetic") and "3000 training" in lines[0]
    assert sum(line.startswith("Iteration") and "samples/s" in line for line in lines) == 2
    summary = next(line for line in lines if line.startswith("trained 2 epochs"))
    assert float(summary.rsplit(" ", 1)[1]) > 0.3  # ten classes: chance is 0.1
    assert sum(1 for line in lines if line.startswith("  ")) == 10  # the confusion matrix rows
    import pickle

    clf = pickle.loads(model.read_bytes())
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
        ([*TRAIN_SMALL, "--save", "/no/such/dir/m.pkl"], 1, "cannot write"),
        ([*TRAIN_SMALL, "--plot", "/no/such/dir/c.png"], 1, "cannot write"),
        ([*TRAIN_SMALL, "--save", "/"], 1, "is a folder"),
    ],
)
def test_user_mistakes_get_exit_codes_and_one_line(args, code, message):
    out = run(*args)
    assert out.returncode == code
    assert message in out.stderr and "Traceback" not in out.stderr and "validation_fraction" not in out.stderr
    assert "Iteration" not in out.stdout  # found before training, not after


def test_without_early_stopping_the_saved_model_is_the_last_epoch(tmp_path):
    """The command always trained with early stopping and saved the best epoch's weights, not the last."""
    import pickle
    import warnings

    import numpy as np

    from fastbp import MLPClassifier
    from fastbp.cli import hold_out
    from fastbp.datasets import make_mnist_like

    model_path = tmp_path / "model.pkl"
    out = run(*TRAIN_SMALL, "--save", str(model_path))
    assert out.returncode == 0, out.stderr
    assert sum("validation score" in line for line in out.stdout.splitlines()) == 3
    saved = pickle.loads(model_path.read_bytes())
    assert type(saved) is MLPClassifier and saved.n_iter_ == 3 and not saved.early_stopping
    X, y = make_mnist_like(70000, random_state=0, dtype=np.float32)
    X, y = X[:600], y[:600]
    rows, _ = hold_out(y, 0, 600)
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

    model_path = tmp_path / "model.pkl"
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

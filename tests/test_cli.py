"""``fastbp`` as a user runs it: a subprocess on a small synthetic set."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "fastbp", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


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
        (
            ["train", "--data", "synthetic", "--samples", "50", "--epochs", "1", "--save", "/no/such/dir/m.pkl"],
            1,
            "error",
        ),
    ],
)
def test_user_mistakes_get_exit_codes_and_one_line(args, code, message):
    out = run(*args)
    assert out.returncode == code
    assert message in out.stderr and "Traceback" not in out.stderr


def test_help_has_examples():
    out = run("train", "--help")
    assert out.returncode == 0 and "examples:" in out.stdout


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    out = run("train", "--data", "synthetic", "--samples", "600", "--epochs", "2", "--hidden", "8", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""Draw ``history_``: training and validation loss per epoch (the PNG in README.md).

    python docs/plot_history.py [OUTPUT.png]

Trains on scikit-learn's digits (bundled with scikit-learn, no download) with early stopping and a progress
bar where rich is installed; tests/test_training_features.py runs this script.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import fastbp  # noqa: E402


def main(output: Path) -> None:
    X, y = load_digits(return_X_y=True)
    model = fastbp.MLPClassifier((64,), early_stopping=True, max_iter=80, n_iter_no_change=15, random_state=0)
    try:
        from sklearn.callback import ProgressBar

        model.set_callbacks(ProgressBar())
    except ImportError:  # scikit-learn < 1.9 or no rich: no progress bar
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X / 16.0, y)
    epochs = [record["iteration"] for record in model.history_]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [r["loss"] for r in model.history_], label="training loss")
    ax.plot(epochs, [r["validation_loss"] for r in model.history_], label="validation loss")
    best = epochs[max(range(len(epochs)), key=lambda i: model.history_[i]["validation_score"])]
    ax.axvline(best, color="grey", linestyle=":", label=f"best validation accuracy (epoch {best}, kept)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("fastbp.MLPClassifier on digits: history_")
    fig.tight_layout()
    fig.savefig(output, dpi=90)
    print(f"{len(epochs)} epochs; best validation accuracy {model.best_validation_score_:.4f}; wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("history.png"))

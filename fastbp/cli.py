"""The ``fastbp`` command: ``fastbp train`` (the main job) and ``fastbp bench`` (the quick benchmark).

Exit codes: 0 success, 2 bad arguments (argparse, or ``--samples`` too small for the data), 130 training
interrupted by Ctrl-C (the model as it stands is still reported and saved), 1 any other failure, reported in
one line (no traceback for a user mistake such as a missing file or an unwritable output).
"""

from __future__ import annotations

import argparse
import math
import pickle
import secrets
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from fastbp.estimators import MLPClassifier

TRAIN_EXAMPLES = """examples:
  fastbp train                                   # Fashion-MNIST if installed, else MNIST, else synthetic
  fastbp train --data synthetic --epochs 3       # no files needed
  fastbp train --hidden 512,256 --solver sgd --learning-rate 0.05 --batch-size 64
  fastbp train --save model.pkl --plot curves.png

Without --early-stopping, 10% of the training rows are held out only to report validation accuracy each
epoch; the model reported and saved is the one after the last epoch. With it, training stops after --patience
epochs without improvement and keeps the epoch with the best validation accuracy.
"""


class UsageError(Exception):
    """A bad combination of arguments found after parsing (exit code 2, like argparse's own errors)."""


class _ReportingClassifier(MLPClassifier):
    """An MLPClassifier whose verbose line shows the accuracy on rows held out by the command.

    Without ``--early-stopping`` the estimator holds out nothing; the command holds out rows itself and scores
    them here after each epoch, which reads the weights and changes nothing.
    """

    held_out: tuple | None = None
    held_out_scores: list | None = None

    def _report_epoch(self, validation_score, seconds, n_samples):
        if validation_score is None and self.held_out is not None:
            validation_score = float(np.mean(self.predict(self.held_out[0]) == self.held_out[1]))
            self.held_out_scores.append(validation_score)
        super()._report_epoch(validation_score, seconds, n_samples)


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 256,128, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def _checked(kind: type, valid, requirement: str):
    """An argparse type: ``kind(text)`` that must satisfy ``valid``, or a one-line error saying what it must be."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v > 0, "> 0")
_finite_positive = _checked(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
_seed = _checked(int, lambda v: 0 <= v < 2**32, "from 0 to 4294967295")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastbp", description="Dense neural networks trained fast.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train an MLPClassifier and report accuracy and speed",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--data", choices=["auto", "fashion-mnist", "mnist", "synthetic"], default="auto")
    train.add_argument("--hidden", type=_hidden_sizes, default=(256, 128), help="hidden sizes (default 256,128)")
    train.add_argument("--activation", choices=["relu", "tanh", "logistic", "identity"], default="relu")
    train.add_argument("--solver", choices=["adam", "sgd"], default="adam")
    train.add_argument("--learning-rate", type=_finite_positive, default=1e-3)
    train.add_argument("--batch-size", type=_positive_int, default=128)
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--early-stopping", action="store_true", help="stop when validation accuracy stalls")
    train.add_argument("--patience", type=_positive_int, default=3, help="epochs without improvement")
    train.add_argument("--seed", type=_seed, default=0)
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--samples", type=_positive_int, help="use only the first N training rows")
    train.add_argument("--save", type=Path, help="write the fitted model here (pickle)")
    train.add_argument("--plot", type=Path, help="write loss and validation curves here (PNG, needs matplotlib)")
    bench = commands.add_parser("bench", help="time one epoch against the NumPy reference and the GEMM floor")
    bench.add_argument("--samples", type=_positive_int, default=12000)
    bench.add_argument("--rounds", type=_positive_int, default=2)
    return parser


def load_data(name: str, dtype, seed: int, out) -> tuple[str, tuple]:
    """(description, (X_train, y_train, X_test, y_test)) for --data."""
    from fastbp import datasets

    for title, option, loader in (
        ("Fashion-MNIST", "fashion-mnist", datasets.load_fashion_mnist),
        ("MNIST", "mnist", datasets.load_mnist),
    ):
        if name not in ("auto", option):
            continue
        try:
            return title, loader(download=name != "auto")  # auto: only what is already on disk
        except datasets.DatasetError as error:
            if name != "auto":
                raise
            out(f"{title} not found ({str(error).splitlines()[0]})")
    if name == "auto":
        out("using the synthetic MNIST-size set")
    X, y = datasets.make_mnist_like(70000, random_state=seed, dtype=dtype)
    return "synthetic MNIST-size set (fastbp.datasets.make_mnist_like)", (X[:60000], y[:60000], X[60000:], y[60000:])


def check_outputs(args) -> None:
    """Fail before training, not after it, on an output that cannot be written."""
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path is None:
            continue
        if path.is_dir():
            raise RuntimeError(f"{option} {path} is a folder")
        probe = path.with_name(f".{path.name}.{secrets.token_hex(6)}.probe")
        try:
            probe.open("xb").close()
            probe.unlink()
        except OSError as error:
            raise RuntimeError(f"{option}: cannot write {path} ({error.strerror})") from None
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise RuntimeError("--plot needs matplotlib (pip install matplotlib)") from None


def hold_out(y, seed: int, samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows): the estimator's stratified 10% split, or a UsageError if too small."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(np.arange(len(y)), test_size=0.1, stratify=y, random_state=seed)
    except ValueError:
        needed = 20 * len(np.unique(y))
        what = f"--samples {samples}" if samples else f"{len(y)} training rows"
        raise UsageError(
            f"{what} is too few to hold out validation rows with every class: use at least {needed}"
        ) from None


def train(args, out=print) -> int:
    from sklearn.metrics import confusion_matrix

    from fastbp._interrupt import TrainingInterruptedWarning

    check_outputs(args)
    dtype = np.dtype(args.dtype).type
    name, (X_train, y_train, X_test, y_test) = load_data(args.data, dtype, args.seed, out)
    X_train, X_test = X_train.astype(dtype, copy=False), X_test.astype(dtype, copy=False)
    if args.samples:
        X_train, y_train = X_train[: args.samples], y_train[: args.samples]
    out(f"data: {name}, {X_train.shape[0]} training and {X_test.shape[0]} test rows, {X_train.shape[1]} features")
    rows, validation = hold_out(y_train, args.seed, args.samples)
    clf = _ReportingClassifier(
        args.hidden,
        args.activation,
        solver=args.solver,
        learning_rate_init=args.learning_rate,
        batch_size=args.batch_size,
        max_iter=args.epochs,
        early_stopping=args.early_stopping,  # holds out the same rows as hold_out, from the same seed
        n_iter_no_change=args.patience if args.early_stopping else args.epochs + 1,
        random_state=args.seed,
        verbose=True,
    )
    if not args.early_stopping:
        clf.held_out, clf.held_out_scores = (X_train[validation], y_train[validation]), []
        X_train, y_train = X_train[rows], y_train[rows]
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # ConvergenceWarning at --epochs is the expected end here
        clf.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    interrupted = any(issubclass(w.category, TrainingInterruptedWarning) for w in caught)
    predicted = clf.predict(X_test)
    accuracy = float(np.mean(predicted == y_test))
    rate = clf.t_ / seconds  # t_ counts the training rows seen (the validation tenth is not trained on)
    out(f"trained {clf.n_iter_} epochs in {seconds:.1f} s ({rate:,.0f} samples/s); test accuracy {accuracy:.4f}")
    if args.early_stopping:
        out(f"kept the weights of the best validation epoch ({clf.best_validation_score_:.4f})")
    out("confusion matrix (rows: true class, columns: predicted):")
    for label, row in zip(clf.classes_, confusion_matrix(y_test, predicted, labels=clf.classes_)):
        out(f"  {label!s:>3} " + " ".join(f"{v:5d}" for v in row))
    if args.save:
        from fastbp.persistence import write_atomically

        model = MLPClassifier(**clf.get_params())  # the plain estimator, without the held-out rows
        model.__dict__.update({k: v for k, v in clf.__dict__.items() if not k.startswith("held_out")})
        write_atomically(args.save, lambda file: pickle.dump(model, file))
        out(f"model saved to {args.save}")
    if args.plot:
        plot_curves(clf, args.plot, out)
    if interrupted:
        out(f"training was interrupted by Ctrl-C after {clf.n_iter_} epochs; the results above are for that model")
        return 130
    return 0


def plot_curves(clf, path: Path, out) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib (pip install matplotlib)") from None
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = np.arange(1, len(clf.loss_curve_) + 1)
    ax.plot(epochs, clf.loss_curve_, label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    other = ax.twinx()
    scores = clf.validation_scores_ if clf.early_stopping else clf.held_out_scores
    other.plot(epochs, scores, color="tab:orange", label="validation accuracy")
    other.set_ylabel("validation accuracy")
    lines = ax.get_lines() + other.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    out(f"curves saved to {path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fastbp`` and ``python -m fastbp``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return train(args)
        from fastbp.benchmarks import quick_table

        quick_table(args.samples, args.rounds)
        return 0
    except UsageError as error:
        print(f"fastbp {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastbp: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a user-facing command: one line, not a traceback
        print(f"fastbp: error: {error}", file=sys.stderr)
        return 1

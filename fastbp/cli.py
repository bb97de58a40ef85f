"""The ``fastbp`` command: ``train`` (the main job), ``predict``, ``info``, ``compile`` and ``bench``.

Exit codes: 0 success, 2 bad arguments (argparse, or ``--samples`` too small for the data), 130 training
interrupted by Ctrl-C (the model as it stands is still reported and saved), 1 any other failure, reported in
one line (no traceback for a user mistake such as a missing file, a table that does not fit the model or an
unwritable output).
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from fastbp.estimators import MLPClassifier, MLPRegressor
from fastbp.kernels.activations import ACTIVATIONS
from fastbp.kernels.losses import LOSSES
from fastbp.optimizers import OPTIMIZERS
from fastbp.precompile import REGRESSION_LOSSES, SOLVERS, TASKS, compile_for, compile_kernels, configurations, fit_parts
from fastbp.tables import FORMATS, read_table, write_predictions
from fastbp.threads import blas_threads

NAMED_DATA = ("auto", "fashion-mnist", "mnist", "synthetic")
TRAIN_EXAMPLES = """examples:
  fastbp train                                   # Fashion-MNIST if installed, else MNIST, else synthetic
  fastbp train --data synthetic --epochs 3       # no files needed
  fastbp train --hidden 512,256 --solver sgd --learning-rate 0.05 --batch-size 64
  fastbp train --save model.fastbp --plot curves.png
  fastbp train --data houses.csv --target price  # a table: CSV, Parquet or .npz (X, y)
  fastbp predict model.fastbp new_houses.csv --output predictions.csv

Without --early-stopping, 10% of the training rows are held out only to report a validation score each
epoch; the model reported and saved is the one after the last epoch. With it, training stops after --patience
epochs without improvement and keeps the epoch with the best validation score. A table's target is --target
(default: its last column); text, boolean or integer targets mean classification, float targets regression
(--task overrides); --test-fraction of its rows are held out for the test metrics.
"""


class UsageError(Exception):
    """A bad combination of arguments found after parsing (exit code 2, like argparse's own errors)."""


class _ReportsHeldOutScore:
    """An estimator whose verbose line shows its score on rows held out by the command.

    Without ``--early-stopping`` the estimator holds out nothing; the command holds out rows itself and scores
    them here after each epoch (accuracy or R^2), which reads the weights and changes nothing.
    """

    held_out: tuple | None = None
    held_out_scores: list | None = None

    def _report_epoch(self, validation_score, seconds, n_samples):
        if validation_score is None and self.held_out is not None:
            validation_score = float(self.score(*self.held_out))
            self.held_out_scores.append(validation_score)
        super()._report_epoch(validation_score, seconds, n_samples)


class _ReportingClassifier(_ReportsHeldOutScore, MLPClassifier):
    pass


class _ReportingRegressor(_ReportsHeldOutScore, MLPRegressor):
    pass


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 256,128, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def _activations(text: str) -> str | tuple[str, ...]:
    """One activation name for every hidden layer, or one per hidden layer separated by commas."""
    names = tuple(text.split(","))
    unknown = [name for name in names if name not in ACTIVATIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown activation {unknown[0]!r}; expected {', '.join(ACTIVATIONS)}")
    return names[0] if len(names) == 1 else names


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


def _data_source(text: str) -> str:
    if text in NAMED_DATA or Path(text).suffix.lower() in FORMATS:
        return text
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(NAMED_DATA)} or a {'/'.join(FORMATS)} file")


_fraction = _checked(float, lambda v: 0 <= v < 1, "from 0 up to (not including) 1")
_open_fraction = _checked(float, lambda v: 0 < v < 1, "between 0 and 1 (both excluded)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastbp", description="Dense neural networks trained fast.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train an MLPClassifier and report accuracy and speed",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--data", type=_data_source, default="auto", help=f"{', '.join(NAMED_DATA)}, or a {'/'.join(FORMATS)} file"
    )
    train.add_argument("--target", help="the target column of a table (default: its last column)")
    train.add_argument("--task", choices=["auto", "classification", "regression"], default="auto")
    train.add_argument("--test-fraction", type=_fraction, default=0.2, help="rows of a table held out for testing")
    train.add_argument("--hidden", type=_hidden_sizes, default=(256, 128), help="hidden sizes (default 256,128)")
    train.add_argument(
        "--activation", type=_activations, default="relu", metavar="|".join(ACTIVATIONS),
        help="hidden activation, or one per hidden layer (e.g. gelu,relu)",
    )  # fmt: skip
    train.add_argument("--dropout", type=_fraction, default=0.0, help="dropout rate of the hidden layers")
    train.add_argument(
        "--loss", choices=[name for name, entry in LOSSES.items() if entry.output in ("identity", "exp")],
        help="regression loss (default squared_error)",
    )  # fmt: skip
    train.add_argument("--quantile", type=_open_fraction, help="the quantile --loss quantile predicts")
    train.add_argument("--delta", type=_finite_positive, default=1.0, help="--loss huber's threshold")
    train.add_argument("--solver", choices=sorted(OPTIMIZERS), default="adam")
    train.add_argument("--learning-rate", type=_finite_positive, default=1e-3)
    train.add_argument("--batch-size", type=_positive_int, default=128)
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--early-stopping", action="store_true", help="stop when validation accuracy stalls")
    train.add_argument("--patience", type=_positive_int, default=3, help="epochs without improvement")
    train.add_argument("--seed", type=_seed, default=0)
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--samples", type=_positive_int, help="use only the first N training rows")
    train.add_argument("--save", type=Path, help="write the fitted model here (fastbp's safe format, fastbp.load)")
    train.add_argument("--plot", type=Path, help="write loss and validation curves here (PNG, needs matplotlib)")
    predict = commands.add_parser("predict", help="predict every row of a table with a saved model")
    predict.add_argument("model", type=Path, help="a file written by fastbp train --save or fastbp.save")
    predict.add_argument("data", type=Path, help=f"a {'/'.join(FORMATS)} file; other columns are ignored")
    predict.add_argument("--output", type=Path, help="CSV file to write (default: standard output)")
    predict.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    info = commands.add_parser("info", help="describe a saved model")
    info.add_argument("model", type=Path)
    compile_ = commands.add_parser(
        "compile",
        help="compile the kernels ahead of time, so that a first fit does not wait for them",
        description="Compile the kernels that fits and predictions with these options need, into the compile "
        "cache (5-10 s per configuration with an empty cache). Run it as the user, and with the "
        "FASTBP_CACHE_DIR / NUMBA_CACHE_DIR, that the later fits will have.",
    )
    compile_.add_argument("--dtype", nargs="+", choices=["float32", "float64"], default=["float32", "float64"])
    compile_.add_argument("--activation", nargs="+", choices=list(ACTIVATIONS), default=["relu"])
    compile_.add_argument("--task", nargs="+", choices=list(TASKS), default=list(TASKS))
    compile_.add_argument(
        "--loss", nargs="+", choices=list(REGRESSION_LOSSES), default=["squared_error"], help="regression losses"
    )
    compile_.add_argument("--solver", nargs="+", choices=list(SOLVERS), default=["adam"])
    compile_.add_argument("--dropout", action="store_true", help="the variant with dropout")
    compile_.add_argument("--sparse", action="store_true", help="for scipy.sparse input instead of dense arrays")
    bench = commands.add_parser("bench", help="time one epoch against the NumPy reference and the GEMM floor")
    bench.add_argument("--samples", type=_positive_int, default=12000)
    bench.add_argument("--rounds", type=_positive_int, default=2)
    return parser


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


def load_named(name: str, dtype, seed: int, out) -> tuple[str, tuple]:
    """(description, (X_train, y_train, X_test, y_test)) for the named data sets."""
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


def load_table(args, dtype) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], bool]:
    """(description, X, y, training rows, test rows, feature names, classification?) for a table file."""
    from sklearn.model_selection import train_test_split

    table = read_table(args.data)
    target = args.target or table.names[-1]
    if target not in table.columns:
        raise UsageError(f"--target {target!r} is not a column of {args.data} (columns: {', '.join(table.names[:8])})")
    features = [name for name in table.names if name != target]
    if not features:
        raise UsageError(f"{args.data} has no feature columns besides the target {target!r}")
    X, y = table.features(features, dtype), table.columns[target]
    if y.dtype.kind not in "biufUOSMm" or (y.dtype == object and any(v is None for v in y)):
        raise RuntimeError(f"target column {target!r} has missing values")
    classify = args.task == "classification" or (args.task == "auto" and y.dtype.kind != "f")
    if not classify and y.dtype.kind not in "biuf":
        raise UsageError(f"--task regression needs a numeric target; {target!r} holds text")
    rows = np.arange(len(y))
    if args.test_fraction:
        stratify = y if classify and min(np.unique(y, return_counts=True)[1]) >= 2 else None
        train, test = train_test_split(rows, test_size=args.test_fraction, random_state=args.seed, stratify=stratify)
    else:
        train, test = rows, rows[:0]
    what = f"{args.data} ({'classification' if classify else 'regression'} of {target!r})"
    return what, X, y, train, test, features, classify


def _take(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]``, as a view (no copy of X) where ``rows`` is 0, 1, ..., k - 1."""
    if rows.size and rows[0] == 0 and rows[-1] == rows.size - 1 and (np.diff(rows) == 1).all():
        return array[: rows.size]
    return array[rows]


def hold_out(y, seed: int, samples: int | None, classify: bool) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows): the estimator's 10% split (stratified for classification)."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(np.arange(len(y)), test_size=0.1, stratify=y if classify else None, random_state=seed)
    except ValueError:
        needed = 20 * len(np.unique(y)) if classify else 20
        what = f"--samples {samples}" if samples else f"{len(y)} training rows"
        raise UsageError(
            f"{what} is too few to hold out validation rows with every class: use at least {needed}"
        ) from None


def train(args, out=print) -> int:
    from fastbp._interrupt import TrainingInterruptedWarning

    check_outputs(args)
    if (args.loss == "quantile") != (args.quantile is not None):
        raise UsageError("--loss quantile and --quantile go together")
    if isinstance(args.activation, tuple) and len(args.activation) != len(args.hidden):
        raise UsageError(
            f"--activation lists {len(args.activation)} names for {len(args.hidden)} hidden layers: give one name, "
            "or one per hidden layer"
        )
    dtype = np.dtype(args.dtype).type
    features, classify = None, True
    if args.data in NAMED_DATA:
        name, (X, y, X_test, y_test) = load_named(args.data, dtype, args.seed, out)
        X, X_test = X.astype(dtype, copy=False), X_test.astype(dtype, copy=False)
        rows = np.arange(len(y))
    else:
        name, X, y, rows, test, features, classify = load_table(args, dtype)
        X_test, y_test = X[test], y[test]
    if classify and args.loss:
        raise UsageError("--loss is for regression; classification always minimizes the log loss")
    if args.samples:
        rows = rows[: args.samples]
    out(f"data: {name}, {rows.size} training and {X_test.shape[0]} test rows, {X.shape[1]} features")
    # the command's own hold-out without --early-stopping; with it, the estimator splits (this checks the size)
    fit_rows, validation = hold_out(y[rows], args.seed, args.samples, classify)
    options = {"dropout": args.dropout}
    if not classify:
        options.update(loss=args.loss or "squared_error", quantile=args.quantile, delta=args.delta)
    model = (_ReportingClassifier if classify else _ReportingRegressor)(
        **options,
        hidden_layer_sizes=args.hidden,
        activation=args.activation,
        solver=args.solver,
        learning_rate_init=args.learning_rate,
        batch_size=args.batch_size,
        max_iter=args.epochs,
        early_stopping=args.early_stopping,
        n_iter_no_change=args.patience if args.early_stopping else args.epochs + 1,
        random_state=args.seed,
        verbose=True,
    )
    if not args.early_stopping:
        model.held_out, model.held_out_scores = (X[rows[validation]], y[rows[validation]]), []
        rows = rows[fit_rows]
    X_train, y_train = _take(X, rows), _take(y, rows)  # one copy of the training rows at most
    # compiled apart from the first epoch, so that every epoch line shows training speed
    seconds = compile_for(model, X_train, y_train)
    cached = "loaded from the compile cache" if seconds < 1 else "compiled once, kept in the compile cache"
    parts = fit_parts(model, X_train, len(y_train))
    step = f"parallel step over {parts} threads" if parts > 1 else f"serial step, BLAS {blas_threads()} threads"
    out(f"kernels ready in {seconds:.1f} s ({cached}); {step}")
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # ConvergenceWarning at --epochs is the expected end here
        model.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    interrupted = any(issubclass(w.category, TrainingInterruptedWarning) for w in caught)
    rate = model.t_ / seconds  # t_ counts the training rows seen (the validation tenth is not trained on)
    out(f"trained {model.n_iter_} epochs in {seconds:.1f} s ({rate:,.0f} samples/s)")
    if args.early_stopping:
        out(f"kept the weights of the best validation epoch ({model.best_validation_score_:.4f})")
    if len(y_test):
        report_test(model, X_test, y_test, out)
    if args.save:
        from fastbp.persistence import save

        plain = (MLPClassifier if classify else MLPRegressor)(**model.get_params())  # without the held-out rows
        plain.__dict__.update({k: v for k, v in model.__dict__.items() if not k.startswith("held_out")})
        if features is not None:
            plain.feature_names_in_ = np.asarray(features, dtype=object)
        save(plain, args.save)
        out(f"model saved to {args.save}")
    if args.plot:
        plot_curves(model, args.plot, out)
    if interrupted:
        out(f"training was interrupted by Ctrl-C after {model.n_iter_} epochs; the results above are for that model")
        return 130
    return 0


def report_test(model, X_test, y_test, out) -> None:
    """Test metrics: accuracy and (up to 20 classes) a confusion matrix, or R^2 and mean absolute error."""
    from sklearn.metrics import confusion_matrix, mean_absolute_error, r2_score

    predicted = model.predict(X_test)
    if isinstance(model, MLPRegressor):
        mae = mean_absolute_error(y_test, predicted)
        out(f"test R^2 {r2_score(y_test, predicted):.4f}, mean absolute error {mae:.4g}")
        return
    out(f"test accuracy {float(np.mean(predicted == y_test)):.4f}")
    if len(model.classes_) <= 20:
        out("confusion matrix (rows: true class, columns: predicted):")
        width = max(3, *(len(str(c)) for c in model.classes_))
        for label, row in zip(model.classes_, confusion_matrix(y_test, predicted, labels=model.classes_)):
            out(f"  {label!s:>{width}} " + " ".join(f"{v:5d}" for v in row))


def predict(args, out=sys.stdout) -> int:
    """Predictions for every row of a table, as CSV."""
    from fastbp.persistence import load

    model = load(args.model)
    if args.proba and not hasattr(model, "predict_proba"):
        raise UsageError("--proba needs a classifier; this model is a regressor")
    table = read_table(args.data)
    names = list(getattr(model, "feature_names_in_", []))
    if not names:  # trained without column names: every column of the table, in order
        names = table.names
        if len(names) != model.n_features_in_:
            raise RuntimeError(
                f"the model takes {model.n_features_in_} features but {args.data} has {len(names)} columns"
            )
    X = table.features(names, model.coefs_[0].dtype)  # names a missing or non-numeric column
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")  # columns chosen by name
        result = model.predict_proba(X) if args.proba else model.predict(X)
    if hasattr(result, "toarray"):  # sparse multilabel predictions
        result = result.toarray()
    if args.proba:
        columns = {f"proba_{c}": result[:, j] for j, c in enumerate(model.classes_)}
    elif result.ndim == 1:
        columns = {"prediction": result}
    else:
        columns = {f"prediction_{j}": result[:, j] for j in range(result.shape[1])}
    write_predictions(args.output, columns, out)
    return 0


def info(args, out=print) -> int:
    """What a saved model is: class, layers, labels, features and its training figures."""
    from fastbp.persistence import load, read_metadata

    meta, model = read_metadata(args.model), load(args.model)
    net = model._network()
    out(f"{meta['class']} written by fastbp {meta.get('fastbp_version')} (model format {meta['format_version']})")
    layers = [str(net.layer_sizes[0])]
    for size, activation in zip(net.layer_sizes[1:], [*net.hidden_activations, f"{net.output}, {net.loss}"]):
        layers.append(f"{size} ({activation})")
    out(f"layers: {' -> '.join(layers)}; {net.params.size:,} {net.dtype} parameters")
    names = getattr(model, "feature_names_in_", None)
    shown = "" if names is None else f": {', '.join(map(str, names[:8]))}{', ...' if len(names) > 8 else ''}"
    out(f"features: {model.n_features_in_}{shown}")
    if hasattr(model, "classes_"):
        classes = list(map(str, model.classes_))
        out(f"classes: {len(classes)}: {' '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}")
    figures = [f"{model.n_iter_} iterations", f"{model.t_:,} samples seen"]
    if hasattr(model, "loss_"):
        figures.append(f"loss {model.loss_:.6g}")
    if getattr(model, "best_validation_score_", None) is not None:
        figures.append(f"best validation score {model.best_validation_score_:.4f}")
    out(f"training: {', '.join(figures)}; solver {model.solver}")
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
    what = "validation accuracy" if isinstance(clf, MLPClassifier) else "validation R^2"
    other.plot(epochs, scores, color="tab:orange", label=what)
    other.set_ylabel(what)
    lines = ax.get_lines() + other.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    out(f"curves saved to {path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fastbp`` and ``python -m fastbp``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "predict", "info"):
            return {"train": train, "predict": predict, "info": info}[args.command](args)
        if args.command == "compile":
            options = (args.dtype, args.activation, args.task, args.loss, args.solver, args.dropout, args.sparse)
            compile_kernels(configurations(*options))
            return 0
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

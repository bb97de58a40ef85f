"""Does dropout narrow the gap between training and test accuracy? Fashion-MNIST, 784-512-256-10, 30 epochs.

    python bench/dropout_fashion.py [--epochs 30] [--rates 0,0.2] [--seed 0]

Adam 1e-3, batch 128, shuffled, no L2, the same seed for every rate; prints training and test accuracy, their
gap and the seconds for each dropout rate. Needs Debian's dataset-fashion-mnist (or the files in the fastbp
cache).
"""

from __future__ import annotations

import argparse
import time
import warnings


def main() -> None:
    import fastbp
    from fastbp.datasets import load_fashion_mnist

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rates", default="0,0.2", help="comma-separated dropout rates")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    X, y, X_test, y_test = load_fashion_mnist(download=False)
    warnings.simplefilter("ignore")
    for rate in (float(r) for r in args.rates.split(",")):
        model = fastbp.MLPClassifier(
            (512, 256), dropout=rate, alpha=0.0, batch_size=128, max_iter=args.epochs, tol=0,
            n_iter_no_change=args.epochs + 1, random_state=args.seed,
        )  # fmt: skip
        started = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - started
        train, test = model.score(X, y), model.score(X_test, y_test)
        print(
            f"dropout {rate:.2f}: training accuracy {train:.4f}, test accuracy {test:.4f}, gap {train - test:.4f}, "
            f"{seconds:.1f} s"
        )


if __name__ == "__main__":
    main()

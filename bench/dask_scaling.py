"""Dask measurements: distributed vs local lbfgs, model averaging vs single machine, 1 vs 2 workers.

    python bench/dask_scaling.py [--rows 60000] [--epochs 5]

Prints one line per measurement (the figures quoted in the Dask issue's closing note). The memmap peak-memory
figure comes from ``python -m pytest tests/test_out_of_core.py``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main():
    import dask.array as da
    import distributed

    import fastbp
    from fastbp.datasets import load_fashion_mnist, make_mnist_like

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    try:
        X, y, X_test, y_test = load_fashion_mnist(download=False)
        name = "Fashion-MNIST"
    except Exception:
        X, y = make_mnist_like(args.rows + 10000, random_state=0)
        X, y, X_test, y_test = X[: args.rows], y[: args.rows], X[args.rows :], y[args.rows :]
        name = "synthetic MNIST-size"
    X, y = X[: args.rows], y[: args.rows]
    X64 = X.astype(np.float64)
    print(f"data: {name}, {len(X)} training rows, {len(X_test)} test rows")

    lbfgs = {"hidden_layer_sizes": (64,), "solver": "lbfgs", "max_iter": 20, "random_state": 0, "tol": 0}
    local, local_s = timed(lambda: fastbp.MLPClassifier(**lbfgs).fit(X64, y))
    adam = {"hidden_layer_sizes": (256, 128), "solver": "adam", "batch_size": 128, "max_iter": args.epochs}
    single, single_s = timed(lambda: fastbp.MLPClassifier(**adam, random_state=0).fit(X, y))
    print(f"single machine: lbfgs {local_s:.1f} s, adam {args.epochs} epochs {single_s:.1f} s, "
          f"test accuracy {single.score(X_test, y_test):.4f}")  # fmt: skip
    for workers in (1, 2):
        with distributed.LocalCluster(
            n_workers=workers, threads_per_worker=2 // workers, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=50,
        ) as cluster, distributed.Client(cluster):  # fmt: skip
            chunks = len(X) // 4
            Xd64 = da.from_array(X64, chunks=(chunks, X.shape[1])).persist()
            Xd = da.from_array(X, chunks=(chunks, X.shape[1])).persist()
            yd = da.from_array(y, chunks=chunks)
            remote, remote_s = timed(lambda Xd64=Xd64, yd=yd: fastbp.MLPClassifier(**lbfgs).fit(Xd64, yd))
            averaged, averaged_s = timed(lambda Xd=Xd, yd=yd: fastbp.MLPClassifier(**adam, random_state=0).fit(Xd, yd))
            difference = abs(remote.loss_ - local.loss_) / local.loss_
            print(f"{workers} worker(s): lbfgs {remote_s:.1f} s (loss {remote.loss_:.10f} vs local "
                  f"{local.loss_:.10f}, relative difference {difference:.1e}); model-averaged adam "
                  f"{averaged_s:.1f} s, test accuracy {averaged.score(X_test, y_test):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()

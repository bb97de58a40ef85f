"""The parallel step against the serial one, batch size by batch size: where the crossover lies.

    python bench/parallel_step.py [batch sizes ...] [float64] [sgd] [shuffle]

One process, 60,000 x 784 (784-256-128-10, ReLU, softmax), Adam unless ``sgd``, float32 unless ``float64``.
Per batch size the GEMM floor (``fastbp.benchmarks.gemm_floor``: the bare products, two-thread BLAS), then
``Network.train_epoch`` with ``threads=1`` (the serial step) and ``threads=numba.get_num_threads()`` (the
parallel step), taking turns, best of 3 epochs each; ratios to the floor. ``fastbp.threads.PARALLEL_MAX_BATCH``
is set from this (docs/design.md "The parallel step").
"""

from __future__ import annotations

import sys
import time

import numba
import numpy as np

import fastbp
from fastbp.benchmarks import LEARNING_RATE, SIZES, gemm_floor, load_data


def main() -> None:
    dtype = np.float64 if "float64" in sys.argv else np.float32
    optimizer = "sgd" if "sgd" in sys.argv else "adam"
    shuffle = "shuffle" in sys.argv
    data = load_data(60000, dtype)
    threads = numba.get_num_threads()
    print(f"{optimizer}, {np.dtype(dtype).name}, shuffle={shuffle}, numba threads {threads}")
    for batch_size in [int(a) for a in sys.argv[1:] if a.isdigit()] or [32, 64, 128, 200, 256, 512]:
        net = fastbp.Network(SIZES, "relu", "softmax", dtype=dtype).initialize(0)
        rate = LEARNING_RATE[optimizer]
        opts = {k: fastbp.Adam(rate) if optimizer == "adam" else fastbp.SGD(rate, 0.0) for k in (1, threads)}
        workspace = net.workspace(batch_size)
        rng = np.random.default_rng(0)

        def run(k, net=net, batch_size=batch_size, opts=opts, rng=rng, workspace=workspace):
            t = time.perf_counter()
            net.train_epoch(data.X, data.Y, batch_size, opts[k], shuffle, rng, workspace=workspace, threads=k)
            return time.perf_counter() - t

        floor = gemm_floor(data, batch_size, optimizer)
        floor(), run(1), run(threads)  # compile, warm up
        best = {"floor": [], "serial": [], "parallel": []}
        for _ in range(3):
            t = time.perf_counter()
            floor()
            best["floor"].append(time.perf_counter() - t)
            best["serial"].append(run(1))
            best["parallel"].append(run(threads))
        s = {name: min(times) for name, times in best.items()}
        print(
            f"batch {batch_size}: floor {s['floor']:.3f} s, serial {s['serial']:.3f} s "
            f"({s['serial'] / s['floor']:.2f}), parallel {s['parallel']:.3f} s ({s['parallel'] / s['floor']:.2f}), "
            f"parallel/serial {s['parallel'] / s['serial']:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

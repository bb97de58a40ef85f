"""Run the benchmark suite and print the ratio table; save the JSON (and a PNG chart if matplotlib exists).

    python bench/run.py            # full: 60,000 rows, 3 rounds, float32 and float64 (about 15 minutes)
    python bench/run.py --quick    # 12,000 rows, one round (under 3 minutes on 2 cores)
    python bench/run.py --report bench/results/epoch.json   # only print the table of an earlier run

Every ratio divides two times measured in the same run (best of the rounds), so it survives a noisy machine
better than the seconds do.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
RIVALS = ["numpy_reference", "sklearn", "pytorch", "jax"]


def load(path: Path) -> dict:
    """{(optimizer, batch, dtype): {competitor: best seconds, "threads": {competitor: n}}} from a JSON file."""
    table: dict = defaultdict(lambda: {"threads": {}})
    for bench in json.loads(path.read_text())["benchmarks"]:
        info = bench["extra_info"]
        if "competitor" in info:
            key = (info["optimizer"], info["batch_size"], info["dtype"])
            table[key][info["competitor"]] = bench["stats"]["min"]
            if "threads" in info:
                table[key]["threads"][info["competitor"]] = info["threads"]
    return table


def other_results(path: Path) -> list[str]:
    """Prediction, start-up and memory lines from the same JSON file (bench/test_predict.py)."""
    groups: dict = defaultdict(dict)
    lines = []
    for bench in json.loads(path.read_text())["benchmarks"]:
        info = bench["extra_info"]
        if "prediction" in info:
            groups[bench["group"]][info["prediction"]] = bench["stats"]["min"]
        elif "import_to_first_step_s" in info:
            lines.append(
                f"start-up, import to first training step (warm cache): {info['import_to_first_step_s']:.2f} s"
            )
        elif "cold_start" in info:
            cold = info["cold_start"]
            lines.append(
                f"cold start, empty compile cache: import {cold['import']:.1f} s, first default fit (float32 "
                f"Adam) {cold['first_fit']:.1f} s, first predict_proba {cold['first_predict']:.1f} s"
            )
        elif "growth_mb" in info:
            lines.append(f"fit peak allocation beyond X ({info['x_mb']:.0f} MB float32): {info['growth_mb']:.1f} MB")
    for group, times in sorted(groups.items()):
        fast = times.get("fastbp")
        parts = [f"{name} {seconds * 1e6:,.0f} us" for name, seconds in sorted(times.items())]
        ratios = [f"fastbp/{name} {fast / seconds:.2f}" for name, seconds in sorted(times.items()) if name != "fastbp"]
        lines.append(f"{group}: " + ", ".join(parts) + " (" + ", ".join(ratios) + ")")
    return lines


def threads() -> str:
    """The threads every row ran with: numba's pool and each BLAS library's (the same process settings)."""
    import numba
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info() if i["user_api"] == "blas")
    numba_threads = f"numba {numba.get_num_threads()} (the parallel step's parts: Adam/momentum, batch <= 128)"
    return f"threads: {numba_threads}, BLAS {blas or 'not loaded'} (held at 1 during a parallel-step epoch)"


THREADS_OF = ["fastbp", "pytorch", "jax"]  # the threads column: these competitors' thread counts, in this order


def format_table(table: dict) -> str:
    head = ["optimizer", "batch", "dtype", "floor s", "fastbp s", "fastbp/floor", "fastbp/update floor"]
    head += ["estimator/floor", "threads " + "/".join(THREADS_OF)]
    head += [f"fastbp/{r}" for r in RIVALS] + [f"{r}/floor" for r in RIVALS]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    order = {"sgd": 0, "adam": 1}
    for key in sorted(table, key=lambda k: (k[2], order[k[0]], k[1])):
        row = table[key]
        floor, fast = row.get("gemm_floor"), row.get("fastbp")

        def ratio(a, b):
            return f"{a / b:.2f}" if a and b else "-"

        cells = [key[0], str(key[1]), key[2], f"{floor:.3f}" if floor else "-", f"{fast:.3f}" if fast else "-"]
        cells += [ratio(fast, floor), ratio(fast, row.get("gemm_floor_with_update"))]
        cells += [ratio(row.get("fastbp_estimator"), floor)]
        cells += ["/".join(str(row["threads"].get(name, "-")) for name in THREADS_OF)]
        cells += [ratio(fast, row.get(r)) for r in RIVALS] + [ratio(row.get(r), floor) for r in RIVALS]
        if "fastbp_shuffled" in row:
            cells[4] += f" (shuffled {row['fastbp_shuffled']:.3f})"
        lines.append(" | ".join(cells))
    for key, row in sorted(table.items()):
        options = [f"{name[7:]} {row[name] / row['fastbp']:.2f}" for name in row if name.startswith("option ")]
        if options and row.get("fastbp"):
            lines.append(f"\noptions, epoch / plain fastbp epoch, {key[0]} b{key[1]} {key[2]}: " + ", ".join(options))
    return "\n".join(lines)


def chart(table: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)")
        return
    keys = sorted(table, key=lambda k: (k[2], k[0], k[1]))
    competitors = ["fastbp", "fastbp_estimator", *RIVALS]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(competitors)
    for i, name in enumerate(competitors):
        values = [table[k].get(name, 0) / table[k]["gemm_floor"] if table[k].get("gemm_floor") else 0 for k in keys]
        ax.bar([x + i * width for x in range(len(keys))], values, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([x + 0.4 for x in range(len(keys))], [f"{o} b{b}\n{d}" for o, b, d in keys], fontsize=8)
    ax.set_ylabel("epoch time / GEMM floor (lower is better)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"chart: {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12,000 rows, one round")
    parser.add_argument("--report", type=Path, help="print the table of an existing JSON file and stop")
    parser.add_argument("-k", default="", help="pytest -k expression to run a subset")
    args = parser.parse_args(argv)
    path = args.report
    if path is None:
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        path = out / ("epoch-quick.json" if args.quick else "epoch.json")
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", f"--benchmark-json={path}"]
        cmd += (
            ["--benchmark-columns=min,mean,rounds"]
            + (["--quick"] if args.quick else [])
            + (["-k", args.k] if args.k else [])
        )
        code = subprocess.call(cmd)
        if code != 0:
            return code
    table = load(path)
    print(threads())
    print(format_table(table))
    print("\n".join(other_results(path)))
    chart(table, path.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

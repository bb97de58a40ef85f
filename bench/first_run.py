"""How long a newcomer waits: import and the first fit of each kind, with an empty and then a warm compile cache.

Each measurement runs in a fresh process whose ``NUMBA_CACHE_DIR`` is a new empty folder (cold), then again in
another process sharing that folder (warm)::

    python bench/first_run.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, time, warnings
t0 = time.perf_counter()
import numpy as np, scipy.sparse, fastbp
times = {"import": time.perf_counter() - t0}
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X = rng.normal(size=(2000, 50)); y = rng.integers(0, 3, 2000)
for name, make, data in [
    ("first fit, float64 adam", lambda: fastbp.MLPClassifier((32,), max_iter=2), X),
    ("then float32 adam", lambda: fastbp.MLPClassifier((32,), max_iter=2), X.astype(np.float32)),
    ("then float64 sgd", lambda: fastbp.MLPClassifier((32,), solver="sgd", max_iter=2), X),
    ("then float64 lbfgs", lambda: fastbp.MLPClassifier((32,), solver="lbfgs", max_iter=2), X),
    ("then sparse float64 adam", lambda: fastbp.MLPClassifier((32,), max_iter=2), scipy.sparse.csr_matrix(X)),
]:
    t = time.perf_counter()
    make().fit(data, y).predict_proba(data)
    times[name] = time.perf_counter() - t
print(json.dumps(times))
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold cache", "warm cache"):
            run = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
            times = json.loads(run.stdout)
            print(f"{label}: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))


if __name__ == "__main__":
    main()

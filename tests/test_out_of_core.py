"""fit and partial_fit on an np.memmap larger than the memory the process may allocate."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

CHILD = textwrap.dedent(
    """
    import resource, sys, warnings
    import numpy as np
    import fastbp

    def anonymous_mb():  # memory that is the process's own, not pages of the mapped file
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith("RssAnon")) / 1024

    path, rows = sys.argv[1], int(sys.argv[2])
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, 256))
    y = (np.arange(rows) % 4).astype(np.int64)
    warnings.simplefilter("ignore")
    fastbp.MLPClassifier((32,), max_iter=1).fit(X[:1000], y[:1000])  # load the compiled kernels first
    with open("/proc/self/status") as status:
        data_kb = next(int(l.split()[1]) for l in status if l.startswith("VmData"))
    limit = (data_kb + 150 * 1024) * 1024  # the heap may grow 150 MB; the file is larger than that
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    before = anonymous_mb()
    model = fastbp.MLPClassifier((32,), max_iter=2, batch_size=256, random_state=0).fit(X, y)
    model.partial_fit(X, y)
    print(X.nbytes / 2**20, anonymous_mb() - before, model.n_iter_)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and RLIMIT_DATA")
def test_fit_streams_a_memmap_larger_than_allowed_memory(tmp_path):
    rows = 800_000  # 800,000 x 256 float32 = 781 MB on disk
    path = tmp_path / "X.f32"
    X = np.memmap(path, dtype=np.float32, mode="w+", shape=(rows, 256))
    for start in range(0, rows, 100_000):
        X[start : start + 100_000] = np.random.default_rng(start).random((100_000, 256), dtype=np.float32)
    X.flush()
    del X
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(rows)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    file_mb, growth_mb, epochs = map(float, out.stdout.split())
    assert file_mb > 700 and growth_mb < 100 and epochs == 1

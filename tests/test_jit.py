"""Link-only kernels (fastbp/_jit.py): kernels called by kernels have no machine code of their own, a call from
Python compiles the ordinary way, and ``FASTBP_LINK_ONLY=0`` trains to the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from fastbp._jit import LINK_ONLY
from fastbp.kernels import optimizers

FIT = """
import json, warnings
import numpy as np
import fastbp
from fastbp.kernels import dense, epoch
warnings.simplefilter("ignore")
rng = np.random.default_rng(5)
X = rng.normal(size=(90, 7)); y = rng.integers(0, 3, 90)
model = fastbp.MLPClassifier((9, 6), activation="tanh", max_iter=4, batch_size=16, random_state=1).fit(X, y)
kernel = dense.forward_to_output  # called by the epoch kernel only
helpers = list(getattr(kernel, "link_only", kernel).overloads.values())
print(json.dumps({"kernel": type(epoch.train_epoch).__name__,
                  "helper_libraries": [type(r.library).__name__ for r in helpers],
                  "helper_ir": ["define" in r.library.get_llvm_str() for r in helpers],
                  "helper_machine_code": [r.library.get_pointer_to_function(r.fndesc.llvm_cpython_wrapper_name) != 0
                                          for r in helpers],
                  "weights": [a.tolist() for a in model.coefs_ + model.intercepts_], "loss": model.loss_curve_}))
"""


def _fit_in_subprocess(env_update: dict) -> dict:
    env = {**os.environ, **env_update}
    out = subprocess.run([sys.executable, "-c", FIT], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


pytestmark = pytest.mark.skipif(
    not LINK_ONLY,
    reason=f"link-only compile off: FASTBP_LINK_ONLY=0, or numba {numba.__version__} not in _jit.LINK_ONLY_NUMBA",
)


def test_a_kernel_called_from_python_has_machine_code():
    """update_range is normally only called by kernels; from Python it compiles and runs with machine code."""
    f = np.float64
    p, g = np.linspace(-1, 1, 10), np.linspace(0.5, -0.5, 10)
    a, b = np.zeros(10), np.zeros(10)
    step = optimizers.Step(optimizers.SGD, f(0.1), f(0.0), False, f(0.9), f(0.999), f(1e-8), f(0.5))
    expected = p - 0.1 * 0.5 * g
    norm = optimizers.update_range(p, g, a, b, 0, 10, f(0.0), step)
    np.testing.assert_allclose(p, expected, rtol=1e-15)
    assert norm == pytest.approx(float(expected @ expected), rel=1e-12)
    assert optimizers.update_range.signatures


def test_kernels_called_by_kernels_are_linked_and_ordinary_compilation_trains_the_same_weights(tmp_path):
    """Empty caches, so that the kernels compile: the epoch kernel's callees have code but no machine code."""
    linked = _fit_in_subprocess({"FASTBP_CACHE_DIR": str(tmp_path / "a")})
    ordinary = _fit_in_subprocess({"FASTBP_CACHE_DIR": str(tmp_path / "b"), "FASTBP_LINK_ONLY": "0"})
    assert linked["kernel"] == "_Kernel" and ordinary["kernel"] == "CPUDispatcher"
    assert linked["helper_libraries"] == ["_LinkOnlyLibrary"] and linked["helper_machine_code"] == [False]
    assert ordinary["helper_libraries"] == ["JITCodeLibrary"] and ordinary["helper_machine_code"] == [True]
    assert linked["helper_ir"] == ordinary["helper_ir"] == [True]
    for a, b in zip(linked["weights"], ordinary["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(linked["loss"], ordinary["loss"], rtol=1e-12)

"""A clean install: wheel and sdist build, the wheel installs, trains, uninstalls without leftovers, and an
editable install then imports from any folder.

Regression: numba's cache used to sit inside site-packages/fastbp; ``pip uninstall`` left that folder behind
and a later editable install then imported as an empty namespace package from any other folder.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FIT = textwrap.dedent(
    """
    import numpy as np, fastbp
    X = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clf = fastbp.MLPClassifier((8,), learning_rate_init=0.05, max_iter=50, random_state=0).fit(X, y)
    print(fastbp.__file__)
    print(clf.score(X, y))
    """
)


def _run(*args, cwd=None):
    done = subprocess.run(list(map(str, args)), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="venv layout")
def test_wheel_install_uninstall_then_editable_install(tmp_path):
    pytest.importorskip("build")
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, REPO)
    assert sorted(p.suffix for p in dist.iterdir()) == [".gz", ".whl"]
    # numba & co. come from this environment's site-packages, fastbp only from what is installed in the venv;
    # no pip or setuptools of the venv's own: this environment's pip installs into it (pip --python)
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv)
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python)
    _run(*pip, "install", "-q", "--no-deps", next(dist.glob("*.whl")))
    location, score = _run(python, "-c", FIT, cwd=elsewhere).split()
    site = Path(location).parent.parent
    assert site.is_relative_to(venv) and float(score) > 0.8
    assert not list((site / "fastbp").rglob("*.nb[ic]")), "compiled kernels were cached inside the installed package"

    _run(*pip, "uninstall", "-y", "-q", "fastbp")
    assert not (site / "fastbp").exists(), "pip uninstall left files behind"

    _run(*pip, "install", "-q", "--no-deps", "--no-build-isolation", "-e", REPO)
    location, score = _run(python, "-c", FIT, cwd=elsewhere).split()
    assert Path(location).is_relative_to(REPO) and float(score) > 0.8
    _run(*pip, "uninstall", "-y", "-q", "fastbp")

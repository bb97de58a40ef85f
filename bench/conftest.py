"""Benchmark options: ``--quick`` (fewer rows, one round: under 3 minutes on 2 cores)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fastbp.benchmarks import load_data  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="12,000 rows and one round per benchmark")


@pytest.fixture(scope="session")
def quick(request) -> bool:
    return request.config.getoption("--quick")


@pytest.fixture(scope="session")
def datasets(quick):
    n = 12000 if quick else 60000
    cache = {}

    def get(dtype):
        if dtype not in cache:
            cache[dtype] = load_data(n, np.dtype(dtype).type)
        return cache[dtype]

    return get

"""Warnings that point at the user's line, not at fastbp's.

scikit-learn picks a fixed ``stacklevel`` per call site; fastbp's warnings are raised at different depths
(fit, partial_fit, Dask, import), so the level is counted instead: the first frame outside the fastbp package,
the import machinery and the decorators wrapped around fastbp's methods is the one a user wrote.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent) + os.sep
_WRAPPERS = {"sklearn.callback._callback_support", "contextlib"}  # decorators around fastbp's own methods


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first caller outside fastbp."""
    frame, level = sys._getframe(1), 2  # level 2 is the caller of warn_user
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE)
        or frame.f_code.co_filename.startswith("<frozen importlib")
        or frame.f_globals.get("__name__") in _WRAPPERS
    ):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)

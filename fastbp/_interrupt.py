"""Ctrl-C during training: finish the running epoch, then stop cleanly.

A compiled epoch cannot be interrupted midway (numba code does not check for signals), and a
KeyboardInterrupt raised between two bookkeeping statements would leave ``n_iter_``, ``loss_curve_`` and the
weights disagreeing. So while an estimator trains, the first SIGINT only sets a flag that the epoch loop
checks between epochs; a second SIGINT raises KeyboardInterrupt at once. The previous handler is restored when
training ends; nothing is installed outside the main thread or where SIGINT is ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Yield a function telling whether Ctrl-C was pressed since the block began."""
    pressed = [False]
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield lambda: False
        return

    def handler(signum, frame):
        if pressed[0]:  # the second Ctrl-C: the user wants out now
            raise KeyboardInterrupt
        pressed[0] = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: pressed[0]
    finally:
        signal.signal(signal.SIGINT, previous)

"""Ctrl-C during training: finish the running epoch, then stop cleanly.

A compiled epoch cannot be interrupted midway (numba code does not check for signals), and a
KeyboardInterrupt raised between two bookkeeping statements would leave ``n_iter_``, ``loss_curve_`` and the
weights disagreeing. So while an estimator trains, the first SIGINT only sets a flag that the epoch loop
checks between epochs; a second SIGINT raises KeyboardInterrupt at once. The previous handler is restored when
training ends; nothing is installed outside the main thread or where SIGINT is ignored.

Counting presses: Python runs a signal handler once for any number of signals that arrived while compiled code
ran, so two presses during one epoch would look like one. The C-level handler also writes one byte per signal
to the wakeup fd (``signal.set_wakeup_fd``); while training, that fd is a pipe of ours, and the handler counts
its bytes. The previous wakeup fd is restored afterwards.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class TrainingInterruptedWarning(UserWarning):
    """Training stopped early because the user pressed Ctrl-C; the model is the last completed epoch."""


@contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Yield a function telling whether Ctrl-C was pressed since the block began."""
    pressed = [0]
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield lambda: False
        return
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)

    def handler(signum, frame):
        try:
            pressed[0] += os.read(read_end, 4096).count(signal.SIGINT)
        except BlockingIOError:  # the byte went to another wakeup fd: count this call once
            pressed[0] += 1
        if pressed[0] >= 2:  # the second Ctrl-C: the user wants out now
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield lambda: pressed[0] > 0
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous)
        os.close(read_end)
        os.close(write_end)

"""SIGTERM handled as Ctrl-C, so that a stopped command cleans up the way an interrupted one does.

``kill``, a batch scheduler's time limit (SLURM sends SIGTERM before SIGKILL), ``docker stop`` and
systemd all ask a process to stop with SIGTERM, whose default action ends Python at once: a training
run would lose every step since its last end-of-epoch checkpoint and ``prepare`` could leave a
half-written patient. Raised as ``KeyboardInterrupt`` instead, it takes the paths Ctrl-C takes
(training saves a checkpoint at the current step; ``prepare`` removes what it had not finished).
"""

from __future__ import annotations

import contextlib
import signal
import threading


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread; the previous handler
    comes back afterwards. Outside the main thread (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

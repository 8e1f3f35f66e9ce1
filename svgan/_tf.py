"""Import TensorFlow / Keras without the C++ start-up chatter.

TensorFlow prints oneDNN and CUDA notices on stderr before its logging is set up,
so TF_CPP_MIN_LOG_LEVEL cannot hide them; we silence file descriptor 2 for the
import alone. Python exceptions raised by the import still propagate. The
allocator settings of ``svgan._memory`` are made just before the import, the only
moment they can take effect.
"""

from __future__ import annotations

import contextlib
import os
import sys

from ._memory import configure_allocators

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tf():
    """Return the tensorflow module, imported quietly the first time."""
    if "tensorflow" not in sys.modules:
        configure_allocators()
        with _quiet_stderr():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]

"""Process-wide memory allocation settings, made before TensorFlow starts.

Why: TensorFlow's default CPU allocator hands each tensor to glibc's malloc, and
glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh
mmap and returns it with munmap when freed. A training step allocates and frees
hundreds of large activations, so every step faults all of them back in page by
page: on the real-ACDC configuration at 128 x 128 that was about 930,000 minor
page faults and 3 s of system time per 6.8 s step (measured with
``benchmarks/model_speed.py``, which prints user / system time and faults per step).

- ``TF_CPU_ALLOCATOR_USE_BFC=true`` makes TensorFlow keep freed CPU memory in its
  own best-fit-with-coalescing pool (the allocator it uses on GPUs) and reuse it:
  page faults fall to a few thousand per step and system time to ~0.1 s.
- glibc's thresholds are raised with ``mallopt`` for the memory that does not go
  through TensorFlow (NumPy arrays of the input pipeline, oneDNN scratch space):
  blocks up to 32 MiB come from the heap, and the heap is not trimmed back after
  every free.
- glibc is held to one malloc arena (``M_ARENA_MAX`` = 1). With its default of one
  arena per thread up to 8 per core, a thread that first allocates while another holds
  the main arena gets an arena of its own, made of 64 MiB mmap'd heaps that are
  unmapped as soon as they empty, whatever the trim threshold. Once the tf.data
  threads start before the first training step (as in every real run), the step's
  oneDNN scratch space lands in such arenas: measured on the demo configuration,
  153,000 minor page faults and 0.43 s of system time per 1.0 s step, against 1,600
  faults, 0.05 s and 0.8 s with one arena (the synthetic-batch benchmark, whose
  first step runs before any input thread exists, did not show it). Two cores give
  little contention for the arena's lock.

All are defaults, not orders: a user's own ``TF_CPU_ALLOCATOR_USE_BFC`` or
``MALLOC_ARENA_MAX`` in the environment wins, and ``SVGAN_MALLOPT=0`` leaves glibc alone. They
only take effect when svgan imports TensorFlow first (``svgan._tf.import_tf``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit systems.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
ARENA_MAX = 1

_done = False


def _glibc_mallopt() -> bool:
    """Raise glibc's mmap and trim thresholds, one arena; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows: nothing to set
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    if "MALLOC_ARENA_MAX" not in os.environ:  # glibc has read a user's own value at start-up
        ok = ok and bool(mallopt(_M_ARENA_MAX, ARENA_MAX))
    return ok


def configure_allocators() -> None:
    """Set the allocator defaults once per process (see the module docstring)."""
    global _done
    if _done:
        return
    _done = True
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    if os.environ.get("SVGAN_MALLOPT", "1") != "0":
        _glibc_mallopt()

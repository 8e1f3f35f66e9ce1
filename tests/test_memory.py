"""Allocator defaults made before TensorFlow starts (svgan/_memory.py: page faults and system time per step)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import os
from svgan._tf import import_tf
tf = import_tf()
print(os.environ.get("TF_CPU_ALLOCATOR_USE_BFC"))
"""


def _probe(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPU_ALLOCATOR_USE_BFC", "SVGAN_MALLOPT")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_tensorflow_is_imported_with_the_bfc_cpu_allocator_by_default():
    assert _probe({}) == "true"


@pytest.mark.slow
def test_a_users_own_allocator_setting_wins():
    assert _probe({"TF_CPU_ALLOCATOR_USE_BFC": "false"}) == "false"


def test_glibc_thresholds_are_accepted_where_the_c_library_is_glibc():
    import platform

    from svgan import _memory

    if platform.libc_ver()[0] != "glibc":
        assert _memory._glibc_mallopt() is False
    else:
        # mallopt returns 1 only when glibc accepts the value; 32 MiB is its largest mmap threshold.
        assert _memory._glibc_mallopt() is True


MMAPPED = """
import ctypes
from svgan._tf import import_tf
import_tf()

class Mallinfo2(ctypes.Structure):  # glibc's struct mallinfo2, <malloc.h>
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
before = libc.mallinfo2().hblkhd  # bytes in blocks served by mmap
block = libc.malloc(24 * 1024 * 1024)
print(libc.mallinfo2().hblkhd - before)
libc.free(ctypes.c_void_p(block))
"""


def _mmapped_bytes_of_a_24_mib_block(env_extra: dict) -> int:
    env = {k: v for k, v in os.environ.items() if k != "SVGAN_MALLOPT"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", MMAPPED], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_large_block_comes_from_the_heap_not_from_a_fresh_mmap():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallinfo2 and the mmap threshold are glibc's")
    # glibc's own threshold (128 KiB, raised only by frees of larger mmap'd blocks) maps 24 MiB
    # afresh; svgan's 32 MiB threshold serves it from the heap.
    assert _mmapped_bytes_of_a_24_mib_block({"SVGAN_MALLOPT": "0"}) >= 24 * 1024 * 1024
    assert _mmapped_bytes_of_a_24_mib_block({}) == 0


ARENAS = """
import ctypes, threading
import numpy as np
from svgan._tf import import_tf
import_tf()

def work():
    for _ in range(20):
        np.ones(1_000_000)  # 8 MB from malloc, in the thread's arena

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def _arenas(env_extra: dict) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("SVGAN_MALLOPT", "MALLOC_ARENA_MAX")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", ARENAS], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return sum(line.startswith("Arena ") for line in out.stderr.splitlines())


@pytest.mark.slow
def test_threads_share_one_malloc_arena_so_freed_heaps_are_not_unmapped():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the arena limit is glibc's")
    # glibc gives each new thread an arena of its own up to its limit (8 per core): the four
    # threads (and TensorFlow's) make several unless svgan has set the limit to one.
    assert _arenas({"SVGAN_MALLOPT": "0"}) > 1
    assert _arenas({}) == 1

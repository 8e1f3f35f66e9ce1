"""Allocator defaults made before TensorFlow starts (issue 10: page faults and system time per step)."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import ctypes, ctypes.util, os, sys
from svgan._tf import import_tf
tf = import_tf()
print(os.environ.get("TF_CPU_ALLOCATOR_USE_BFC"))
"""


def _probe(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPU_ALLOCATOR_USE_BFC", "SVGAN_MALLOPT")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_tensorflow_is_imported_with_the_bfc_cpu_allocator_by_default():
    assert _probe({}) == "true"


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

"""HD95 on a full-size 240 x 240 x 155 pair: svgan's bounding-box computation against medpy's whole grid.

    python benchmarks/hd95_speed.py

Prints both times (median of 3) and their ratio, measured in the same run, and checks that
the two values agree.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from svgan.evaluation.metrics import hausdorff  # noqa: E402


def _tumour(shape, centre, radius, rng):
    grid = np.indices(shape, dtype=np.float32)
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    return r < radius * (1 + 0.1 * rng.standard_normal(shape).astype(np.float32))


def _median_time(fn, repeats=3):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    from medpy.metric.binary import hd95  # test extra only (GPL): a reference, never a dependency

    rng = np.random.default_rng(0)
    shape, spacing = (240, 240, 155), (1.0, 1.0, 1.0)
    ref = _tumour(shape, (120, 110, 75), 25, rng)
    pred = _tumour(shape, (123, 112, 74), 23, rng)
    ours_s, ours = _median_time(lambda: hausdorff(pred, ref, spacing, 95))
    medpy_s, theirs = _median_time(lambda: hd95(pred, ref, spacing))
    assert abs(ours - theirs) < 1e-6, (ours, theirs)
    print(f"HD95 on 240x240x155 (tumour-sized masks): svgan {ours_s:.3f} s, medpy {medpy_s:.3f} s, "
          f"ratio medpy/svgan {medpy_s / ours_s:.1f}x (value {ours:.4f} mm in both)")


if __name__ == "__main__":
    main()

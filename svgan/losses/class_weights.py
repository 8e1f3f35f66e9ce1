"""Selective class weights of Rezaei et al., Eq. 2.

The extracted text reads ``w_c = sqrt(|C_c| / (f_c + N))`` and explains it as
"the ratio of the cardinality among N classes on the entire training dataset
by the frequency of samples with class c", square-rooted "to prevent huge
weights", so that "larger classes have a weight smaller than 1 and the smallest
classes the highest". We read the garbled symbols as

    w_c = sqrt( |C| / (N * f_c) )

with |C| the cardinality of the training set (all voxels, or all patients for
the disease weights), N the number of classes and f_c the count of class c.
This is the only reading that matches the prose: a balanced set gives every
class weight 1, a class larger than the average |C| / N gets w_c < 1, and the
rarest class the largest weight. A literal ``f_c + N`` would make every weight
tiny and nearly equal on voxel counts, which contradicts the text. A class
absent from the training set gets the weight of a class seen once.
"""

from __future__ import annotations

import numpy as np


def selective_class_weights(counts) -> np.ndarray:
    """Eq. 2 weights from per-class counts (voxels or patients) of the training split."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(f"need a count per class for at least 2 classes, got {counts!r}")
    if np.any(counts < 0):
        raise ValueError(f"class counts must be >= 0, got {counts!r}")
    total = counts.sum()
    if total <= 0:
        raise ValueError("class counts are all zero")
    return np.sqrt(total / (counts.size * np.maximum(counts, 1.0))).astype(np.float32)

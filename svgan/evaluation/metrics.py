"""Overlap metrics on binary masks (NumPy).

Empty masks follow the BraTS rule: both empty gives Dice 1 and sensitivity 1.
"""

from __future__ import annotations

import numpy as np


def _binary(mask, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool:
        values = np.unique(mask)
        if not np.all(np.isin(values, (0, 1))):
            raise ValueError(f"{name} is not a binary mask (values {values[:6].tolist()})")
        mask = mask.astype(bool)
    return mask


def dice(pred, ref) -> float:
    """2 |P & R| / (|P| + |R|); 1.0 when both are empty."""
    p, r = _binary(pred, "pred"), _binary(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch: pred {p.shape} vs ref {r.shape}")
    total = p.sum() + r.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(p, r).sum() / total)


def sensitivity(pred, ref) -> float:
    """|P & R| / |R| (recall); 1.0 when the reference is empty."""
    p, r = _binary(pred, "pred"), _binary(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch: pred {p.shape} vs ref {r.shape}")
    n = r.sum()
    return 1.0 if n == 0 else float(np.logical_and(p, r).sum() / n)

"""Patient-level train / validation / test split, stratified by disease class and seeded."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "validation", "test")


def _allocate(class_sizes: list[int], fraction: float, capacity: list[int]) -> list[int]:
    """Per-class counts for one split: round(total * fraction) shared by largest remainder.

    Rounding each class on its own would give a small cohort no validation patient at all
    (5 per class x 0.1 rounds to 0 five times); sharing the total keeps the split's size.
    """
    exact = [n * fraction for n in class_sizes]
    counts = [min(int(e), c) for e, c in zip(exact, capacity)]
    missing = int(round(sum(class_sizes) * fraction)) - sum(counts)
    order = sorted(range(len(exact)), key=lambda k: (-(exact[k] - int(exact[k])), k))
    for k in order:
        if missing <= 0:
            break
        if counts[k] < capacity[k]:
            counts[k] += 1
            missing -= 1
    return counts


def stratified_split(diseases: dict[str, int | None], fractions, seed: int) -> dict[str, str]:
    """Assign each patient to a split, stratified by disease class (unknown is a class too).

    Validation and test sizes are round(N * fraction) shared among classes by largest
    remainder, with at least one training patient kept per class. Deterministic for a
    seed and independent of the order patients were listed in.
    """
    rng = np.random.default_rng(seed)
    by_class: dict[object, list[str]] = {}
    for pid in sorted(diseases):
        by_class.setdefault(diseases[pid], []).append(pid)
    keys = sorted(by_class, key=lambda k: (k is None, k if k is not None else -1))
    sizes = [len(by_class[k]) for k in keys]
    n_val = _allocate(sizes, fractions[1], [n - 1 for n in sizes])
    n_test = _allocate(sizes, fractions[2], [n - 1 - v for n, v in zip(sizes, n_val)])
    assignment = {}
    for key, nv, nt in zip(keys, n_val, n_test):
        ids = list(by_class[key])
        rng.shuffle(ids)
        for i, pid in enumerate(ids):
            assignment[pid] = "validation" if i < nv else "test" if i < nv + nt else "train"
    return assignment


def extend_split(existing: dict[str, str], diseases: dict[str, int | None], fractions, seed: int) -> dict[str, str]:
    """Keep every existing assignment (a split is fixed once written); split only new patients."""
    new = {pid: d for pid, d in diseases.items() if pid not in existing}
    merged = dict(existing)
    merged.update(stratified_split(new, fractions, seed + len(existing)) if new else {})
    return merged

"""A synthetic two-class skin-lesion image set (dermoscopy-like), for the 2D path's demo and tests.

``benign`` lesions are roundish, evenly brown and sharply bordered; ``malignant`` ones tend to
be irregular (border harmonics), asymmetric and multi-coloured (a dark core and blue-grey
patches), the ABCD features of dermoscopy. Each property is drawn from overlapping ranges
for the two classes, so that no single pixel statistic separates them and a classifier
has something to learn. Written as ``OUT/benign/*.png`` and ``OUT/malignant/*.png``; the
malignant share defaults to 0.2 (about 1:4, as ISIC-2016's 173 melanomas in 900 images).
"""

from __future__ import annotations

import os

import numpy as np

from ..io import atomic_path

CLASSES = ("benign", "malignant")


def lesion_image(malignant: bool, size: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 image [size, size, 3]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    skin = np.array([0.87, 0.72, 0.60]) + rng.normal(0, 0.03, 3)
    image = np.ones((size, size, 3), np.float32) * skin
    image += rng.normal(0, 0.02, (size, size, 1))  # skin texture
    cy, cx = 0.5 + rng.normal(0, 0.05, 2)
    radius = rng.uniform(0.18, 0.3)
    angle = np.arctan2(yy - cy, xx - cx)
    r = np.hypot(yy - cy, xx - cx)
    irregularity = rng.uniform(0.08, 0.25) if malignant else rng.uniform(0.0, 0.12)
    border = radius * (1 + sum(irregularity / k * np.sin(k * angle + rng.uniform(0, 2 * np.pi))
                               for k in (2, 3, 5, 7)))
    stretch = rng.uniform(0.0, 0.35) if malignant else rng.uniform(0.0, 0.2)  # asymmetry
    border = border * (1 + stretch * np.cos(angle - rng.uniform(0, np.pi)))
    inside = np.clip((border - r) / 0.015, 0, 1)[..., None]  # a soft edge
    brown = np.array([0.45, 0.28, 0.18]) + rng.normal(0, 0.04, 3)
    lesion = np.ones_like(image) * brown
    if malignant or rng.random() < 0.15:  # variegated colour: a dark core and blue-grey patches
        core = np.exp(-((yy - cy - rng.normal(0, 0.05)) ** 2 + (xx - cx - rng.normal(0, 0.05)) ** 2) / (2 * (radius / 2.5) ** 2))
        lesion = lesion * (1 - rng.uniform(0.3, 0.6) * core[..., None])
        patches = np.sin(rng.uniform(8, 16) * xx + rng.uniform(0, 6)) * np.sin(rng.uniform(8, 16) * yy + rng.uniform(0, 6))
        blue = np.clip(patches - rng.uniform(0.2, 0.6), 0, 1)[..., None]
        strength = rng.uniform(0.3, 0.8) if malignant else rng.uniform(0.1, 0.3)
        lesion = lesion * (1 - strength * blue) + strength * blue * np.array([0.35, 0.4, 0.5])
    image = image * (1 - inside) + lesion * inside
    for _ in range(rng.integers(0, 6)):  # hairs
        y0, x0, theta = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, np.pi)
        distance = np.abs((yy - y0) * np.cos(theta) - (xx - x0) * np.sin(theta))
        image = image * (1 - 0.6 * (distance < 0.004)[..., None])
    image += rng.normal(0, 0.015, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_lesion_set(out_dir: str, images: int = 200, seed: int = 0, size: int = 64,
                     malignant_fraction: float = 0.2, progress=None) -> dict[str, int]:
    """Write ``images`` PNGs into ``out_dir/<class>/``; returns the count per class."""
    from PIL import Image

    if not 0 < malignant_fraction < 1:
        raise ValueError(f"malignant_fraction must be in (0, 1), got {malignant_fraction}")
    rng = np.random.default_rng(seed)
    n_malignant = int(round(images * malignant_fraction))
    labels = np.array([1] * n_malignant + [0] * (images - n_malignant))
    rng.shuffle(labels)
    for name in CLASSES:
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    for i, label in enumerate(labels):
        path = os.path.join(out_dir, CLASSES[label], f"lesion_{i:04d}.png")
        with atomic_path(path) as tmp:
            Image.fromarray(lesion_image(bool(label), size, rng)).save(tmp, format="PNG")
        if progress:
            progress(i + 1)
    return {CLASSES[0]: int(images - n_malignant), CLASSES[1]: n_malignant}

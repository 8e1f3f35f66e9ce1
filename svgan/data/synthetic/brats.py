"""A BraTS-like phantom cohort written in the BraTS 2017 layout.

Each patient is a skull-stripped brain with white matter, cortical and deep grey
matter, CSF (ventricles and a sulcal layer) and a glioma: edema around a
tumour core. High-grade (HGG) tumours have a necrotic centre inside an
enhancing rim; low-grade (LGG) tumours are mostly edema and non-enhancing core
with little or no enhancement. Four modalities follow the tissue contrasts of
real scans (relative signal, 1 = brightest):

- T1: white > grey > edema/core > CSF and necrosis;
- T1ce: like T1 but the enhancing tumour is the brightest structure;
- T2: CSF brightest, edema and necrosis bright, white matter dark;
- FLAIR: CSF suppressed (dark), edema brightest.

A smooth multiplicative bias field, a per-scan gain and Rician noise make the
intensity normalisation steps meaningful. The image side is 240 mm; a smaller
``shape`` gives a coarser isotropic spacing (the demo's 96 x 96 x 62 is 2.5 mm).
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..io import save_nifti
from .fields import ellipsoid_radius, rician, smooth_field

FULL_SHAPE = (240, 240, 155)
FIELD_OF_VIEW_MM = 240.0

# Relative signal per tissue and modality.
_TISSUES = ("wm", "gm", "csf", "edema", "net", "necrosis", "enhancing")
_CONTRAST = {
    #            wm    gm    csf   edema  net   necr  enh
    "t1":    (0.85, 0.62, 0.20, 0.50, 0.45, 0.25, 0.55),
    "t1ce":  (0.85, 0.64, 0.22, 0.52, 0.48, 0.27, 1.30),
    "t2":    (0.35, 0.55, 1.00, 0.82, 0.72, 0.92, 0.65),
    "flair": (0.50, 0.62, 0.10, 1.00, 0.80, 0.55, 0.78),
}
# Typical scanner units of each sequence (BraTS volumes are int16 of this order).
_GAIN = {"t1": 900.0, "t1ce": 1100.0, "t2": 1400.0, "flair": 600.0}

# BraTS 2017-2020 labels
NCR_NET, EDEMA, ENHANCING = 1, 2, 4


def _grid_mm(shape, spacing):
    """Coordinates in mm centred in the field of view, broadcastable (sparse) arrays."""
    return [((np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * spacing).reshape(
        [-1 if i == k else 1 for k in range(3)]) for i, n in enumerate(shape)]


def _random_unit(rng) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def make_brats_patient(rng: np.random.Generator, grade: str, shape=FULL_SHAPE) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """One phantom patient: (modality -> int16 volume, uint8 BraTS label map, spacing in mm)."""
    shape = tuple(int(s) for s in shape)
    spacing = FIELD_OF_VIEW_MM / shape[0]
    x, y, z = _grid_mm(shape, spacing)
    low = lambda cp=5: smooth_field(shape, rng, cp)  # noqa: E731

    # Brain: a deformed ellipsoid (left-right, anterior-posterior, inferior-superior), slightly
    # above the centre of the field of view like a head in a BraTS volume.
    size = rng.uniform(0.92, 1.05)
    semi = np.array([68.0, 84.0, 62.0]) * size
    centre = np.array([rng.normal(0, 2), rng.normal(0, 3), min(10.0, 0.5 * shape[2] * spacing - semi[2] - 4)])
    r_brain = ellipsoid_radius([x, y, z], centre, semi) * (1 + 0.04 * low(4))
    brain = r_brain < 1.0

    # Cortex with gyri: grey matter in an outer shell of varying depth; a thin CSF layer on top.
    cortex_inner = 0.83 + 0.05 * low(9)
    tissue = np.zeros(shape, dtype=np.uint8)  # index into _TISSUES
    tissue[brain & (r_brain >= cortex_inner)] = 1
    tissue[brain & (r_brain > 0.975 + 0.015 * low(11))] = 2
    # Deep grey matter (basal ganglia / thalami) and lateral ventricles.
    for side in (-1, 1):
        deep = ellipsoid_radius([x, y, z], centre + [side * 18 * size, 2, 2], [9 * size, 14 * size, 10 * size]) < 1
        tissue[deep] = 1
        vent = ellipsoid_radius([x, y, z], centre + [side * 7 * size, 4, 14], [5 * size, 24 * size, 8 * size])
        tissue[vent < 1 + 0.1 * rng.standard_normal()] = 2
    tissue[~brain] = 0

    # Tumour: centred in one hemisphere, core surrounded by edema that stays inside the brain.
    side = rng.choice([-1, 1])
    offset = rng.uniform(-0.3, 0.3, 3) * semi
    offset[0] = side * rng.uniform(0.2, 0.45) * semi[0]
    t_centre = centre + offset
    core_r = rng.uniform(10, 19) if grade == "HGG" else rng.uniform(9, 17)
    edema_r = core_r * (rng.uniform(1.45, 1.85) if grade == "HGG" else rng.uniform(1.4, 1.75))
    rt = ellipsoid_radius([x, y, z], t_centre, [1.0, 1.0, 1.0])  # distance (mm) to the tumour centre
    stretch = 1 + 0.18 * low(6)  # irregular outline
    core = (rt / core_r * stretch < 1.0) & brain
    edema_region = (rt / edema_r * (1 + 0.15 * low(7)) < 1.0) & brain & ~core
    label = np.zeros(shape, dtype=np.uint8)
    label[edema_region] = EDEMA
    tissue[edema_region] = 3
    if grade == "HGG":
        # Enhancing rim of uneven thickness (about 2-7 mm, never under one voxel), necrosis inside.
        depth = (1.0 - rt / core_r * stretch) * core_r  # mm inside the core boundary
        rim = core & (depth < np.maximum(spacing, rng.uniform(3.0, 5.0) + 1.0 * low(8)))
        label[core] = NCR_NET
        tissue[core] = 5
        label[rim] = ENHANCING
        tissue[rim] = 6
        # A non-enhancing solid part of the core (same label as necrosis, different signal).
        solid = core & ~rim & (ellipsoid_radius([x, y, z], t_centre + _random_unit(rng) * core_r * 0.5,
                                                [core_r * 0.4] * 3) < 1)
        tissue[solid] = 4
    else:
        label[core] = NCR_NET
        tissue[core] = 4
        if rng.random() < 0.3:  # a minority of LGGs show a small enhancing focus
            spot = core & (ellipsoid_radius([x, y, z], t_centre + _random_unit(rng) * core_r * 0.3,
                                            [rng.uniform(2, 4)] * 3) < 1)
            label[spot] = ENHANCING
            tissue[spot] = 6

    # Per-tissue signal with texture, partial-volume blur, bias field, gain and Rician noise.
    texture = 0.05 * low(max(6, shape[0] // 8))
    images = {}
    for modality, contrast in _CONTRAST.items():
        signal = np.asarray(contrast, dtype=np.float32)[tissue] * (1 + texture)
        signal[~brain] = 0.0
        signal = ndimage.gaussian_filter(signal, 0.6)
        bias = np.exp(0.12 * low(3))
        gain = _GAIN[modality] * rng.uniform(0.7, 1.3)
        noisy = rician(signal * bias * gain, 0.025 * gain, rng)
        noisy[~brain] = 0.0  # skull-stripped: zero background, as BraTS ships it
        images[modality] = np.clip(np.rint(noisy), 0, 32767).astype(np.int16)
    return images, label, spacing


def _affine(shape, spacing) -> np.ndarray:
    # BraTS 2017 volumes: x and y flipped (LPS-like storage), origin at the far y corner.
    affine = np.diag([-spacing, -spacing, spacing, 1.0])
    affine[1, 3] = (shape[1] - 1) * spacing
    return affine


def write_brats_cohort(out_dir: str, patients: int = 24, seed: int = 0, shape=FULL_SHAPE,
                       hgg_fraction: float = 0.75, progress=None) -> list[tuple[str, str]]:
    """Write ``patients`` phantoms as ``OUT/{HGG,LGG}/<ID>/<ID>_{flair,t1,t1ce,t2,seg}.nii.gz``.

    The default HGG:LGG ratio 3:1 follows BraTS 2017 (210 HGG : 75 LGG). Returns (ID, grade).
    """
    n_hgg = int(round(patients * hgg_fraction))
    grades = ["HGG"] * n_hgg + ["LGG"] * (patients - n_hgg)
    np.random.default_rng(seed).shuffle(grades)
    written = []
    for i, grade in enumerate(grades):
        pid = f"Brats17_SYN_{i + 1:03d}_1"
        rng = np.random.default_rng([seed, i])
        images, label, spacing = make_brats_patient(rng, grade, shape)
        folder = os.path.join(out_dir, grade, pid)
        affine = _affine(label.shape, spacing)
        for modality, volume in images.items():
            save_nifti(nib.Nifti1Image(volume, affine), os.path.join(folder, f"{pid}_{modality}.nii.gz"))
        save_nifti(nib.Nifti1Image(label, affine), os.path.join(folder, f"{pid}_seg.nii.gz"))
        written.append((pid, grade))
        if progress:
            progress(i + 1)
    return written

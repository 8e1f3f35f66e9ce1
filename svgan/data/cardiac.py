"""Clinical features of a cardiac label map: what defines the ACDC groups.

The ACDC groups are defined by whole-heart quantities at end-diastole (ED) and
end-systole (ES) (Bernard et al., IEEE TMI 2018, section II): ventricular volumes
and ejection fractions, myocardial mass and wall thickness, indexed by body
surface area. ``svgan prepare`` measures them on the ground truth, the evaluation
on predictions (``svgan.evaluation.clinical`` diagnoses from them).

Label maps are in training classes (1 RV, 2 MYO, 3 LV), [2 (ED, ES), X, Y, Z],
with the spacing from the header zooms in mm.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

RV, MYO, LV = 1, 2, 3
MYOCARDIUM_DENSITY = 1.05  # g/ml, as the ACDC challenge computes myocardial mass

# The features the reference classifiers read, in this order: volumes and ejection fractions,
# myocardial mass at ED and ES, wall thickness (the thickest point, and the largest and the
# spread of the per-slice mean thickness, at ED and ES: hypertrophy thickens the wall, an
# infarct thins part of it), the same indexed by body surface area, and the ratios between
# structures (the challenge entries' features; Isensee et al., Wolterink et al., Khened et al.).
FEATURES = ("LV_EDV", "LV_ESV", "LV_EF", "RV_EDV", "RV_ESV", "RV_EF", "MYO_mass", "MYO_ES_mass", "MYO_max_thickness",
            "MYO_ED_slice_thickness_max", "MYO_ED_slice_thickness_std", "MYO_ES_slice_thickness_max",
            "MYO_ES_slice_thickness_std", "LV_EDVi", "LV_ESVi", "RV_EDVi", "RV_ESVi", "MYO_massi",
            "RV_LV_EDV_ratio", "RV_LV_ESV_ratio", "MYO_mass_LV_EDV_ratio")


def body_surface_area(height_cm: float, weight_kg: float) -> float:
    """Mosteller's formula, m^2: sqrt(height [cm] * weight [kg] / 3600)."""
    return math.sqrt(height_cm * weight_kg / 3600.0)


def _ejection_fraction(edv: float, esv: float) -> float:
    return 100.0 * (edv - esv) / edv if edv > 0 else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def ventricle_indices(label: np.ndarray, spacing) -> dict:
    """LV and RV volumes (ml) at ED and ES, ejection fractions (%) and myocardial mass at ED and ES (g)."""
    ml = float(np.prod(spacing[:3])) / 1000.0
    vol = {(i, k): float(np.count_nonzero(label[i] == k)) * ml for i in (0, 1) for k in (RV, MYO, LV)}
    return {"LV_EDV": vol[0, LV], "LV_ESV": vol[1, LV], "LV_EF": _ejection_fraction(vol[0, LV], vol[1, LV]),
            "RV_EDV": vol[0, RV], "RV_ESV": vol[1, RV], "RV_EF": _ejection_fraction(vol[0, RV], vol[1, RV]),
            "MYO_mass": vol[0, MYO] * MYOCARDIUM_DENSITY, "MYO_ES_mass": vol[1, MYO] * MYOCARDIUM_DENSITY}


def wall_thickness(myocardium: np.ndarray, cavity: np.ndarray, spacing) -> list[np.ndarray]:
    """Myocardial wall thickness in mm at the outer border points of each slice of one phase ([X, Y, Z] masks).

    In each slice with both myocardium and LV cavity, the thickness at a point of the
    outer myocardial border (a myocardium pixel 4-connected to a pixel that is neither
    myocardium nor cavity) is its in-plane distance to the nearest cavity pixel, centre to
    centre: a wall n pixels thick measures n pixels. One array per such slice, in slice order.
    """
    cross = ndimage.generate_binary_structure(2, 1)
    slices = []
    for z in range(myocardium.shape[2]):
        myo, cav = myocardium[..., z], cavity[..., z]
        if not myo.any() or not cav.any():
            continue
        outside = np.pad(~(myo | cav), 1, constant_values=True)  # beyond the array counts as outside
        outer = ndimage.binary_dilation(outside, cross)[1:-1, 1:-1] & myo
        if outer.any():
            distance = ndimage.distance_transform_edt(~cav, sampling=[float(s) for s in spacing[:2]])
            slices.append(distance[outer])
    return slices


def max_wall_thickness(myocardium: np.ndarray, cavity: np.ndarray, spacing) -> float:
    """Largest wall thickness in mm over the slices of one phase (``wall_thickness``); 0 where no slice
    holds both myocardium and cavity."""
    return max((float(t.max()) for t in wall_thickness(myocardium, cavity, spacing)), default=0.0)


def slice_thickness_statistics(myocardium: np.ndarray, cavity: np.ndarray, spacing) -> tuple[float, float]:
    """(largest, standard deviation) of the per-slice mean wall thickness in mm over one phase's slices;
    (0, 0) where no slice holds both myocardium and cavity."""
    means = [float(t.mean()) for t in wall_thickness(myocardium, cavity, spacing)]
    return (max(means), float(np.std(means))) if means else (0.0, 0.0)


def clinical_features(label: np.ndarray, spacing, height_cm: float | None, weight_kg: float | None) -> dict:
    """Every feature of ``FEATURES`` for one patient; indexed ones are NaN without height and weight."""
    f = ventricle_indices(label, spacing)
    f["MYO_max_thickness"] = max_wall_thickness(label[0] == MYO, label[0] == LV, spacing)
    for phase, name in enumerate(("ED", "ES")):
        largest, spread = slice_thickness_statistics(label[phase] == MYO, label[phase] == LV, spacing)
        f[f"MYO_{name}_slice_thickness_max"], f[f"MYO_{name}_slice_thickness_std"] = largest, spread
    bsa = body_surface_area(height_cm, weight_kg) if height_cm and weight_kg else float("nan")
    for key in ("LV_EDV", "LV_ESV", "RV_EDV", "RV_ESV"):
        f[key + "i"] = f[key] / bsa
    f["MYO_massi"] = f["MYO_mass"] / bsa
    f["RV_LV_EDV_ratio"] = _ratio(f["RV_EDV"], f["LV_EDV"])
    f["RV_LV_ESV_ratio"] = _ratio(f["RV_ESV"], f["LV_ESV"])
    f["MYO_mass_LV_EDV_ratio"] = _ratio(f["MYO_mass"], f["LV_EDV"])
    return f


def height_weight(info: dict) -> tuple[float | None, float | None]:
    """Height (cm) and weight (kg) from an ACDC Info.cfg dict; None where absent or unreadable."""
    def number(key):
        try:
            value = float(info.get(key, ""))
        except ValueError:
            return None
        return value if value > 0 else None
    return number("Height"), number("Weight")

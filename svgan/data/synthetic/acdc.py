"""An ACDC-like cine MRI phantom cohort written in the ACDC layout.

Short-axis stacks (1.5625 x 1.5625 mm in plane, 10 mm between slices, base to
apex) of a chest: body wall, lungs, liver, pericardial fat, and a heart with a
left-ventricular cavity (label 3), myocardium (2) and a crescent-shaped right
ventricle (1). Bright blood and dark myocardium as in bSSFP cine images.

The five ACDC groups differ by the measurements the ACDC organisers used to
define them (Bernard et al., IEEE TMI 2018), with volumes indexed by body
surface area (Mosteller):

- NOR: normal LV and RV volumes, LVEF 58-70 %, wall 8-10 mm;
- MINF: LVEF 25-40 %, moderately dilated LV, a thin akinetic infarct sector;
- DCM: LVEDV > 100 ml/m2 (here 110-160), LVEF 15-35 %, thin walls;
- HCM: normal or small cavity, LVEF 65-80 %, walls 15-22 mm in diastole (septum thickest);
- ARV (``RV`` in Info.cfg): RVEDV > 110 ml/m2 (here 115-160) and RVEF 20-40 %, normal LV.

Every frame of the cardiac cycle is rendered from one contraction fraction
(0 at end-diastole, 1 at end-systole), so the 4D cine file, the ED frame and the
ES frame are consistent. Headers copy the real files' quirk: the affine holds no
spacing (sform diag(-1, -1, 1), qform code 0); the spacing is in the zooms only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..io import atomic_path, save_nifti
from .fields import ellipsoid_radius, rician, smooth_field

FULL_SHAPE = (224, 224, 10)
SPACING = (1.5625, 1.5625, 10.0)
GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")  # the order of the real training patients

# Relative bSSFP signal.
_SIGNAL = {"air": 0.02, "fat": 0.85, "muscle": 0.32, "lung": 0.06, "liver": 0.40, "blood": 1.0, "myo": 0.27}


@dataclass
class HeartParams:
    lv_edv: float  # ml
    lv_ef: float  # fraction
    wall_mm: float  # diastolic wall thickness away from the septum
    septum_mm: float  # diastolic septal thickness
    rv_edv: float
    rv_ef: float
    infarct_deg: float  # centre angle of an akinetic thin sector (MINF), nan otherwise


def _group_params(group: str, bsa: float, rng: np.random.Generator) -> HeartParams:
    u = rng.uniform
    nan = float("nan")
    if group == "NOR":
        wall = u(8, 10)
        return HeartParams(u(65, 90) * bsa, u(0.58, 0.70), wall, wall * u(1.0, 1.1), u(65, 95) * bsa, u(0.50, 0.65), nan)
    if group == "DCM":
        wall = u(6, 8)
        return HeartParams(u(110, 160) * bsa, u(0.15, 0.35), wall, wall, u(70, 100) * bsa, u(0.40, 0.60), nan)
    if group == "HCM":
        wall = u(14, 18)
        return HeartParams(u(55, 80) * bsa, u(0.65, 0.80), wall, wall * u(1.2, 1.4), u(60, 85) * bsa, u(0.55, 0.70), nan)
    if group == "MINF":
        wall = u(8, 10)
        return HeartParams(u(85, 120) * bsa, u(0.25, 0.40), wall, wall, u(65, 95) * bsa, u(0.45, 0.60), u(0, 360))
    if group in ("RV", "ARV"):
        wall = u(8, 10)
        return HeartParams(u(60, 85) * bsa, u(0.55, 0.68), wall, wall, u(115, 160) * bsa, u(0.20, 0.40), nan)
    raise ValueError(f"unknown ACDC group {group!r} (expected one of {GROUPS})")


def _slice_profile(n_slices: int) -> np.ndarray:
    """Relative cavity radius from base (first slice) to apex: a truncated prolate ellipsoid."""
    u = (np.arange(n_slices) + 0.5) / n_slices
    return np.sqrt(np.clip(1.0 - 0.9 * u**2, 0.0, None))


class _Heart:
    """Geometry of one patient's heart; ``render(c)`` draws it at contraction fraction c."""

    def __init__(self, params: HeartParams, shape, spacing, rng):
        self.p, self.shape, self.spacing = params, shape, spacing
        nx, ny, nz = shape
        self.x = ((np.arange(nx) - (nx - 1) / 2) * spacing[0])[:, None]
        self.y = ((np.arange(ny) - (ny - 1) / 2) * spacing[1])[None, :]
        self.centre = rng.normal(0, 4, 2)  # LV centre (mm) near the image centre
        self.rv_angle = math.radians(rng.uniform(150, 210))  # RV lies on the septal side
        self.profile = _slice_profile(nz)
        self.rv_slices = max(1, int(round(nz * rng.uniform(0.65, 0.85))))  # the RV ends above the apex
        # Cavity radius scale so that the stack of discs holds the target volume (ml = 1000 mm^3).
        disc_sum = float(np.sum(self.profile**2)) * math.pi * spacing[2]
        self.r_ed = math.sqrt(params.lv_edv * 1000.0 / disc_sum)
        self.r_es = self.r_ed * math.sqrt(1.0 - params.lv_ef)
        self.rv_scale_ed = self._fit_rv(params.rv_edv, self.r_ed, params.wall_mm, params.septum_mm)
        es_wall, es_sept = self._systolic_walls()
        self.rv_scale_es = self._fit_rv(params.rv_edv * (1 - params.rv_ef), self.r_es, es_wall, es_sept)

    def _systolic_walls(self):
        # Myocardium is incompressible: each ring keeps its area while the cavity shrinks.
        def thicken(t):
            return math.sqrt(self.r_es**2 + (self.r_ed + t) ** 2 - self.r_ed**2) - self.r_es
        return thicken(self.p.wall_mm), thicken(self.p.septum_mm)

    def _polar(self):
        dx, dy = self.x - self.centre[0], self.y - self.centre[1]
        return np.hypot(dx, dy), np.arctan2(dy, dx)

    def _walls(self, c: float):
        """Endocardial radius factor and wall thickness maps as functions of angle, at contraction c."""
        rho, theta = self._polar()
        es_wall, es_sept = self._systolic_walls()
        wall = (1 - c) * self.p.wall_mm + c * es_wall
        sept = (1 - c) * self.p.septum_mm + c * es_sept
        toward_rv = 0.5 * (1 + np.cos(theta - self.rv_angle))  # 1 at the septum
        thickness = wall + (sept - wall) * toward_rv**4
        r_cav = (1 - c) * self.r_ed + c * self.r_es
        endo = np.full_like(rho, r_cav)
        if not math.isnan(self.p.infarct_deg):
            # Akinetic sector: thin scar whose endocardium neither moves inwards nor thickens.
            w = np.clip(np.cos(theta - math.radians(self.p.infarct_deg)), 0, None) ** 6
            endo = endo + w * (self.r_ed - r_cav)
            thickness = thickness * (1 - w) + w * 0.45 * self.p.wall_mm
        return rho, theta, endo, thickness, r_cav + sept

    def _rv_mask_2d(self, scale, r_epi_slice, rho, theta, k):
        if k >= self.rv_slices:
            return np.zeros_like(rho, dtype=bool)
        taper = math.sqrt(max(0.0, 1 - ((k + 0.5) / self.rv_slices) ** 2 * 0.8))
        d = r_epi_slice + 0.15 * scale * taper
        cx = self.centre[0] + d * math.cos(self.rv_angle)
        cy = self.centre[1] + d * math.sin(self.rv_angle)
        # Ellipse elongated around the LV, the crescent being the part outside the LV epicardium.
        ca, sa = math.cos(self.rv_angle), math.sin(self.rv_angle)
        u = (self.x - cx) * ca + (self.y - cy) * sa
        v = -(self.x - cx) * sa + (self.y - cy) * ca
        inside = (u / (0.6 * scale * taper + 1e-6)) ** 2 + (v / (1.3 * scale * taper + 1e-6)) ** 2 < 1
        return inside

    def _fit_rv(self, target_ml, r_cav, wall, sept):
        """RV ellipse scale (mm) that gives the target RV volume, by a few secant steps."""
        scale = 25.0
        for _ in range(6):
            vol = self._rv_volume(scale, r_cav, wall, sept)
            scale *= math.sqrt(target_ml / max(vol, 1e-3))
        return scale

    def _rv_volume(self, scale, r_cav, wall, sept):
        # Fine analytic grid so that fitting does not depend on the output resolution.
        rho, theta = self._polar()
        total = 0.0
        for k in range(self.shape[2]):
            r_epi = (r_cav + sept) * self.profile[k]
            rv = self._rv_mask_2d(scale, r_epi, rho, theta, k) & (rho > r_epi)
            total += rv.sum() * self.spacing[0] * self.spacing[1] * self.spacing[2]
        return total / 1000.0

    def render(self, c: float):
        """Label map [X, Y, Z] (0 bg, 1 RV, 2 MYO, 3 LV) at contraction fraction c."""
        rho, theta, endo, thickness, r_epi_septum = self._walls(c)
        scale = (1 - c) * self.rv_scale_ed + c * self.rv_scale_es
        label = np.zeros(self.shape, dtype=np.uint8)
        for k in range(self.shape[2]):
            r_endo = endo * self.profile[k]
            r_epi = r_endo + thickness
            sl = label[:, :, k]
            rv = self._rv_mask_2d(scale, r_epi_septum * self.profile[k], rho, theta, k)
            sl[rv & (rho > r_epi)] = 1
            sl[rho < r_epi] = 2
            sl[rho < r_endo] = 3
        return label


def _chest(shape, spacing, rng):
    """Static anatomy around the heart: tissue signal map [X, Y] repeated over slices."""
    nx, ny, nz = shape
    x = ((np.arange(nx) - (nx - 1) / 2) * spacing[0])[:, None, None]
    y = ((np.arange(ny) - (ny - 1) / 2) * spacing[1])[None, :, None]
    z = ((np.arange(nz) - (nz - 1) / 2) * spacing[2])[None, None, :]
    s = np.full(shape, _SIGNAL["air"], dtype=np.float32)
    body = ellipsoid_radius([x, y], [0, 25], [175 * rng.uniform(0.9, 1.1), 125 * rng.uniform(0.9, 1.1)])
    body = np.broadcast_to(body, shape)
    s[body < 1.0] = _SIGNAL["fat"]
    s[body < 0.93] = _SIGNAL["muscle"]
    s[body < 0.86] = _SIGNAL["fat"] * 0.6
    for side in (-1, 1):
        lung = np.broadcast_to(ellipsoid_radius([x, y], [side * 75, 15], [55, 80]), shape)
        s[lung < 1.0] = _SIGNAL["lung"]
    liver = np.broadcast_to(ellipsoid_radius([x, y, z], [55, -10, 70], [90, 70, 40]), shape)
    s[liver < 1.0] = _SIGNAL["liver"]
    pericardium = np.broadcast_to(ellipsoid_radius([x, y], [0, 0], [70, 62]), shape)
    s[pericardium < 1.0] = _SIGNAL["fat"] * 0.9
    s[pericardium < 0.92] = _SIGNAL["muscle"] * 1.1
    return s


def _frame_image(chest, label, bias, rng, gain):
    s = chest.copy()
    s[label == 1] = _SIGNAL["blood"]
    s[label == 3] = _SIGNAL["blood"]
    s[label == 2] = _SIGNAL["myo"]
    s = ndimage.gaussian_filter(s, (0.7, 0.7, 0.0))  # in-plane point-spread, no blur across 10 mm slices
    noisy = rician(s * bias * gain, 0.03 * gain, rng)
    return np.clip(np.rint(noisy), 0, 32767).astype(np.int16)


def _nifti(data, spacing):
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # ACDC's sform: no spacing in it
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=2)
    img.set_qform(None, code=0)
    zooms = tuple(spacing) + ((1.0,) if data.ndim == 4 else ())
    img.header.set_zooms(zooms)
    return img


def group_counts(patients: int, proportions: dict[str, float] | None = None) -> dict[str, int]:
    """Patients per group by largest remainder; balanced (20 each of 100, as ACDC) by default."""
    props = {g: 1.0 for g in GROUPS} if not proportions else {("RV" if g == "ARV" else g): float(v) for g, v in proportions.items()}
    unknown = set(props) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown ACDC groups {sorted(unknown)} (expected {list(GROUPS)} or ARV)")
    total = sum(props.values())
    exact = {g: patients * props.get(g, 0.0) / total for g in GROUPS}
    counts = {g: int(math.floor(v)) for g, v in exact.items()}
    for g in sorted(GROUPS, key=lambda g: exact[g] - counts[g], reverse=True)[: patients - sum(counts.values())]:
        counts[g] += 1
    return counts


def make_acdc_patient(rng: np.random.Generator, group: str, shape=FULL_SHAPE, spacing=SPACING, frames: int = 30):
    """One phantom: (Info.cfg dict, {frame number: (int16 image, uint8 label)} for ED and ES, 4D cine)."""
    shape = tuple(int(s) for s in shape)
    height = rng.uniform(155, 190)
    weight = rng.uniform(55, 100)
    bsa = math.sqrt(height * weight / 3600.0)
    heart = _Heart(_group_params(group, bsa, rng), shape, spacing, rng)
    chest = _chest(shape, spacing, rng)
    bias = np.exp(0.2 * smooth_field(shape[:2], rng, 3))[:, :, None]
    gain = 600.0 * rng.uniform(0.7, 1.3)
    es_frame = int(round(frames * rng.uniform(0.30, 0.42))) + 1
    ed_frame = 1
    cine = np.zeros(shape + (frames,), dtype=np.int16)
    labels = {}
    for t in range(1, frames + 1):
        # Contraction fraction: a cosine up to end-systole, then relaxation back to diastole.
        if t <= es_frame:
            c = 0.5 * (1 - math.cos(math.pi * (t - 1) / (es_frame - 1)))
        else:
            c = 0.5 * (1 + math.cos(math.pi * (t - es_frame) / (frames + 1 - es_frame)))
        label = heart.render(c)
        cine[..., t - 1] = _frame_image(chest, label, bias, rng, gain)
        if t in (ed_frame, es_frame):
            labels[t] = label
    info = {"ED": ed_frame, "ES": es_frame, "Group": group, "Height": round(height, 1),
            "NbFrame": frames, "Weight": round(weight, 1)}
    frames_out = {t: (cine[..., t - 1], labels[t]) for t in (ed_frame, es_frame)}
    return info, frames_out, cine


def write_acdc_cohort(out_dir: str, patients: int = 24, seed: int = 0, shape=FULL_SHAPE, spacing=SPACING,
                      frames: int = 30, proportions: dict[str, float] | None = None, write_4d: bool = True,
                      progress=None) -> list[tuple[str, str]]:
    """Write ``OUT/patientXXX/{Info.cfg, patientXXX_4d.nii.gz, patientXXX_frameYY[_gt].nii.gz}``."""
    counts = group_counts(patients, proportions)
    groups = [g for g in GROUPS for _ in range(counts[g])]
    written = []
    for i, group in enumerate(groups):
        pid = f"patient{i + 1:03d}"
        info, frames_out, cine = make_acdc_patient(np.random.default_rng([seed, i]), group, shape, spacing, frames)
        folder = os.path.join(out_dir, pid)
        os.makedirs(folder, exist_ok=True)
        for t, (image, label) in frames_out.items():
            save_nifti(_nifti(image, spacing), os.path.join(folder, f"{pid}_frame{t:02d}.nii.gz"))
            save_nifti(_nifti(label, spacing), os.path.join(folder, f"{pid}_frame{t:02d}_gt.nii.gz"))
        if write_4d:
            save_nifti(_nifti(cine, spacing), os.path.join(folder, f"{pid}_4d.nii.gz"))
        with atomic_path(os.path.join(folder, "Info.cfg")) as tmp, open(tmp, "w") as f:
            f.write("".join(f"{k}: {v}\n" for k, v in info.items()))
        written.append((pid, group))
        if progress:
            progress(i + 1)
    return written

"""Clinical features of a cardiac segmentation (volumes, EF, mass, wall thickness, BSA) by hand, and the classifier on them."""

import math

import numpy as np
import pytest

from svgan.data.cardiac import (FEATURES, body_surface_area, clinical_features, height_weight, max_wall_thickness,
                                slice_thickness_statistics)
from svgan.evaluation.clinical import ClinicalClassifier


def _heart(thickness_px: int) -> np.ndarray:
    """[2, 30, 20, 3] label map: in slice 1 an LV cavity of rows 5-14, a myocardial band below it, RV beside."""
    label = np.zeros((2, 30, 20, 3), np.uint8)
    for phase, cavity_rows in ((0, range(5, 15)), (1, range(9, 15))):
        label[phase, list(cavity_rows), 2:12, 1] = 3
        label[phase, 15:15 + thickness_px, 2:12, 1] = 2
        label[phase, 5:10, 14:18, 1] = 1
    return label


def test_volumes_ejection_fractions_and_mass_counted_by_hand():
    label = _heart(4)
    spacing = (1.5, 1.25, 8.0)  # 15 mm^3 = 0.015 ml per voxel
    f = clinical_features(label, spacing, height_cm=180.0, weight_kg=80.0)
    # ED: LV 10 rows x 10 columns = 100 voxels; ES: 6 x 10 = 60. RV 5 x 4 = 20 in both phases. MYO 4 x 10 = 40.
    assert f["LV_EDV"] == pytest.approx(1.5) and f["LV_ESV"] == pytest.approx(0.9)
    assert f["LV_EF"] == pytest.approx(40.0)
    assert f["RV_EDV"] == pytest.approx(0.3) and f["RV_EF"] == pytest.approx(0.0)
    assert f["MYO_mass"] == pytest.approx(40 * 0.015 * 1.05)
    bsa = math.sqrt(180.0 * 80.0 / 3600.0)  # = 2.0 m^2
    assert bsa == pytest.approx(2.0)
    assert f["LV_EDVi"] == pytest.approx(1.5 / 2.0) and f["MYO_massi"] == pytest.approx(40 * 0.015 * 1.05 / 2.0)
    assert f["RV_LV_EDV_ratio"] == pytest.approx(0.2)
    assert set(FEATURES) <= set(f)


def test_wall_thickness_of_a_band_is_its_width_in_mm_along_the_sampled_axis():
    label = _heart(4)
    # The band runs along axis 0, 4 pixels of 1.5 mm.
    assert max_wall_thickness(label[0] == 2, label[0] == 3, (1.5, 1.25, 8.0)) == pytest.approx(6.0)
    # A thicker band in another slice is the maximum; slices without cavity do not count.
    label[0, 15:22, 2:12, 2] = 2
    label[0, 5:15, 2:12, 2] = 3
    label[0, 0:10, 0:10, 0] = 2  # myocardium without cavity
    assert max_wall_thickness(label[0] == 2, label[0] == 3, (1.5, 1.25, 8.0)) == pytest.approx(7 * 1.5)


def test_wall_thickness_of_a_ring_is_the_difference_of_its_radii():
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 31.5, xx - 31.5)
    cavity, myo = (r < 10)[..., None], ((r >= 10) & (r < 16))[..., None]
    # 6 mm of wall at 1 mm pixels, within one pixel of discretisation.
    assert abs(max_wall_thickness(myo, cavity, (1.0, 1.0, 10.0)) - 6.0) <= 1.0
    assert max_wall_thickness(np.zeros_like(myo), cavity, (1.0, 1.0, 10.0)) == 0.0


def test_body_surface_area_and_info_cfg_numbers():
    assert body_surface_area(184.0, 95.0) == pytest.approx(math.sqrt(184 * 95 / 3600))
    assert height_weight({"Height": "184.0", "Weight": "95.0"}) == (184.0, 95.0)
    assert height_weight({"Height": "n/a"}) == (None, None)
    f = clinical_features(_heart(3), (1.0, 1.0, 10.0), None, None)
    assert math.isnan(f["LV_EDVi"]) and not math.isnan(f["LV_EDV"])


def test_reference_classifier_learns_separable_groups_and_gives_zero_to_unseen_classes():
    rng = np.random.default_rng(0)
    rows, diseases = [], []
    for k in range(3):
        for _ in range(10):
            row = {name: float(rng.normal()) for name in FEATURES}
            row["LV_EF"] = 20.0 + 25.0 * k + rng.normal()  # the groups differ in ejection fraction alone
            rows.append(row)
            diseases.append(k)
    model = ClinicalClassifier(trees=50).fit(rows, diseases)
    probe = [{**rows[0], "LV_EF": 20.0}, {**rows[0], "LV_EF": 70.0}]
    probs = model.predict_proba(probe, num_classes=4)
    assert probs.shape == (2, 4) and np.allclose(probs.sum(1), 1.0)
    assert probs[0].argmax() == 0 and probs[1].argmax() == 2 and np.all(probs[:, 3] == 0)
    with pytest.raises(ValueError):
        ClinicalClassifier().fit(rows, diseases[:-1])


def test_per_slice_thickness_statistics_of_square_rings_counted_by_hand():
    # Slice 0: a 10 x 10 cavity (rows and columns 10-19) inside a wall 3 pixels thick (7-22).
    # Its outer border is the ring's outermost 60 pixels: on each side 10 pixels face the cavity
    # straight across, 3 pixels away; at each corner the 5 remaining ones are sqrt(3^2 + d^2)
    # from the cavity's corner pixel, d = 3 (the corner itself), 2, 2, 1, 1.
    # Slice 1: the same cavity with a wall 2 pixels thick (8-21): 40 pixels at 2, and per corner
    # sqrt(8) once, sqrt(5) twice... and sqrt(4 + 0) for none: d = 2, 1, 1.
    myo = np.zeros((32, 32, 3), bool)
    cavity = np.zeros((32, 32, 3), bool)
    cavity[10:20, 10:20, :2] = True
    myo[7:23, 7:23, 0] = True
    myo[8:22, 8:22, 1] = True
    myo &= ~cavity
    spacing = (1.5, 1.5, 10.0)
    thick3 = (40 * 3 + 4 * (math.sqrt(18) + 2 * math.sqrt(13) + 2 * math.sqrt(10))) / 60
    thick2 = (40 * 2 + 4 * (math.sqrt(8) + 2 * math.sqrt(5))) / 52
    largest, spread = slice_thickness_statistics(myo, cavity, spacing)
    assert largest == pytest.approx(1.5 * thick3)
    assert spread == pytest.approx(1.5 * abs(thick3 - thick2) / 2)  # the std of two values
    assert max_wall_thickness(myo, cavity, spacing) == pytest.approx(1.5 * math.sqrt(18))
    # Slice 2 holds no cavity and does not count; no slice at all gives 0.
    assert slice_thickness_statistics(myo & False, cavity, spacing) == (0.0, 0.0)


def test_clinical_features_carry_both_phases_thickness_and_the_es_ratios():
    label = _heart(4)
    f = clinical_features(label, (1.5, 1.25, 8.0), 180.0, 80.0)
    # The band of _heart (rows 15-18, columns 2-11, below the cavity; 1.5 mm rows), one slice. Its outer
    # border: the bottom row, 10 pixels 4 rows (6 mm) from the cavity, and the two end columns in rows
    # 15-17, 1, 2 and 3 rows away. The same band at ED and ES.
    band = (10 * 6.0 + 2 * (1.5 + 3.0 + 4.5)) / 16
    assert f["MYO_ED_slice_thickness_max"] == pytest.approx(band) and f["MYO_ES_slice_thickness_max"] == pytest.approx(band)
    assert f["MYO_ED_slice_thickness_std"] == 0.0
    # ES: RV 20 voxels, LV 6 x 10 = 60; MYO 40 voxels at ES too.
    assert f["RV_LV_ESV_ratio"] == pytest.approx(20 / 60)
    assert f["MYO_ES_mass"] == pytest.approx(40 * 0.015 * 1.05)
    assert list(FEATURES) == [k for k in FEATURES if k in f]
